//! Cases for `start`, `requeue` and `finish`: which changes apply, and what they write.

use std::sync::Arc;

use taskmesh_kernels::task::{TaskId, TaskStatus};

use super::fixtures::{create_one, finish, get, task};
use crate::store::{TaskStore, Transition};
use crate::task::{Fence, Finish, TaskRecord};

/// `start` works from queued and again from running, recording the latest attempt.
pub async fn start_moves_queued_to_running_and_may_repeat(store: Arc<dyn TaskStore>) {
    let t = task("echo", None);
    create_one(&*store, t.clone()).await;
    assert_eq!(
        store
            .start(&t.id, Fence::new("n1", 0), 1, 100)
            .await
            .expect("start"),
        Transition::Applied
    );
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.attempts, r.started_at_ms),
        (TaskStatus::Running, Some("n1"), 1, Some(100))
    );
    assert_eq!(
        store
            .start(&t.id, Fence::new("n1", 0), 2, 200)
            .await
            .expect("restart"),
        Transition::Applied
    );
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.attempts, r.started_at_ms),
        (TaskStatus::Running, Some("n1"), 2, Some(200))
    );
    let done = store
        .finish(&t.id, finish(TaskStatus::Succeeded, 300))
        .await
        .expect("finish");
    assert_eq!(done, Transition::Applied);
    assert_eq!(
        store
            .start(&t.id, Fence::new("n3", 0), 3, 400)
            .await
            .expect("start"),
        Transition::Rejected(TaskStatus::Succeeded)
    );
    assert_eq!(
        get(&*store, &t.id).await.attempts,
        2,
        "rejected start wrote (the finish kept the 2 attempts recorded)"
    );
}

/// `requeue` sends a running or queued task back to the queue with its error.
pub async fn requeue_returns_a_live_task_to_the_queue(store: Arc<dyn TaskStore>) {
    let t = task("echo", None);
    create_one(&*store, t.clone()).await;
    store
        .start(&t.id, Fence::new("n1", 0), 1, 100)
        .await
        .expect("start");
    assert_eq!(
        store
            .requeue(&t.id, Fence::new("n1", 0), 1, Some("boom".into()))
            .await
            .expect("requeue"),
        Transition::Applied
    );
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.attempts, r.error.as_deref()),
        (TaskStatus::Queued, 1, Some("boom"))
    );
    assert_eq!(
        store
            .requeue(&t.id, Fence::new("n1", 1), 2, None)
            .await
            .expect("requeue queued"),
        Transition::Applied,
        "a queued task, under the token the first requeue gave it"
    );
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.attempts, r.error),
        (TaskStatus::Queued, 2, None)
    );
    let failed = Finish {
        lease: 2,
        ..finish(TaskStatus::Failed, 300)
    };
    assert_eq!(
        store.finish(&t.id, failed).await.expect("finish"),
        Transition::Applied
    );
    assert_eq!(
        store
            .requeue(&t.id, Fence::new("n1", 0), 3, None)
            .await
            .expect("requeue"),
        Transition::Rejected(TaskStatus::Failed)
    );
    assert_eq!(get(&*store, &t.id).await.status, TaskStatus::Failed);
}

/// The first terminal write is kept whole; a later one is refused with the first status.
pub async fn finish_first_terminal_write_wins(store: Arc<dyn TaskStore>) {
    let t = task("echo", None);
    create_one(&*store, t.clone()).await;
    store
        .start(&t.id, Fence::new("n1", 0), 1, 100)
        .await
        .expect("start");
    let first = Finish {
        status: TaskStatus::Succeeded,
        result: Some(r#"{"price":1.5}"#.into()),
        error: None,
        node: Some("n1".into()),
        lease: 0,
        attempts: 1,
        started_at_ms: Some(100),
        finished_at_ms: 200,
    };
    assert_eq!(
        store.finish(&t.id, first.clone()).await.expect("finish"),
        Transition::Applied
    );
    let late = Finish {
        status: TaskStatus::Failed,
        result: Some("late".into()),
        error: Some("late".into()),
        node: Some("n2".into()),
        lease: 0,
        attempts: 2,
        started_at_ms: Some(250),
        finished_at_ms: 300,
    };
    assert_eq!(
        store.finish(&t.id, late).await.expect("finish again"),
        Transition::Rejected(TaskStatus::Succeeded)
    );
    let expected = TaskRecord {
        status: first.status,
        result: first.result,
        error: first.error,
        node: first.node,
        attempts: first.attempts,
        started_at_ms: first.started_at_ms,
        finished_at_ms: Some(first.finished_at_ms),
        ..TaskRecord::queued(t.clone())
    };
    assert_eq!(get(&*store, &t.id).await, expected);
}

/// A queued task can be finished directly (a cancel) and then accepts no other change.
pub async fn finish_cancels_a_queued_task(store: Arc<dyn TaskStore>) {
    let t = task("echo", None);
    create_one(&*store, t.clone()).await;
    let cancel = Finish {
        error: Some("cancelled by client".into()),
        ..finish(TaskStatus::Cancelled, 50)
    };
    assert_eq!(
        store.finish(&t.id, cancel).await.expect("cancel"),
        Transition::Applied
    );
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.error.as_deref(), r.finished_at_ms),
        (TaskStatus::Cancelled, Some("cancelled by client"), Some(50))
    );
    let cancelled = Transition::Rejected(TaskStatus::Cancelled);
    assert_eq!(
        store
            .start(&t.id, Fence::new("n", 0), 1, 60)
            .await
            .expect("start"),
        cancelled
    );
    assert_eq!(
        store
            .requeue(&t.id, Fence::new("n", 0), 1, None)
            .await
            .expect("requeue"),
        cancelled
    );
}

/// `finish` with a non-terminal status is a caller bug: refused, nothing written.
pub async fn finish_with_a_live_status_is_rejected(store: Arc<dyn TaskStore>) {
    let t = task("echo", None);
    create_one(&*store, t.clone()).await;
    assert_eq!(
        store
            .finish(&t.id, finish(TaskStatus::Running, 10))
            .await
            .expect("finish"),
        Transition::Rejected(TaskStatus::Queued)
    );
    assert_eq!(get(&*store, &t.id).await, TaskRecord::queued(t));
}

/// Every change to an id that was never created answers `NotFound` and creates nothing.
pub async fn changes_to_unknown_ids_are_not_found(store: Arc<dyn TaskStore>) {
    let id = TaskId::generate();
    let not_found = Transition::NotFound;
    assert_eq!(
        store
            .start(&id, Fence::new("n", 0), 1, 1)
            .await
            .expect("start"),
        not_found
    );
    assert_eq!(
        store
            .requeue(&id, Fence::new("n", 0), 1, None)
            .await
            .expect("requeue"),
        not_found
    );
    let done = store
        .finish(&id, finish(TaskStatus::Succeeded, 1))
        .await
        .expect("finish");
    assert_eq!(done, not_found);
    assert_eq!(store.get(&id).await.expect("get"), None);
}
