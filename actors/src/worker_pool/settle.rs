//! What becomes of a task after an attempt: its terminal write, or a retry after a
//! backoff (`retry::may_retry` decides which), unless the task moved away meanwhile.
//!
//! A retry first requeues the task in the store under the failed attempt's lease token,
//! which bumps the token by one; the retry runs under the new token once that write is
//! applied and the backoff elapsed, so every late write of the failed attempt (a start,
//! a progress report, a finish) is refused by the store.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use taskmesh_kernels::task::{TaskId, TaskStatus};

use super::PoolMessage;
use super::executor::AttemptOutcome;
use super::retry::{RequeueNext, after_requeue, may_retry};
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
    /// failed attempt's `error`), holds it meanwhile under the token the requeue gives it
    /// (one more), and queues it again once the requeue is applied and `delay` elapsed.
    pub(super) fn requeue_after(
        &mut self,
        job: Job,
        recorded_attempts: u32,
        error: Option<String>,
        delay: Duration,
    ) {
        let (ctx, pool, id, lease) = (self.ctx.clone(), self.myself.clone(), job.id, job.lease);
        let attempts = recorded_attempts;
        self.writes.spawn(async move {
            let started = Instant::now();
            let fence = Fence::new(&ctx.node_id, lease);
            let mut pause = Duration::from_millis(50);
            let mut maybe_applied = false;
            loop {
                let answer = ctx.store.requeue(&id, fence, attempts, error.clone()).await;
                if let Err(e) = &answer {
                    maybe_applied |= !e.nothing_written();
                    ctx.metrics
                        .store_errors
                        .with_label_values(&["requeue"])
                        .inc();
                    tracing::warn!(task_id = %id, error = %e, "recording retry failed; retrying");
                }
                match after_requeue(answer, &ctx.node_id, maybe_applied) {
                    RequeueNext::Due => {
                        // Not slept here: `writes` tracks store writes only, and a drain
                        // must not wait for a backoff.
                        let rest = delay.saturating_sub(started.elapsed());
                        pool.send_after(rest, move || PoolMessage::RetryDue(id));
                        return;
                    }
                    RequeueNext::Forget(holder) => {
                        // `Lost` forgets the copies held under its token or an older one.
                        // The delayed copy is held under `lease + 1`, so `Lost` under the
                        // refused write's own token would leave it to run a retry the
                        // store refuses; under `lease + 1` it goes too. A copy under a
                        // newer token (the task came back to this node) stays.
                        let lease = lease + 1;
                        let _ = pool.cast(PoolMessage::Lost { id, lease, holder });
                        return;
                    }
                    RequeueNext::TryAgain => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        // The retry runs under the token the requeue gives the task. It becomes due only
        // once that requeue is applied (above), so its writes never meet the old token.
        self.delayed.insert(
            id,
            Job {
                lease: job.lease + 1,
                ..job
            },
        );
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
