//! A retry's requeue as the pool sees it: applied behind a store error, refused because
//! the task moved away, or refused because it ended meanwhile. A store wrapper makes the
//! first requeue meet each case.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use taskmesh_kernels::task::{TaskId, TaskStatus};

use super::{Harness, eventually, spec, start_pool_on};
use crate::handoff::Job;
use crate::store::conformance::fixtures::finish;
use crate::store::intercept::{Intercept, Intercepted};
use crate::store::memory::MemoryStore;
use crate::store::{StoreError, TaskStore, Transition};
use crate::task::{Fence, Finish, NewTask, TaskRecord, now_ms};
use crate::worker_pool::PoolMessage;

/// What happens around the first `requeue`; later ones pass through.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// It is applied, then fails as a timeout would.
    AppliedThenTimesOut,
    /// The task is claimed away to `other` just before it.
    ClaimedAwayFirst,
    /// The task is cancelled just before it.
    CancelledFirst,
}

/// The first `requeue` meets a [`Fault`]; every other call passes through.
struct FirstRequeue {
    fault: Fault,
    hit: AtomicBool,
}

#[async_trait]
impl Intercept for FirstRequeue {
    async fn requeue(
        &self,
        inner: &MemoryStore,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        error: Option<String>,
    ) -> Result<Transition, StoreError> {
        if self.hit.swap(true, Ordering::SeqCst) {
            return inner.requeue(id, fence, attempts, error).await;
        }
        match self.fault {
            Fault::AppliedThenTimesOut => {
                let applied = inner.requeue(id, fence, attempts, error).await?;
                assert_eq!(applied, Transition::Applied);
                Err(StoreError::Backend("redis did not answer within 5s".into()))
            }
            Fault::ClaimedAwayFirst => {
                assert_eq!(inner.claim(fence.node, "other").await?.len(), 1);
                inner.requeue(id, fence, attempts, error).await
            }
            Fault::CancelledFirst => {
                let cancel = Finish {
                    lease: fence.lease,
                    ..finish(TaskStatus::Cancelled, now_ms())
                };
                assert_eq!(inner.finish(id, cancel).await?, Transition::Applied);
                inner.requeue(id, fence, attempts, error).await
            }
        }
    }
}

/// A one-worker pool over a store whose first requeue meets `fault`, with its start-up
/// recovery done, and a task of `kind` (params `params`, three retries) created on the
/// pool's node and given to it.
async fn pool_with_a_failing_task(fault: Fault, kind: &str, params: &str) -> (Harness, TaskId) {
    let store = Intercepted::new(FirstRequeue {
        fault,
        hit: AtomicBool::new(false),
    });
    let h = start_pool_on(1, Arc::new(store)).await;
    let warmup = h.submit(spec("noop", "{}", 0)).await;
    assert_eq!(h.terminal(&warmup).await.status, TaskStatus::Succeeded);
    let id = TaskId::generate();
    let s = spec(kind, params, 3);
    let task = NewTask {
        id,
        spec: s.clone().into(),
        created_at_ms: now_ms(),
        node: Some(h.ctx.node_id.to_string()),
    };
    h.ctx.store.create(vec![task]).await.expect("create");
    h.pool
        .cast(PoolMessage::Enqueue(vec![Job::new(id, s)]))
        .expect("enqueue");
    (h, id)
}

/// Waits until the pool holds nothing and runs nothing, and answers the task's record.
async fn pool_let_go(h: &Harness, id: &TaskId) -> TaskRecord {
    eventually("the pool holds nothing", async || {
        let figures = h.load().await.figures;
        (figures.delayed, figures.busy, figures.queued.iter().sum()) == (0, 0, 0usize)
    })
    .await;
    h.ctx.store.get(id).await.expect("get").expect("exists")
}

#[tokio::test]
async fn a_retry_runs_under_the_token_its_requeue_gave_it() {
    let (h, id) = pool_with_a_failing_task(
        Fault::AppliedThenTimesOut,
        "flaky",
        r#"{"fail_attempts":2}"#,
    )
    .await;
    let r = h.terminal(&id).await;
    // The first requeue was applied though the store answered an error; its repeat was
    // refused as stale by this node and counted as applied, so the retry ran under
    // token 1, and the second retry under token 2.
    assert_eq!(
        (r.status, r.attempts, r.lease),
        (TaskStatus::Succeeded, 3, 2),
        "{r:?}"
    );
    let errors = h.ctx.metrics.store_errors.with_label_values(&["requeue"]);
    assert_eq!(errors.get(), 1);
    assert_eq!(h.ctx.metrics.duplicate_completions.get(), 0);
}

#[tokio::test]
async fn a_requeue_refused_because_the_task_moved_away_drops_the_retry() {
    let (h, id) =
        pool_with_a_failing_task(Fault::ClaimedAwayFirst, "fail", r#"{"message":"busy"}"#).await;
    let r = pool_let_go(&h, &id).await;
    assert_eq!(
        (r.status, r.node.as_deref(), r.lease, r.attempts),
        (TaskStatus::Queued, Some("other"), 1, 0),
        "only the claim wrote: the refused requeue wrote nothing, and no retry ran here"
    );
    assert_eq!(h.ctx.metrics.retries.with_label_values(&["fail"]).get(), 1);
}

#[tokio::test]
async fn a_requeue_refused_because_the_task_ended_drops_the_retry() {
    let (h, id) =
        pool_with_a_failing_task(Fault::CancelledFirst, "fail", r#"{"message":"busy"}"#).await;
    let r = pool_let_go(&h, &id).await;
    assert_eq!((r.status, r.lease), (TaskStatus::Cancelled, 0));
    let again = h.submit(spec("noop", "{}", 0)).await;
    assert_eq!(h.terminal(&again).await.status, TaskStatus::Succeeded);
    assert_eq!(h.ctx.metrics.retries.with_label_values(&["fail"]).get(), 1);
}
