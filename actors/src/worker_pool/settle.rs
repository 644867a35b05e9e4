//! What becomes of a task after an attempt: its terminal write, or a retry after a
//! backoff (`retry::may_retry` decides which), unless the task moved away meanwhile.

use std::time::Duration;

use tokio::sync::oneshot;

use taskmesh_kernels::task::{TaskId, TaskStatus};

use super::PoolMessage;
use super::executor::AttemptOutcome;
use super::retry::may_retry;
use super::state::PoolState;
use super::worker::AttemptReport;
use crate::handoff::Job;
use crate::store::Transition;
use crate::task::{Fence, Finish, now_ms};

impl PoolState {
    /// Decides a task's fate after an attempt.
    pub(super) fn settle(&mut self, report: AttemptReport) {
        let AttemptReport {
            mut job,
            outcome,
            started_at_ms,
            ..
        } = report;
        if self.lost.remove(&(job.id, job.lease)) {
            let _span = job.span().entered();
            tracing::info!("attempt ended after the task moved; not recorded");
            return;
        }
        job.attempts += 1;
        let started = Some(started_at_ms);
        match outcome {
            AttemptOutcome::Succeeded(result) => {
                self.finish(&job, TaskStatus::Succeeded, Some(result), None, started)
            }
            AttemptOutcome::Cancelled => {
                let msg = "cancelled by client".to_owned();
                self.finish(&job, TaskStatus::Cancelled, None, Some(msg), started)
            }
            AttemptOutcome::Invalid(msg) | AttemptOutcome::FailedPermanently(msg) => {
                let _span = job.span().entered();
                tracing::warn!(attempts = job.attempts, error = %msg, "task failed; no retry can help");
                self.finish(&job, TaskStatus::Failed, None, Some(msg), started)
            }
            AttemptOutcome::Failed(msg) => self.retry_or_fail(job, msg, started),
            AttemptOutcome::TimedOut(limit) => {
                let msg = format!("timed out after {} ms", limit.as_millis());
                self.retry_or_fail(job, msg, started)
            }
        }
    }

    pub(super) fn retry_or_fail(&mut self, job: Job, error: String, started: Option<u64>) {
        // `job.attempts` already counts the attempt that failed; the span names the next.
        let _span = job.span().entered();
        if !may_retry(job.attempts, job.spec.max_retries) {
            tracing::warn!(attempts = job.attempts, %error, "task failed");
            self.finish(&job, TaskStatus::Failed, None, Some(error), started);
            return;
        }
        let delay = self
            .config
            .backoff
            .delay(job.attempts, rand::random::<f64>());
        tracing::info!(attempts = job.attempts, %error, ?delay, "retrying");
        self.ctx
            .metrics
            .retries
            .with_label_values(&[job.spec.kind.as_str()])
            .inc();
        let recorded = job.attempts;
        self.requeue_after(job, recorded, Some(error), delay);
    }

    /// Records the task queued again (`attempts` as the store should keep them, and the
    /// failed attempt's `error`), holds it meanwhile, and queues it again after `delay`.
    pub(super) fn requeue_after(
        &mut self,
        job: Job,
        recorded_attempts: u32,
        error: Option<String>,
        delay: Duration,
    ) {
        let (store, id, attempts) = (self.ctx.store.clone(), job.id, recorded_attempts);
        let (node, pool, lease) = (self.ctx.node_id.clone(), self.myself.clone(), job.lease);
        self.writes.spawn(async move {
            let fence = Fence::new(&node, lease);
            match store.requeue(&id, fence, attempts, error).await {
                Ok(Transition::NotHolder(holder)) => {
                    let _ = pool.cast(PoolMessage::Lost { id, lease, holder });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(task_id = %id, error = %e, "recording retry failed"),
            }
        });
        let id = job.id;
        self.delayed.insert(job.id, job);
        self.myself
            .send_after(delay, move || PoolMessage::RetryDue(id));
    }

    /// Issues the terminal write; long-pollers are woken once it is durable.
    pub(super) fn finish(
        &mut self,
        job: &Job,
        status: TaskStatus,
        result: Option<String>,
        error: Option<String>,
        started_at_ms: Option<u64>,
    ) {
        self.finish_then(job, status, result, error, started_at_ms, None);
    }

    /// [`finish`](Self::finish), telling `done` what the store answered (a store error is
    /// retried until it answers).
    pub(super) fn finish_then(
        &mut self,
        job: &Job,
        status: TaskStatus,
        result: Option<String>,
        error: Option<String>,
        started_at_ms: Option<u64>,
        done: Option<oneshot::Sender<Transition>>,
    ) {
        self.finished.record(&job.id, job.lease);
        let finish = Finish {
            status,
            result,
            error,
            node: started_at_ms.map(|_| self.ctx.node_id.to_string()),
            lease: job.lease,
            attempts: job.attempts,
            started_at_ms,
            finished_at_ms: now_ms(),
        };
        let (ctx, id, kind) = (self.ctx.clone(), job.id, job.spec.kind.clone());
        let lease = job.lease;
        self.writes.spawn(async move {
            let mut delay = Duration::from_millis(50);
            let answer = loop {
                let answer = ctx.store.finish(&id, finish.clone()).await;
                match &answer {
                    Ok(Transition::Applied) => {
                        ctx.metrics
                            .completed
                            .with_label_values(&[kind.as_str(), status.as_str()])
                            .inc();
                    }
                    Ok(Transition::Rejected(_)) => ctx.metrics.duplicate_completions.inc(),
                    Ok(Transition::NotHolder(holder)) => {
                        // Claimed or reassigned since this attempt was given the task
                        // (another node holds it, or this one under a newer lease token):
                        // the holder runs it; this result is a duplicate and is dropped.
                        ctx.metrics.duplicate_completions.inc();
                        tracing::info!(task_id = %id, ?holder, lease, "another node holds the task; result dropped");
                    }
                    Ok(Transition::NotFound) => {}
                    Err(e) => {
                        ctx.metrics.store_errors.with_label_values(&["finish"]).inc();
                        tracing::warn!(task_id = %id, error = %e, "terminal write failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
                break answer;
            };
            ctx.notifier.notify(&id);
            if let (Some(done), Ok(answer)) = (done, answer) {
                let _ = done.send(answer);
            }
        });
    }

    pub(super) fn retry_due(&mut self, id: &TaskId) {
        if let Some(job) = self.delayed.remove(id) {
            self.enqueue(job);
        }
    }
}
