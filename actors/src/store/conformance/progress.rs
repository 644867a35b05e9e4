//! Cases for `progress`: fenced like the attempt's other writes, kept by status changes
//! that keep the attempt, cleared by those that end it for a retry or a move.

use std::sync::Arc;

use taskmesh_kernels::Progress;
use taskmesh_kernels::task::TaskStatus;

use super::fixtures::{create_one, finish, get, task};
use crate::store::{TaskStore, Transition};
use crate::task::{Fence, Finish};

fn report(fraction: f64, message: &str) -> Progress {
    Progress::new(fraction, message).expect("a finite fraction")
}

/// The holder's attempt records its latest progress without changing the status; a
/// retry clears it, and a finish keeps the last one.
pub async fn progress_is_recorded_replaced_cleared_by_a_retry_and_kept_by_a_finish(
    store: Arc<dyn TaskStore>,
) {
    let t = task("sleep", None);
    create_one(&*store, t.clone()).await;
    assert_eq!(get(&*store, &t.id).await.progress, None, "none at creation");
    let n1 = Fence::new("n1", 0);
    store.start(&t.id, n1, 1, 100).await.expect("start");
    for (fraction, message) in [(0.25, "a quarter"), (0.5, "half way")] {
        assert_eq!(
            store
                .progress(&t.id, n1, report(fraction, message))
                .await
                .expect("progress"),
            Transition::Applied
        );
    }
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.attempts, r.progress),
        (TaskStatus::Running, 1, Some(report(0.5, "half way"))),
        "the last report wins and the status stays"
    );
    store
        .requeue(&t.id, n1, 1, Some("busy".into()))
        .await
        .expect("requeue");
    assert_eq!(
        get(&*store, &t.id).await.progress,
        None,
        "a retry starts over"
    );
    // The retry runs under the token the requeue gave it.
    let retry = Fence::new("n1", 1);
    assert_eq!(
        store.start(&t.id, retry, 2, 200).await.expect("restart"),
        Transition::Applied
    );
    assert_eq!(
        store
            .progress(&t.id, retry, report(0.9, "nearly"))
            .await
            .expect("progress"),
        Transition::Applied
    );
    let succeeded = Finish {
        lease: 1,
        ..finish(TaskStatus::Succeeded, 300)
    };
    let done = store.finish(&t.id, succeeded).await.expect("finish");
    assert_eq!(done, Transition::Applied);
    assert_eq!(
        store
            .progress(&t.id, retry, report(1.0, "late"))
            .await
            .expect("late progress"),
        Transition::Rejected(TaskStatus::Succeeded)
    );
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.progress),
        (TaskStatus::Succeeded, Some(report(0.9, "nearly")))
    );
}

/// Progress from another node, or from an attempt whose lease token is stale, writes
/// nothing; a move clears the old attempt's progress.
pub async fn progress_is_fenced_by_holder_and_token_and_cleared_by_a_move(
    store: Arc<dyn TaskStore>,
) {
    let t = task("sleep", None);
    create_one(&*store, t.clone()).await;
    store
        .start(&t.id, Fence::new("n1", 0), 1, 100)
        .await
        .expect("start");
    store
        .progress(&t.id, Fence::new("n1", 0), report(0.5, "n1 half way"))
        .await
        .expect("progress");
    assert_eq!(
        store
            .progress(&t.id, Fence::new("n2", 0), report(0.9, "not mine"))
            .await
            .expect("foreign progress"),
        Transition::NotHolder(Some("n1".into()))
    );
    let moved = store.claim("n1", "n2").await.expect("claim");
    assert_eq!(moved.len(), 1);
    assert_eq!(
        moved[0].progress, None,
        "the claim answers the cleared record"
    );
    assert_eq!(get(&*store, &t.id).await.progress, None);
    assert_eq!(
        store
            .progress(&t.id, Fence::new("n1", 0), report(0.7, "stale"))
            .await
            .expect("stale progress"),
        Transition::NotHolder(Some("n2".into()))
    );
    assert_eq!(
        store
            .progress(&t.id, Fence::new("n2", 0), report(0.7, "old token"))
            .await
            .expect("old token"),
        Transition::NotHolder(Some("n2".into()))
    );
    assert_eq!(
        store
            .progress(&t.id, Fence::new("n2", 1), report(0.1, "n2 started"))
            .await
            .expect("new holder"),
        Transition::Applied
    );
    let r = get(&*store, &t.id).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.progress),
        (
            TaskStatus::Queued,
            Some("n2"),
            Some(report(0.1, "n2 started"))
        ),
        "progress does not start the task"
    );
}
