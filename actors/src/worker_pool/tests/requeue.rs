//! A retry's requeue as the pool sees it: applied behind a store error, refused because
//! the task moved away, or refused because it ended meanwhile. A store wrapper makes the
//! first requeue meet each case.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{TaskId, TaskStatus};

use super::{Harness, eventually, spec, start_pool_on};
use crate::handoff::Job;
use crate::store::conformance::fixtures::finish;
use crate::store::memory::MemoryStore;
use crate::store::{Created, LeaseInfo, ListFilter, StoreError, TaskStore, Transition};
use crate::task::{Fence, Finish, Millis, NewTask, TaskRecord, now_ms};
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

/// A [`MemoryStore`] whose first `requeue` meets a [`Fault`].
struct FirstRequeue {
    inner: MemoryStore,
    fault: Fault,
    hit: AtomicBool,
}

#[async_trait]
impl TaskStore for FirstRequeue {
    async fn requeue(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        error: Option<String>,
    ) -> Result<Transition, StoreError> {
        if self.hit.swap(true, Ordering::SeqCst) {
            return self.inner.requeue(id, fence, attempts, error).await;
        }
        match self.fault {
            Fault::AppliedThenTimesOut => {
                let applied = self.inner.requeue(id, fence, attempts, error).await?;
                assert_eq!(applied, Transition::Applied);
                Err(StoreError::Backend("redis did not answer within 5s".into()))
            }
            Fault::ClaimedAwayFirst => {
                assert_eq!(self.inner.claim(fence.node, "other").await?.len(), 1);
                self.inner.requeue(id, fence, attempts, error).await
            }
            Fault::CancelledFirst => {
                let cancel = Finish {
                    lease: fence.lease,
                    ..finish(TaskStatus::Cancelled, now_ms())
                };
                assert_eq!(self.inner.finish(id, cancel).await?, Transition::Applied);
                self.inner.requeue(id, fence, attempts, error).await
            }
        }
    }
    async fn create(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>, StoreError> {
        self.inner.create(tasks).await
    }
    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn start(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        at: Millis,
    ) -> Result<Transition, StoreError> {
        self.inner.start(id, fence, attempts, at).await
    }
    async fn progress(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        progress: Progress,
    ) -> Result<Transition, StoreError> {
        self.inner.progress(id, fence, progress).await
    }
    async fn finish(&self, id: &TaskId, finish: Finish) -> Result<Transition, StoreError> {
        self.inner.finish(id, finish).await
    }
    async fn claim(&self, from: &str, to: &str) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.claim(from, to).await
    }
    async fn reassign(
        &self,
        ids: &[TaskId],
        from: &str,
        to: &str,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.reassign(ids, from, to).await
    }
    async fn renew_lease(&self, node: &str, ttl_ms: u64) -> Result<(), StoreError> {
        self.inner.renew_lease(node, ttl_ms).await
    }
    async fn lease(&self, node: &str) -> Result<Option<LeaseInfo>, StoreError> {
        self.inner.lease(node).await
    }
    async fn expired_holders(&self) -> Result<Vec<String>, StoreError> {
        self.inner.expired_holders().await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.list(filter).await
    }
    async fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.unfinished().await
    }
    async fn recoverable(&self, node: &str) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.recoverable(node).await
    }
    async fn purge_finished(&self, finished_before: Millis) -> Result<usize, StoreError> {
        self.inner.purge_finished(finished_before).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn put_key(&self, key: crate::auth::key::KeyRecord) -> Result<bool, StoreError> {
        self.inner.put_key(key).await
    }

    async fn get_key(&self, id: &str) -> Result<Option<crate::auth::key::KeyRecord>, StoreError> {
        self.inner.get_key(id).await
    }

    async fn list_keys(&self) -> Result<Vec<crate::auth::key::KeyRecord>, StoreError> {
        self.inner.list_keys().await
    }

    async fn revoke_key(&self, id: &str, at_ms: crate::task::Millis) -> Result<bool, StoreError> {
        self.inner.revoke_key(id, at_ms).await
    }
}

/// A one-worker pool over a store whose first requeue meets `fault`, with its start-up
/// recovery done, and a task of `kind` (params `params`, three retries) created on the
/// pool's node and given to it.
async fn pool_with_a_failing_task(fault: Fault, kind: &str, params: &str) -> (Harness, TaskId) {
    let store = FirstRequeue {
        inner: MemoryStore::new(),
        fault,
        hit: AtomicBool::new(false),
    };
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
