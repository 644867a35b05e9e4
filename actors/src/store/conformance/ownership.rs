//! Cases for holding: fencing of `start`, `requeue` and `finish` by the holder and by
//! the task's lease token, moving tasks with `claim` and `reassign` (each bumping the
//! token, as a `requeue` does: see [`super::retry`]), and node leases.

use std::sync::Arc;

use taskmesh_kernels::task::{TaskId, TaskStatus};
use tokio::task::JoinSet;

use super::fixtures::{create_one, finish, finish_with, get, ids, not_holder, on, task};
use crate::store::{TaskStore, Transition};
use crate::task::{Fence, Finish, Millis, NewTask, TaskRecord};

/// A finish at `at` reported by `node` under the lease token 0.
fn finish_by(node: &str, status: TaskStatus, at: Millis) -> Finish {
    finish_with(Fence::new(node, 0), status, at)
}

/// The lease token of the stored task `id`.
async fn lease(store: &dyn TaskStore, id: &TaskId) -> u64 {
    get(store, id).await.lease
}

/// `start` by another node than the holder is refused with the holder and writes nothing,
/// queued or running; the holder may start it; a task held by nobody goes to whoever
/// starts it first, and is then fenced like any other.
pub async fn start_by_a_non_holder_is_refused(store: Arc<dyn TaskStore>) {
    let t = on("a");
    create_one(&*store, t.clone()).await;
    let start = async |id: &TaskId, node: &str, attempts: u32| {
        store
            .start(id, Fence::new(node, 0), attempts, 10)
            .await
            .expect("start")
    };
    assert_eq!(start(&t.id, "b", 1).await, not_holder("a"));
    assert_eq!(get(&*store, &t.id).await, TaskRecord::queued(t.clone()));
    assert_eq!(start(&t.id, "a", 1).await, Transition::Applied);
    let running = get(&*store, &t.id).await;
    assert_eq!(start(&t.id, "b", 2).await, not_holder("a"));
    assert_eq!(get(&*store, &t.id).await, running, "a refused start wrote");

    let free = task("echo", None);
    create_one(&*store, free.clone()).await;
    assert_eq!(start(&free.id, "b", 1).await, Transition::Applied);
    assert_eq!(get(&*store, &free.id).await.node.as_deref(), Some("b"));
    assert_eq!(start(&free.id, "c", 2).await, not_holder("b"));
    assert_eq!(
        get(&*store, &free.id).await.attempts,
        1,
        "a refused start wrote"
    );
}

/// `requeue` by another node than the holder is refused with the holder, nothing
/// written; the holder's requeue keeps the task with it.
pub async fn requeue_by_a_non_holder_is_refused(store: Arc<dyn TaskStore>) {
    let t = on("a");
    create_one(&*store, t.clone()).await;
    store
        .start(&t.id, Fence::new("a", 0), 1, 10)
        .await
        .expect("start");
    let running = get(&*store, &t.id).await;
    let boom = || Some("boom".to_owned());
    let refused = store.requeue(&t.id, Fence::new("b", 0), 1, boom()).await;
    assert_eq!(refused.expect("requeue"), not_holder("a"));
    assert_eq!(
        get(&*store, &t.id).await,
        running,
        "a refused requeue wrote"
    );
    let applied = store.requeue(&t.id, Fence::new("a", 0), 1, boom()).await;
    assert_eq!(applied.expect("requeue"), Transition::Applied);
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.error.as_deref()),
        (TaskStatus::Queued, Some("a"), Some("boom"))
    );
}

/// A `finish` naming another node than the holder is refused with the holder; the
/// holder's, or a cancel carrying the holder as the API sends it, is applied. A terminal
/// task answers `Rejected` to everyone: the terminal check comes first.
pub async fn finish_by_a_non_holder_is_refused_and_terminal_comes_first(store: Arc<dyn TaskStore>) {
    let (t, u) = (on("a"), on("a"));
    store
        .create(vec![t.clone(), u.clone()])
        .await
        .expect("create");
    store
        .start(&t.id, Fence::new("a", 0), 1, 10)
        .await
        .expect("start");
    let running = get(&*store, &t.id).await;
    let late = store.finish(&t.id, finish_by("b", TaskStatus::Succeeded, 50));
    assert_eq!(late.await.expect("finish"), not_holder("a"));
    assert_eq!(get(&*store, &t.id).await, running, "a refused finish wrote");
    let done = store.finish(&t.id, finish_by("a", TaskStatus::Succeeded, 50));
    assert_eq!(done.await.expect("finish"), Transition::Applied);
    assert_eq!(get(&*store, &t.id).await.status, TaskStatus::Succeeded);

    let terminal = Transition::Rejected(TaskStatus::Succeeded);
    let start = store
        .start(&t.id, Fence::new("b", 0), 2, 60)
        .await
        .expect("start");
    assert_eq!(start, terminal);
    let requeue = store
        .requeue(&t.id, Fence::new("b", 0), 2, None)
        .await
        .expect("requeue");
    assert_eq!(requeue, terminal);
    let again = store.finish(&t.id, finish_by("b", TaskStatus::Failed, 70));
    assert_eq!(again.await.expect("finish"), terminal);

    let cancel = Finish {
        node: Some("a".to_owned()),
        ..finish(TaskStatus::Cancelled, 80)
    };
    let cancelled = store.finish(&u.id, cancel).await.expect("cancel");
    assert_eq!(cancelled, Transition::Applied);
}

/// `claim` moves every live task of the old holder, oldest first, running ones back to
/// the queue with their attempts; terminal and other nodes' tasks stay. A second claim
/// finds nothing, and the old holder is fenced off the moved tasks.
pub async fn claim_moves_every_live_task_of_a_node_once(store: Arc<dyn TaskStore>) {
    let tasks = vec![on("a"), on("a"), on("a"), on("b"), on("a")];
    store.create(tasks.clone()).await.expect("create");
    let id = |i: usize| tasks[i].id;
    store
        .start(&id(1), Fence::new("a", 0), 2, 10)
        .await
        .expect("start");
    let done = finish_by("a", TaskStatus::Succeeded, 20);
    let done = store.finish(&id(2), done).await.expect("finish");
    assert_eq!(done, Transition::Applied);
    let boom = Some("boom".to_owned());
    store
        .requeue(&id(4), Fence::new("a", 0), 1, boom)
        .await
        .expect("requeue");
    let (finished, elsewhere) = (get(&*store, &id(2)).await, get(&*store, &id(3)).await);

    let claimed = store.claim("a", "c").await.expect("claim");
    assert_eq!(ids(&claimed), [0, 1, 4].map(id), "oldest first");
    for record in &claimed {
        assert_eq!(
            record,
            &get(&*store, &record.id).await,
            "answered as stored"
        );
        assert_eq!(record.node.as_deref(), Some("c"));
        assert_eq!(record.status, TaskStatus::Queued);
    }
    let was_running = &claimed[1];
    assert_eq!(
        (
            was_running.attempts,
            was_running.error.as_deref(),
            was_running.started_at_ms
        ),
        (2, Some("node a was lost"), Some(10)),
        "the attempt that died counts"
    );
    assert_eq!(
        (claimed[0].attempts, claimed[0].error.as_deref()),
        (0, None)
    );
    assert_eq!(
        claimed[2].error.as_deref(),
        Some("boom"),
        "queued: error kept"
    );
    assert_eq!(get(&*store, &id(2)).await, finished);
    assert_eq!(get(&*store, &id(3)).await, elsewhere);

    assert_eq!(store.claim("a", "d").await.expect("claim again"), []);
    let start = store
        .start(&id(1), Fence::new("a", 0), 3, 30)
        .await
        .expect("start");
    assert_eq!(start, not_holder("c"));
    let requeue = store
        .requeue(&id(1), Fence::new("a", 0), 3, None)
        .await
        .expect("requeue");
    assert_eq!(requeue, not_holder("c"));
    let late = finish_by("a", TaskStatus::Succeeded, 40);
    let late = store.finish(&id(1), late).await.expect("finish");
    assert_eq!(late, not_holder("c"));
    assert_eq!(
        get(&*store, &id(1)).await,
        claimed[1],
        "fenced writes wrote"
    );

    let start = store
        .start(&id(1), Fence::new("c", 1), 3, 50)
        .await
        .expect("start");
    assert_eq!(
        start,
        Transition::Applied,
        "the claimant, with the new token"
    );
    let recoverable = ids(&store.recoverable("c").await.expect("recoverable"));
    for i in [0, 1, 4] {
        assert!(recoverable.contains(&id(i)), "c recovers task {i}");
    }
    let running = get(&*store, &id(1)).await;
    assert_eq!(store.claim("c", "c").await.expect("self claim"), []);
    assert_eq!(get(&*store, &id(1)).await, running, "a self claim wrote");
}

/// Claims of one node racing from several claimants move each task exactly once.
pub async fn concurrent_claims_move_each_task_to_one_claimant(store: Arc<dyn TaskStore>) {
    let tasks: Vec<NewTask> = (0..24).map(|_| on("a")).collect();
    store.create(tasks.clone()).await.expect("create");
    for t in tasks.iter().step_by(2) {
        store
            .start(&t.id, Fence::new("a", 0), 1, 10)
            .await
            .expect("start");
    }
    let mut claims = JoinSet::new();
    for to in ["x", "y", "z"] {
        let store = Arc::clone(&store);
        claims.spawn(async move { (to, store.claim("a", to).await.expect("claim")) });
    }
    let mut moved = Vec::new();
    for (to, records) in claims.join_all().await {
        for record in records {
            let stored = get(&*store, &record.id).await;
            assert_eq!(stored.node.as_deref(), Some(to), "claimed by {to}");
            assert_eq!(stored.status, TaskStatus::Queued);
            moved.push(record.id);
        }
    }
    moved.sort();
    let mut all = ids(&tasks
        .into_iter()
        .map(TaskRecord::queued)
        .collect::<Vec<_>>());
    all.sort();
    assert_eq!(moved, all, "every task moved exactly once");
}

/// `reassign` moves only the listed tasks that are live and still held by `from`, once
/// each, in the order given; nothing for an empty list or `from == to`.
pub async fn reassign_moves_only_listed_tasks_still_held_by_from(store: Arc<dyn TaskStore>) {
    let tasks = vec![on("a"), on("a"), on("b"), on("a"), on("a")];
    store.create(tasks.clone()).await.expect("create");
    let id = |i: usize| tasks[i].id;
    store
        .start(&id(1), Fence::new("a", 0), 2, 10)
        .await
        .expect("start");
    let done = finish_by("a", TaskStatus::Failed, 20);
    let done = store.finish(&id(3), done).await.expect("finish");
    assert_eq!(done, Transition::Applied);
    let (other, finished, unlisted) = (
        get(&*store, &id(2)).await,
        get(&*store, &id(3)).await,
        get(&*store, &id(4)).await,
    );

    let listed = [id(1), id(0), id(2), id(3), TaskId::generate(), id(0)];
    let moved = store.reassign(&listed, "a", "c").await.expect("reassign");
    assert_eq!(ids(&moved), [id(1), id(0)], "in the order given, once each");
    let r = get(&*store, &id(1)).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.attempts, r.error.as_deref()),
        (
            TaskStatus::Queued,
            Some("c"),
            2,
            Some("reassigned from node a")
        )
    );
    let r = get(&*store, &id(0)).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.error),
        (TaskStatus::Queued, Some("c"), None)
    );
    assert_eq!(get(&*store, &id(2)).await, other);
    assert_eq!(get(&*store, &id(3)).await, finished);
    assert_eq!(get(&*store, &id(4)).await, unlisted);

    assert_eq!(store.reassign(&listed, "a", "d").await.expect("again"), []);
    let start = store
        .start(&id(0), Fence::new("a", 0), 1, 30)
        .await
        .expect("start");
    assert_eq!(start, not_holder("c"));
    assert_eq!(store.reassign(&[id(4)], "a", "a").await.expect("self"), []);
    assert_eq!(store.reassign(&[], "a", "c").await.expect("empty"), []);
    assert_eq!(get(&*store, &id(4)).await, unlisted, "nothing moved task 4");
}

/// A node that renewed its lease is not expired, whatever it holds.
pub async fn a_holder_with_a_live_lease_is_not_expired(store: Arc<dyn TaskStore>) {
    store.create(vec![on("a"), on("b")]).await.expect("create");
    for node in ["a", "b"] {
        store.renew_lease(node, 60_000).await.expect("renew");
    }
    assert_eq!(
        store.expired_holders().await.expect("expired"),
        [] as [String; 0]
    );
}

/// A node's lease reads as `None` until it is renewed, then as a counter that moves
/// with each renewal of that node (and only that node), and as `None` again once it
/// lapses. The failover module tells a node that still renews from one that stopped by
/// whether this counter moves.
pub async fn a_lease_counts_its_renewals_and_reads_none_once_lapsed(store: Arc<dyn TaskStore>) {
    assert_eq!(store.lease("a").await.expect("lease"), None, "never taken");
    store.renew_lease("a", 60_000).await.expect("renew a");
    let first = store
        .lease("a")
        .await
        .expect("lease")
        .expect("a live lease");
    store.renew_lease("b", 60_000).await.expect("renew b");
    assert_eq!(
        store.lease("a").await.expect("lease"),
        Some(first),
        "another node's renewal does not move a's counter"
    );
    store.renew_lease("a", 60_000).await.expect("renew a again");
    let second = store
        .lease("a")
        .await
        .expect("lease")
        .expect("a live lease");
    assert_ne!(second, first, "a renewal moves the counter");
    store.renew_lease("c", 1).await.expect("renew c briefly");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.lease("c").await.expect("lease").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "c's 1 ms lease never lapsed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        store.lease("a").await.expect("lease").is_some(),
        "a is still live"
    );
}

/// Attempts never go down. A task claimed away from a node and claimed back by it (both
/// sides of a partition claim) may come back with a count below the record's (a copy the
/// node read before): its start still counts one more than recorded, and its requeue or
/// finish keeps the count.
pub async fn attempts_never_go_down(store: Arc<dyn TaskStore>) {
    let t = on("a");
    create_one(&*store, t.clone()).await;
    store
        .start(&t.id, Fence::new("a", 0), 1, 10)
        .await
        .expect("start");
    store.claim("a", "b").await.expect("b claims");
    store
        .start(&t.id, Fence::new("b", 1), 2, 20)
        .await
        .expect("b starts");
    store.claim("b", "a").await.expect("a claims back");
    let a = Fence::new("a", 2);
    let low = store.start(&t.id, a, 1, 30).await.expect("low start");
    assert_eq!(
        low,
        Transition::Applied,
        "the holder, with the current token"
    );
    assert_eq!(
        get(&*store, &t.id).await.attempts,
        3,
        "a start counts one more than recorded"
    );
    store.requeue(&t.id, a, 1, None).await.expect("requeue");
    assert_eq!(
        get(&*store, &t.id).await.attempts,
        3,
        "a requeue keeps the count"
    );
    let done = finish_with(Fence::new("a", 3), TaskStatus::Succeeded, 40);
    assert_eq!(
        store.finish(&t.id, done).await.expect("finish"),
        Transition::Applied
    );
    let record = get(&*store, &t.id).await;
    assert_eq!((record.status, record.attempts), (TaskStatus::Succeeded, 3));
}

/// The hole the lease token closes: a task goes a → b → a (both sides of a partition
/// claim), so a holds it again, but a's attempt from before, still in its pool, carries
/// the old token. Its start, requeue and finish are refused with the holder (a itself)
/// and write nothing; so are b's; a's writes with the token of the last claim apply.
pub async fn a_stale_lease_token_is_refused_after_the_task_comes_back(store: Arc<dyn TaskStore>) {
    let t = on("a");
    create_one(&*store, t.clone()).await;
    let old = Fence::new("a", 0);
    assert_eq!(
        store.start(&t.id, old, 1, 10).await.expect("start"),
        Transition::Applied
    );
    let moved = store.claim("a", "b").await.expect("b claims");
    assert_eq!(ids(&moved), vec![t.id]);
    let moved = store.claim("b", "a").await.expect("a claims back");
    assert_eq!(ids(&moved), vec![t.id]);
    let back = get(&*store, &t.id).await;
    assert_eq!(
        (back.status, back.node.as_deref(), back.lease),
        (TaskStatus::Queued, Some("a"), 2)
    );

    for stale in [old, Fence::new("a", 1), Fence::new("b", 1)] {
        let holder = not_holder("a");
        let start = store.start(&t.id, stale, 2, 20).await.expect("start");
        assert_eq!(start, holder, "stale start {stale:?}");
        let requeue = store.requeue(&t.id, stale, 2, Some("late".into())).await;
        assert_eq!(requeue.expect("requeue"), holder, "stale requeue {stale:?}");
        let late = finish_with(stale, TaskStatus::Succeeded, 30);
        let late = store.finish(&t.id, late).await.expect("finish");
        assert_eq!(late, holder, "stale finish {stale:?}");
        assert_eq!(get(&*store, &t.id).await, back, "a stale write wrote");
    }
    let unfenced = Finish {
        lease: 0,
        ..finish(TaskStatus::Cancelled, 35)
    };
    let cancel = store.finish(&t.id, unfenced).await.expect("cancel");
    assert_eq!(
        cancel,
        not_holder("a"),
        "a finish without a node carries a token too"
    );
    assert_eq!(get(&*store, &t.id).await, back, "a stale cancel wrote");

    let current = Fence::new("a", 2);
    let start = store.start(&t.id, current, 2, 40).await.expect("start");
    assert_eq!(start, Transition::Applied);
    let done = finish_with(current, TaskStatus::Succeeded, 50);
    assert_eq!(
        store.finish(&t.id, done).await.expect("finish"),
        Transition::Applied
    );
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.lease, r.attempts),
        (TaskStatus::Succeeded, Some("a"), 2, 2)
    );
}

/// The token goes up by exactly one per move, with `claim` and `reassign` alike (and is
/// answered as stored); a task that does not move keeps it, `start` and `finish` never
/// change it, and a `requeue` bumps it by one. A new task has token 0.
pub async fn claim_and_reassign_bump_the_lease_token_once_per_move(store: Arc<dyn TaskStore>) {
    let tasks = vec![on("a"), on("a"), on("b"), on("a")];
    store.create(tasks.clone()).await.expect("create");
    let id = |i: usize| tasks[i].id;
    for i in 0..4 {
        assert_eq!(lease(&*store, &id(i)).await, 0, "a new task has token 0");
    }
    store
        .start(&id(0), Fence::new("a", 0), 1, 10)
        .await
        .expect("start");
    let failed = finish_by("a", TaskStatus::Failed, 15);
    assert_eq!(
        store.finish(&id(3), failed).await.expect("finish"),
        Transition::Applied
    );
    assert_eq!(lease(&*store, &id(0)).await, 0, "a start keeps the token");

    let claimed = store.claim("a", "c").await.expect("claim");
    assert_eq!(ids(&claimed), [id(0), id(1)]);
    assert!(claimed.iter().all(|r| r.lease == 1), "{claimed:?}");
    for (i, expected) in [(0, 1), (1, 1), (2, 0), (3, 0)] {
        assert_eq!(
            lease(&*store, &id(i)).await,
            expected,
            "task {i} after the claim"
        );
    }
    assert_eq!(store.claim("a", "d").await.expect("claim again"), []);
    assert_eq!(store.claim("c", "c").await.expect("self claim"), []);
    assert_eq!(lease(&*store, &id(0)).await, 1, "no move, no bump");

    let listed = [id(1), id(1), id(2), id(3)];
    let moved = store.reassign(&listed, "c", "d").await.expect("reassign");
    assert_eq!(ids(&moved), [id(1)], "once, though listed twice");
    assert_eq!(moved[0].lease, 2, "answered as stored");
    assert_eq!(lease(&*store, &id(1)).await, 2);
    assert_eq!(lease(&*store, &id(2)).await, 0, "held elsewhere: not moved");
    assert_eq!(lease(&*store, &id(3)).await, 0, "terminal: not moved");
    assert_eq!(store.reassign(&[id(1)], "c", "e").await.expect("stale"), []);
    assert_eq!(store.reassign(&[id(1)], "d", "d").await.expect("self"), []);
    assert_eq!(lease(&*store, &id(1)).await, 2, "no move, no bump");

    let d = Fence::new("d", 2);
    store.start(&id(1), d, 1, 20).await.expect("start");
    assert_eq!(lease(&*store, &id(1)).await, 2, "a start keeps it");
    store.requeue(&id(1), d, 1, None).await.expect("requeue");
    assert_eq!(lease(&*store, &id(1)).await, 3, "a requeue bumps it once");
    let done = finish_with(Fence::new("d", 3), TaskStatus::Succeeded, 30);
    assert_eq!(
        store.finish(&id(1), done).await.expect("finish"),
        Transition::Applied
    );
    assert_eq!(lease(&*store, &id(1)).await, 3, "finish keeps it");
    assert_eq!(
        store.claim("d", "a").await.expect("claim"),
        [],
        "terminal stays"
    );
    assert_eq!(lease(&*store, &id(1)).await, 3);
}
