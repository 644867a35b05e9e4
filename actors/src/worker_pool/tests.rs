//! WorkerPool tests with real actors and kernels over the in-memory store (and one over
//! a shared Redis store, for recovery).

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use taskmesh_kernels::task::{Priority, TaskId, TaskSpec, TaskStatus};
use taskmesh_kernels::{Registry, RegistryOptions};

use super::retry::Backoff;
use super::*;
use crate::context::{ActorNames, NodeContext};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::TaskStore;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::redis::testing::RedisServer;
use crate::task::{NewTask, now_ms};

mod requeue;

struct Harness {
    ctx: NodeContext,
    pool: ActorRef<PoolMessage>,
}

async fn start_pool(workers: usize) -> Harness {
    start_pool_on(workers, Arc::new(MemoryStore::new())).await
}

async fn start_pool_on(workers: usize, store: Arc<dyn TaskStore>) -> Harness {
    let node = format!("test-{}", TaskId::generate());
    let ctx = NodeContext {
        cluster: None,
        node_id: node.as_str().into(),
        store,
        kernels: Registry::new(RegistryOptions { test_kernels: true }),
        metrics: Arc::new(Metrics::new().expect("metrics")),
        notifier: Arc::new(Notifier::default()),
        names: Arc::new(ActorNames::for_node(&node)),
        local_load: Default::default(),
    };
    let config = WorkerPoolConfig {
        initial_workers: workers,
        queue_capacity: 1000,
        backoff: Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(20),
        },
        report_interval: Duration::from_millis(50),
        labels: vec![],
        worker_lease: Duration::from_secs(10),
    };
    let args = WorkerPoolArgs {
        ctx: ctx.clone(),
        config,
    };
    let (pool, _) = Actor::spawn(Some(ctx.names.pool.clone()), WorkerPool, args)
        .await
        .expect("spawn pool");
    Harness { ctx, pool }
}

fn spec(kind: &str, params: &str, max_retries: u32) -> TaskSpec {
    TaskSpec {
        kind: kind.into(),
        params: params.into(),
        priority: Priority::Normal,
        timeout_ms: None,
        max_retries,
        idempotency_key: None,
        class: None,
        request_id: None,
        submitted_by: None,
    }
}

impl Harness {
    async fn submit(&self, spec: TaskSpec) -> TaskId {
        let id = TaskId::generate();
        let task = NewTask {
            id,
            spec: spec.clone().into(),
            created_at_ms: now_ms(),
            node: None,
        };
        self.ctx.store.create(vec![task]).await.expect("create");
        self.pool
            .cast(PoolMessage::Enqueue(vec![Job::new(id, spec)]))
            .expect("enqueue");
        id
    }

    /// Polls the store until the task is terminal (deadline 20 s).
    async fn terminal(&self, id: &TaskId) -> crate::task::TaskRecord {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let done = self.ctx.notifier.subscribe(id);
            let record = self.ctx.store.get(id).await.expect("get").expect("exists");
            if record.status.is_terminal() {
                return record;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never finished: {record:?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), done).await;
        }
    }

    async fn load(&self) -> PoolLoad {
        ractor::call_t!(self.pool, PoolMessage::GetLoad, 1000).expect("load")
    }
}

#[tokio::test]
async fn runs_a_task_to_success() {
    let h = start_pool(2).await;
    let id = h.submit(spec("echo", r#"{"value":[1,2]}"#, 0)).await;
    let r = h.terminal(&id).await;
    assert_eq!(r.status, TaskStatus::Succeeded);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.result.as_deref(), Some(r#"{"value":[1,2]}"#));
    assert_eq!(r.node.as_deref(), Some(&*h.ctx.node_id));
}

#[tokio::test]
async fn a_panicking_worker_is_replaced_and_its_task_retried_then_failed() {
    let h = start_pool(2).await;
    let id = h.submit(spec("panic", "{}", 2)).await;
    let r = h.terminal(&id).await;
    assert_eq!(r.status, TaskStatus::Failed);
    assert_eq!(r.attempts, 3, "one attempt plus two retries");
    assert_eq!(h.ctx.metrics.worker_restarts.get(), 3);
    // The pool is whole again and still works.
    let ok = h.submit(spec("noop", "{}", 0)).await;
    assert_eq!(h.terminal(&ok).await.status, TaskStatus::Succeeded);
    assert_eq!(h.load().await.figures.workers, 2);
}

#[tokio::test]
async fn a_permanent_error_fails_the_task_at_once() {
    let h = start_pool(2).await;
    let id = h
        .submit(spec(
            "fail",
            r#"{"message": "bad input", "permanent": true}"#,
            3,
        ))
        .await;
    let r = h.terminal(&id).await;
    assert_eq!(r.status, TaskStatus::Failed);
    assert_eq!(r.attempts, 1, "no retry for a permanent error");
    assert_eq!(r.error.as_deref(), Some("bad input"));
    assert_eq!(h.ctx.metrics.retries.with_label_values(&["fail"]).get(), 0);
}

#[tokio::test]
async fn a_retryable_error_is_retried_up_to_max_retries() {
    let h = start_pool(2).await;
    let id = h.submit(spec("fail", r#"{"message": "busy"}"#, 2)).await;
    let r = h.terminal(&id).await;
    assert_eq!(r.status, TaskStatus::Failed);
    assert_eq!(r.attempts, 3, "one attempt plus two retries");
    assert_eq!(
        r.lease, 2,
        "the last attempt ran under the second requeue's token"
    );
    assert_eq!(r.error.as_deref(), Some("busy"));
    assert_eq!(h.ctx.metrics.retries.with_label_values(&["fail"]).get(), 2);
}

#[tokio::test]
async fn a_flaky_task_succeeds_after_retries() {
    let h = start_pool(1).await;
    let id = h.submit(spec("flaky", r#"{"fail_attempts":2}"#, 3)).await;
    let r = h.terminal(&id).await;
    assert_eq!(r.status, TaskStatus::Succeeded, "{r:?}");
    assert_eq!(r.attempts, 3);
    assert_eq!(r.lease, 2, "each retry's requeue bumped the token once");
}

#[tokio::test]
async fn a_timeout_fails_the_task_and_frees_the_worker() {
    let h = start_pool(1).await;
    let mut s = spec("sleep", r#"{"ms":60000}"#, 0);
    s.timeout_ms = Some(50);
    let slow = h.submit(s).await;
    let next = h.submit(spec("noop", "{}", 0)).await;
    let r = h.terminal(&slow).await;
    assert_eq!(r.status, TaskStatus::Failed);
    assert!(
        r.error.as_deref().unwrap_or("").contains("timed out"),
        "{r:?}"
    );
    assert_eq!(h.terminal(&next).await.status, TaskStatus::Succeeded);
}

#[tokio::test]
async fn cancel_removes_queued_tasks_and_signals_running_ones() {
    let h = start_pool(1).await;
    let running = h.submit(spec("sleep", r#"{"ms":60000}"#, 0)).await;
    let queued = h.submit(spec("noop", "{}", 0)).await;
    // Wait until the sleep task holds the only worker.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.load().await.figures.busy == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let c = ractor::call_t!(h.pool, PoolMessage::Cancel, 1000, queued).expect("call");
    assert_eq!(c, CancelOutcome::Removed);
    let c = ractor::call_t!(h.pool, PoolMessage::Cancel, 1000, running).expect("call");
    assert_eq!(c, CancelOutcome::Signalled);
    assert_eq!(h.terminal(&running).await.status, TaskStatus::Cancelled);
    let c = ractor::call_t!(h.pool, PoolMessage::Cancel, 1000, TaskId::generate()).expect("call");
    assert_eq!(c, CancelOutcome::NotHere);
    let q = h
        .ctx
        .store
        .get(&queued)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        q.status,
        TaskStatus::Queued,
        "the pool never ran the removed task"
    );
}

#[tokio::test]
async fn a_new_pool_recovers_unfinished_tasks_from_the_store() {
    let h = start_pool(1).await;
    // Tasks written to the store but never handed to a pool, as after a crash.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = TaskId::generate();
        let task = NewTask {
            id,
            spec: spec("noop", "{}", 0).into(),
            created_at_ms: now_ms(),
            node: None,
        };
        h.ctx.store.create(vec![task]).await.expect("create");
        ids.push(id);
    }
    h.pool.cast(PoolMessage::Rescan).expect("rescan");
    for id in &ids {
        assert_eq!(h.terminal(id).await.status, TaskStatus::Succeeded);
    }
}

#[tokio::test]
async fn a_pool_on_a_shared_store_recovers_only_its_own_nodes_tasks() {
    let server = RedisServer::start().expect("start redis-server");
    let store = RedisStore::connect_with_prefix(&server.url(), "pool:").await;
    let store = Arc::new(store.expect("connect"));
    let h = start_pool_on(1, store.clone()).await;
    let placed = |node: &str| NewTask {
        id: TaskId::generate(),
        spec: spec("noop", "{}", 0).into(),
        created_at_ms: now_ms(),
        node: Some(node.to_owned()),
    };
    // Another node's tasks are older: a pool that took them would run them first on its
    // one worker, so they would be done before this node's own.
    let theirs: Vec<NewTask> = (0..3).map(|_| placed("another-node")).collect();
    let mine: Vec<NewTask> = (0..3).map(|_| placed(&h.ctx.node_id)).collect();
    store.create(theirs.clone()).await.expect("create theirs");
    store.create(mine.clone()).await.expect("create mine");
    h.pool.cast(PoolMessage::Rescan).expect("rescan");
    for t in &mine {
        assert_eq!(h.terminal(&t.id).await.status, TaskStatus::Succeeded);
    }
    for t in &theirs {
        let record = store.get(&t.id).await.expect("get").expect("exists");
        assert_eq!(
            (record.status, record.attempts),
            (TaskStatus::Queued, 0),
            "another node's task is left to it"
        );
    }
}

#[tokio::test]
async fn resize_grows_and_shrinks_the_pool() {
    let h = start_pool(2).await;
    h.pool.cast(PoolMessage::Resize(5)).expect("resize");
    assert_eq!(h.load().await.figures.workers, 5);
    h.pool.cast(PoolMessage::Resize(1)).expect("resize");
    assert_eq!(h.load().await.figures.workers, 1);
    assert_eq!(
        h.ctx.metrics.worker_restarts.get(),
        0,
        "retiring is not a restart"
    );
}

/// Polls `check` until it holds, for at most ten seconds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let holds = async || Ok(check().await.then_some(()));
    crate::testing::eventually(Duration::from_secs(10), what, holds)
        .await
        .expect("the condition holds in time");
}

#[tokio::test]
async fn an_attempt_whose_start_is_fenced_off_is_cancelled_and_not_recorded() {
    let h = start_pool(1).await;
    // Let the pool's start-up recovery finish first: on a private store it would claim
    // the task below as held under a former id of this node.
    let warmup = h.submit(spec("noop", "{}", 0)).await;
    assert_eq!(h.terminal(&warmup).await.status, TaskStatus::Succeeded);
    let id = TaskId::generate();
    let s = spec("sleep", r#"{"ms":60000}"#, 3);
    let task = NewTask {
        id,
        spec: s.clone().into(),
        created_at_ms: now_ms(),
        node: Some("elsewhere".into()),
    };
    h.ctx.store.create(vec![task]).await.expect("create");
    let before = h.ctx.store.get(&id).await.expect("get").expect("exists");
    h.pool
        .cast(PoolMessage::Enqueue(vec![Job::new(id, s)]))
        .expect("enqueue");
    eventually("the attempt started", async || {
        h.load().await.figures.busy == 1
    })
    .await;
    eventually("the fenced attempt stopped", async || {
        h.load().await.figures.busy == 0
    })
    .await;
    let load = h.load().await;
    assert_eq!(
        (
            load.figures.delayed,
            load.figures.queued.iter().sum::<usize>()
        ),
        (0, 0)
    );
    let after = h.ctx.store.get(&id).await.expect("get").expect("exists");
    assert_eq!(after, before, "nothing was written for another node's task");
    assert_eq!(h.ctx.metrics.duplicate_completions.get(), 0);
    let ok = h.submit(spec("noop", "{}", 0)).await;
    assert_eq!(h.terminal(&ok).await.status, TaskStatus::Succeeded);
}

/// Claims the task away from this pool's node and back (both sides of a partition
/// claiming), and answers the record after: held here again, under token 2.
async fn away_and_back(h: &Harness, id: &TaskId) -> crate::task::TaskRecord {
    let node = h.ctx.node_id.to_string();
    eventually("the task is recorded running", async || {
        let r = h.ctx.store.get(id).await.expect("get").expect("exists");
        r.status == TaskStatus::Running
    })
    .await;
    assert_eq!(
        h.ctx.store.claim(&node, "other").await.expect("away").len(),
        1
    );
    assert_eq!(
        h.ctx.store.claim("other", &node).await.expect("back").len(),
        1
    );
    let r = h.ctx.store.get(id).await.expect("get").expect("exists");
    assert_eq!(
        (r.status, r.node.as_deref(), r.lease),
        (TaskStatus::Queued, Some(node.as_str()), 2)
    );
    r
}

#[tokio::test]
async fn a_late_result_after_the_task_came_back_is_dropped_and_counted() {
    let h = start_pool(1).await;
    // Let the start-up recovery finish first: on a private store it would claim tasks
    // held by "other" for this node.
    let warmup = h.submit(spec("noop", "{}", 0)).await;
    assert_eq!(h.terminal(&warmup).await.status, TaskStatus::Succeeded);
    let id = h.submit(spec("sleep", r#"{"ms":300}"#, 0)).await;
    let back = away_and_back(&h, &id).await;
    // The attempt from before still runs here; this node holds the task again, but the
    // attempt's token is 0, so its result is refused and counted as a duplicate.
    eventually("the stale finish was refused", async || {
        h.ctx.metrics.duplicate_completions.get() == 1
    })
    .await;
    let r = h.ctx.store.get(&id).await.expect("get").expect("exists");
    assert_eq!(r, back, "the stale attempt wrote nothing");
    // Given the task under the current token, the pool runs it and records it.
    h.pool
        .cast(PoolMessage::Enqueue(vec![Job::from_record(r)]))
        .expect("enqueue");
    let done = h.terminal(&id).await;
    assert_eq!(
        (done.status, done.lease, done.attempts),
        (TaskStatus::Succeeded, 2, 2)
    );
}

#[tokio::test]
async fn a_copy_under_a_newer_token_replaces_the_running_one() {
    let h = start_pool(1).await;
    let warmup = h.submit(spec("noop", "{}", 0)).await;
    assert_eq!(h.terminal(&warmup).await.status, TaskStatus::Succeeded);
    let id = h.submit(spec("sleep", r#"{"ms":1500}"#, 0)).await;
    let back = away_and_back(&h, &id).await;
    // The dispatcher hands the claimed task back to this pool while its old attempt runs.
    h.pool
        .cast(PoolMessage::Enqueue(vec![Job::from_record(back)]))
        .expect("enqueue");
    let done = h.terminal(&id).await;
    assert_eq!((done.status, done.lease), (TaskStatus::Succeeded, 2));
    assert_eq!(
        h.ctx.metrics.duplicate_completions.get(),
        0,
        "the old attempt was cancelled and its outcome dropped unwritten"
    );
    assert_eq!(h.load().await.figures.busy, 0);
}

#[tokio::test]
async fn a_result_for_a_task_claimed_away_is_dropped_as_a_duplicate() {
    let h = start_pool(1).await;
    let id = h.submit(spec("sleep", r#"{"ms":400}"#, 0)).await;
    let node = h.ctx.node_id.to_string();
    eventually("the task is recorded running", async || {
        let r = h.ctx.store.get(&id).await.expect("get").expect("exists");
        r.status == TaskStatus::Running
    })
    .await;
    let claimed = h.ctx.store.claim(&node, "survivor").await.expect("claim");
    assert_eq!(claimed.len(), 1);
    eventually("the finish was refused", async || {
        h.ctx.metrics.duplicate_completions.get() == 1
    })
    .await;
    let r = h.ctx.store.get(&id).await.expect("get").expect("exists");
    assert_eq!(
        (r.status, r.node.as_deref(), r.attempts),
        (TaskStatus::Queued, Some("survivor"), 1)
    );
    assert_eq!(h.load().await.figures.busy, 0);
}

#[tokio::test]
async fn a_peers_offer_is_taken_whole_within_capacity_and_refused_past_it_or_when_draining() {
    // No worker: what is taken stays queued, so the queue depth is exact.
    let h = start_pool(0).await;
    let jobs = |n: usize| -> Vec<Job> {
        (0..n)
            .map(|_| Job::new(TaskId::generate(), spec("noop", "{}", 0)))
            .collect()
    };
    let offer = async |n: usize| {
        ractor::call_t!(h.pool, PoolMessage::Offer, 1000, jobs(n)).expect("answer")
    };
    assert_eq!(offer(1001).await, Err(OfferRefused::Full), "over capacity");
    assert_eq!(
        h.load().await.figures.queued.iter().sum::<usize>(),
        0,
        "none taken"
    );
    assert_eq!(offer(1000).await, Ok(()));
    assert_eq!(h.load().await.figures.queued.iter().sum::<usize>(), 1000);
    assert_eq!(offer(1).await, Err(OfferRefused::Full), "the queue is full");
    ractor::call_t!(h.pool, PoolMessage::Drain, 5000).expect("drained");
    assert_eq!(offer(0).await, Err(OfferRefused::Draining));
    assert_eq!(h.load().await.figures.queued.iter().sum::<usize>(), 1000);
}
