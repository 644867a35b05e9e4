//! Cases for a retry's fencing: an applied `requeue` bumps the task's lease token, so
//! every write of the attempt that failed is refused from then on, and the retry runs
//! under the new token.

use std::sync::Arc;

use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{TaskId, TaskStatus};

use super::fixtures::{create_one, finish, finish_with, get, not_holder, on};
use crate::store::{TaskStore, Transition};
use crate::task::{Fence, Finish, TaskRecord};

/// The token of the attempt that fails in these cases: not 0, so a store that confuses
/// "bump" with "set to 1" fails too.
const T: u64 = 1;

fn report(message: &str) -> Progress {
    Progress::new(0.5, message).expect("a finite fraction")
}

/// A task held by `b` under the token [`T`] (created on `a`, claimed by `b`), started
/// and reporting progress under `T`, then requeued under `T`: answers its id and the
/// record as the requeue left it, after checking the requeue bumped the token once.
async fn requeued_once(store: &dyn TaskStore) -> (TaskId, TaskRecord) {
    let t = on("a");
    create_one(store, t.clone()).await;
    assert_eq!(store.claim("a", "b").await.expect("claim").len(), 1);
    let b = Fence::new("b", T);
    assert_eq!(
        store.start(&t.id, b, 1, 10).await.expect("start"),
        Transition::Applied
    );
    let progress = store.progress(&t.id, b, report("first attempt"));
    assert_eq!(progress.await.expect("progress"), Transition::Applied);
    let requeue = store.requeue(&t.id, b, 1, Some("boom".into())).await;
    assert_eq!(requeue.expect("requeue"), Transition::Applied);
    let r = get(store, &t.id).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.lease, r.attempts),
        (TaskStatus::Queued, Some("b"), T + 1, 1),
        "a requeue bumps the token by exactly one and keeps the holder"
    );
    assert_eq!(
        (r.error.as_deref(), r.progress.as_ref()),
        (Some("boom"), None)
    );
    (t.id, r)
}

/// After a requeue under token `t`, the record's token is `t + 1`. The earlier attempt's
/// `start`, `progress`, `requeue` and `finish` under `t` (and a cancel carrying `t`) are
/// refused with the holder and write nothing; the same calls under `t + 1` are applied,
/// and a second requeue fences the first retry the same way.
pub async fn requeue_bumps_the_lease_token_and_fences_the_earlier_attempt(
    store: Arc<dyn TaskStore>,
) {
    let (id, after) = requeued_once(&*store).await;
    let old = Fence::new("b", T);
    let stale = not_holder("b");
    let start = store.start(&id, old, 2, 20).await.expect("stale start");
    assert_eq!(start, stale, "a start under the old token");
    assert_eq!(get(&*store, &id).await, after, "a stale start wrote");
    let progress = store.progress(&id, old, report("late")).await;
    assert_eq!(progress.expect("stale progress"), stale);
    assert_eq!(get(&*store, &id).await, after, "a stale progress wrote");
    let requeue = store.requeue(&id, old, 2, Some("late".into())).await;
    assert_eq!(requeue.expect("stale requeue"), stale);
    assert_eq!(get(&*store, &id).await, after, "a stale requeue wrote");
    let late = finish_with(old, TaskStatus::Succeeded, 30);
    assert_eq!(store.finish(&id, late).await.expect("stale finish"), stale);
    assert_eq!(get(&*store, &id).await, after, "a stale finish wrote");
    let cancel = Finish {
        lease: T,
        ..finish(TaskStatus::Cancelled, 35)
    };
    assert_eq!(
        store.finish(&id, cancel).await.expect("stale cancel"),
        stale
    );
    assert_eq!(get(&*store, &id).await, after, "a stale cancel wrote");

    // The retry, under the new token: start, progress and requeue apply.
    let retry = Fence::new("b", T + 1);
    let start = store.start(&id, retry, 2, 40).await.expect("start");
    assert_eq!(start, Transition::Applied);
    let progress = store.progress(&id, retry, report("retry")).await;
    assert_eq!(progress.expect("progress"), Transition::Applied);
    let r = get(&*store, &id).await;
    assert_eq!(
        (r.status, r.lease, r.attempts, r.progress),
        (TaskStatus::Running, T + 1, 2, Some(report("retry"))),
        "start and progress keep the token"
    );
    let requeue = store.requeue(&id, retry, 2, Some("again".into())).await;
    assert_eq!(requeue.expect("requeue"), Transition::Applied);
    let again = get(&*store, &id).await;
    assert_eq!((again.status, again.lease), (TaskStatus::Queued, T + 2));
    let late = finish_with(retry, TaskStatus::Succeeded, 50);
    assert_eq!(
        store.finish(&id, late).await.expect("finish"),
        stale,
        "the second requeue fences the first retry"
    );
    assert_eq!(get(&*store, &id).await, again, "a stale finish wrote");

    // A retry that ends: its finish under the token its requeue gave it applies.
    let (id, _) = requeued_once(&*store).await;
    let start = store.start(&id, retry, 2, 60).await.expect("start");
    assert_eq!(start, Transition::Applied);
    let done = finish_with(retry, TaskStatus::Succeeded, 70);
    assert_eq!(
        store.finish(&id, done).await.expect("finish"),
        Transition::Applied
    );
    let r = get(&*store, &id).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.lease),
        (TaskStatus::Succeeded, Some("b"), T + 1),
        "a finish keeps the token"
    );
}
