//! A Worker: runs one attempt at a time for its pool (Celery's `prefetch=1`).
//!
//! A kernel panic is re-raised inside the worker's handler, so the worker actor fails
//! and its pool's supervision replaces it and decides the task's fate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use taskmesh_kernels::CancelToken;
use tracing::Instrument;

use super::PoolMessage;
use super::executor::{self, AttemptOutcome, Panic};
use super::progress;
use crate::context::NodeContext;
use crate::handoff::Job;
use crate::store::Transition;
use crate::task::{Fence, now_ms};

/// The Worker actor.
pub struct Worker;

/// What a worker is started with.
pub struct WorkerArgs {
    /// Shared node handles.
    pub ctx: NodeContext,
    /// The pool to report to.
    pub pool: ActorRef<PoolMessage>,
}

/// Messages a worker handles.
pub enum WorkerMessage {
    /// Run one attempt of `job`; `cancel` is raised by the pool on a client cancel.
    Run(Job, CancelToken),
}

// Local only: the cluster feature of ractor needs the impl spelled out.
impl ractor::Message for WorkerMessage {}

/// The result of one attempt, sent back to the pool.
#[derive(Debug)]
pub struct AttemptReport {
    /// The task.
    pub job: Job,
    /// How it went (a panic fails the worker instead of being reported).
    pub outcome: AttemptOutcome,
    /// When the attempt started (wall clock).
    pub started_at_ms: u64,
}

impl Actor for Worker {
    type Msg = WorkerMessage;
    type State = WorkerArgs;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: WorkerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let WorkerMessage::Run(job, cancel) = message;
        let span = job.span();
        let report = run_attempt(&state.ctx, &state.pool, job, cancel)
            .instrument(span)
            .await;
        let report = match report {
            Ok(report) => report,
            Err(payload) => std::panic::resume_unwind(payload),
        };
        state
            .pool
            .cast(PoolMessage::Finished {
                worker: myself.get_id(),
                report,
            })
            .map_err(|e| format!("pool is gone: {e}"))?;
        Ok(())
    }
}

/// How long an attempt runs before the store is told it is running.
pub const RECORD_RUNNING_AFTER: Duration = Duration::from_millis(25);

/// Writes `running` without waiting (see [`write_running`]).
fn record_running(
    ctx: &NodeContext,
    pool: &ActorRef<PoolMessage>,
    job: &Job,
    attempt: u32,
    started_at_ms: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(write_running(ctx, pool, job, attempt, started_at_ms))
}

/// The `running` write of attempt `attempt` of `job`, for the caller to spawn: the store
/// refuses it over a terminal state, so a late write can never undo a completion. If the
/// task moved since this attempt was given it (another node holds it, or its lease token
/// is newer), the pool is told ([`PoolMessage::Lost`]) and drops this attempt.
pub(super) fn write_running(
    ctx: &NodeContext,
    pool: &ActorRef<PoolMessage>,
    job: &Job,
    attempt: u32,
    started_at_ms: u64,
) -> impl Future<Output = ()> + Send + 'static {
    let (store, id, node) = (ctx.store.clone(), job.id, ctx.node_id.clone());
    let (pool, lease) = (pool.clone(), job.lease);
    async move {
        let fence = Fence::new(&node, lease);
        match store.start(&id, fence, attempt, started_at_ms).await {
            Ok(Transition::NotHolder(holder)) => {
                let _ = pool.cast(PoolMessage::Lost { id, lease, holder });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(task_id = %id, error = %e, "recording task start failed"),
        }
    }
}

async fn run_attempt(
    ctx: &NodeContext,
    pool: &ActorRef<PoolMessage>,
    job: Job,
    cancel: CancelToken,
) -> Result<AttemptReport, Panic> {
    let attempt = job.attempts + 1;
    let started_at_ms = now_ms();
    tracing::debug!("attempt started");
    // A task that may have been running when a node died is recorded as running before
    // it runs again, so a task that kills its node uses up its retries instead of
    // crash-looping the cluster. Fresh first attempts skip this write (see below).
    let rerun = job.recovered || job.attempts > 0;
    if rerun {
        let _ = record_running(ctx, pool, &job, attempt, started_at_ms).await;
    }
    let timer = Instant::now();
    let timeout = job.spec.timeout_ms.map(Duration::from_millis);
    // A second handle on the spec, so the pinned attempt does not borrow `job`.
    let spec = Arc::clone(&job.spec);
    let (sink, progress_writer) = if ctx.kernels.is_trivial(&spec.kind) {
        (None, None)
    } else {
        let (sink, writer) =
            progress::spawn(ctx.store.clone(), job.id, ctx.node_id.clone(), job.lease);
        (Some(sink), Some(writer))
    };
    let execution = executor::execute(&ctx.kernels, &spec, attempt, cancel, timeout, sink);
    tokio::pin!(execution);
    // Short attempts go from queued straight to their terminal write, which carries every
    // field; only an attempt still running after RECORD_RUNNING_AFTER is recorded as
    // running (so the API shows it, and a crash during it counts against its retries).
    let outcome = tokio::select! {
        biased;
        outcome = &mut execution => outcome,
        () = tokio::time::sleep(RECORD_RUNNING_AFTER), if !rerun => {
            drop(record_running(ctx, pool, &job, attempt, started_at_ms));
            execution.await
        }
    };
    let elapsed = timer.elapsed();
    // Before the pool settles the attempt, so no report of it lands after a retry's
    // requeue (which clears the progress).
    drop(progress_writer);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(payload) => {
            tracing::error!(panic = %executor::panic_message(payload.as_ref()), "kernel panicked");
            return Err(payload);
        }
    };
    ctx.metrics
        .task_duration
        .with_label_values(&[job.spec.kind.as_str()])
        .observe(elapsed.as_secs_f64());
    Ok(AttemptReport {
        job,
        outcome,
        started_at_ms,
    })
}
