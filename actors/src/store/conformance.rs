//! The conformance suite: one set of cases that every [`TaskStore`] must pass.
//!
//! Each case is a `pub async fn` taking a fresh, empty store, grouped by topic in
//! [`create`], [`transitions`], [`progress`], [`ownership`], [`retry`], [`queries`] and
//! [`keys`] (API keys).
//! An implementation in another crate runs them all with [`run_all`] (or one by one
//! through [`CASES`]):
//!
//! ```ignore
//! #[tokio::test]
//! async fn redis_store_conforms() {
//!     conformance::run_all(async || RedisStore::connect(&fresh_url()).await.expect("connect")).await;
//! }
//! ```
//!
//! The cases panic on the first broken rule. They are compiled for this crate's tests
//! and, for other crates, with the `testsuite` feature.

pub mod create;
pub(crate) mod fixtures;
pub mod keys;
pub mod ownership;
pub mod progress;
pub mod queries;
pub mod retry;
pub mod transitions;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::store::TaskStore;

/// One case of the suite, boxed so the cases fit in one list.
pub type Case = fn(Arc<dyn TaskStore>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($module:ident::$name:ident),* $(,)?) => {
        /// Every case of the suite with its name, in the order [`run_all`] runs them.
        pub const CASES: &[(&str, Case)] =
            &[$((stringify!($name), |store| Box::pin($module::$name(store)))),*];
    };
}

cases!(
    create::create_then_get_round_trips_every_field,
    create::get_of_an_unknown_id_is_none,
    create::idempotency_key_returns_the_first_task_across_calls,
    create::idempotency_key_repeated_in_one_call_returns_the_first_task,
    create::distinct_keys_and_missing_keys_create_distinct_tasks,
    create::creating_an_existing_id_does_not_overwrite_it,
    create::concurrent_creates_are_all_durable_and_readable,
    create::concurrent_creates_with_one_key_make_one_task,
    transitions::start_moves_queued_to_running_and_may_repeat,
    transitions::requeue_returns_a_live_task_to_the_queue,
    transitions::finish_first_terminal_write_wins,
    transitions::finish_cancels_a_queued_task,
    transitions::finish_with_a_live_status_is_rejected,
    transitions::changes_to_unknown_ids_are_not_found,
    progress::progress_is_recorded_replaced_cleared_by_a_retry_and_kept_by_a_finish,
    progress::progress_is_fenced_by_holder_and_token_and_cleared_by_a_move,
    ownership::start_by_a_non_holder_is_refused,
    ownership::requeue_by_a_non_holder_is_refused,
    ownership::finish_by_a_non_holder_is_refused_and_terminal_comes_first,
    ownership::claim_moves_every_live_task_of_a_node_once,
    ownership::concurrent_claims_move_each_task_to_one_claimant,
    ownership::reassign_moves_only_listed_tasks_still_held_by_from,
    ownership::a_holder_with_a_live_lease_is_not_expired,
    ownership::a_lease_counts_its_renewals_and_reads_none_once_lapsed,
    ownership::attempts_never_go_down,
    ownership::a_stale_lease_token_is_refused_after_the_task_comes_back,
    ownership::claim_and_reassign_bump_the_lease_token_once_per_move,
    retry::requeue_bumps_the_lease_token_and_fences_the_earlier_attempt,
    queries::list_is_newest_first_filtered_and_limited,
    queries::list_filters_by_submitter,
    queries::unfinished_is_oldest_first_and_drops_terminal_tasks,
    queries::recoverable_is_the_holding_nodes_unfinished_tasks_oldest_first,
    queries::purge_removes_only_old_finished_tasks_and_frees_their_keys,
    queries::ping_succeeds,
    keys::a_key_round_trips_and_lists_by_creation_time,
    keys::a_put_of_a_taken_id_writes_nothing,
    keys::concurrent_puts_of_one_id_write_one_key,
    keys::revoke_keeps_the_first_time_and_refuses_unknown_ids,
);

/// Runs every case in [`CASES`], each on a fresh store from `make`, which must return an
/// empty store. Prints each case's name to stderr first, so a failure names its case.
pub async fn run_all<S: TaskStore>(make: impl AsyncFn() -> S) {
    for (name, case) in CASES {
        eprintln!("store conformance: {name}");
        case(Arc::new(make().await)).await;
    }
}
