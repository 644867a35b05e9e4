//! What becomes of a leased attempt: a worker's report, or the end of its lease (the
//! worker went silent, or the task's timeout passed), or its return to the queue.

use std::time::{Duration, Instant};

use taskmesh_kernels::task::TaskStatus;
use tokio::sync::oneshot;

use super::book::{Ended, Lease};
use super::{Report, Reported, UnknownWorker, WorkerOutcome};
use crate::worker_pool::retry::may_retry;
use crate::worker_pool::state::PoolState;

impl PoolState {
    /// Settles one reported attempt: a terminal write, a retry, or nothing for a token
    /// that is not a live lease (of `worker`, when given).
    pub(super) fn report(&mut self, worker: Option<&str>, report: Report) -> Reported {
        let live = self
            .external
            .book
            .lease(&report.token)
            .is_some_and(|l| l.job.id == report.id && worker.is_none_or(|w| &*l.worker == w));
        let Some(lease) = live
            .then(|| self.external.book.release(&report.token))
            .flatten()
        else {
            return Reported::Unknown;
        };
        let kind = lease.job.spec.kind.clone();
        self.ctx
            .metrics
            .task_duration
            .with_label_values(&[kind.as_str()])
            .observe(lease.started.elapsed().as_secs_f64());
        let started = Some(lease.started_at_ms);
        let mut job = lease.job;
        job.attempts += 1;
        let (tx, rx) = oneshot::channel();
        if lease.cancel_requested {
            let msg = "cancelled by client".to_owned();
            self.finish_then(
                &job,
                TaskStatus::Cancelled,
                None,
                Some(msg),
                started,
                Some(tx),
            );
            return Reported::Writing(TaskStatus::Cancelled, rx);
        }
        let status = match report.outcome {
            WorkerOutcome::Succeeded(result) => {
                self.finish_then(
                    &job,
                    TaskStatus::Succeeded,
                    Some(result),
                    None,
                    started,
                    Some(tx),
                );
                TaskStatus::Succeeded
            }
            WorkerOutcome::Failed { message, retryable } => {
                if retryable && may_retry(job.attempts, job.spec.max_retries) {
                    self.retry_or_fail(job, message, started);
                    return Reported::Retrying;
                }
                let _span = job.span().entered();
                tracing::warn!(attempts = job.attempts, error = %message, retryable, "task failed");
                self.finish_then(
                    &job,
                    TaskStatus::Failed,
                    None,
                    Some(message),
                    started,
                    Some(tx),
                );
                TaskStatus::Failed
            }
        };
        Reported::Writing(status, rx)
    }

    /// Ends what is over: leases of silent workers (`lease_expired`, an attempt used) and
    /// leases past their task's timeout; silent workers are forgotten.
    pub(in crate::worker_pool) fn expire_leases(&mut self) {
        let expired = self.external.book.expire(Instant::now());
        let gone = !expired.workers.is_empty();
        for (worker, parked) in expired.workers {
            tracing::warn!(%worker, "worker silent for its lease period; forgotten");
            if let Some(parked) = parked {
                let _ = parked.reply.send(Err(UnknownWorker));
            }
        }
        for (lease, why) in expired.leases {
            self.lease_ended(lease, why);
        }
        if gone {
            self.workers_changed();
        }
    }

    fn lease_ended(&mut self, lease: Lease, why: Ended) {
        let kind = lease.job.spec.kind.clone();
        let started = Some(lease.started_at_ms);
        let mut job = lease.job;
        job.attempts += 1;
        let error = match why {
            Ended::LeaseExpired => {
                self.ctx
                    .metrics
                    .external
                    .lease_expiries
                    .with_label_values(&[kind.as_str()])
                    .inc();
                let ms = self.external.book.lease_period().as_millis();
                format!("lease_expired: the worker sent nothing for {ms} ms")
            }
            Ended::TimedOut(limit) => format!("timed out after {} ms", limit.as_millis()),
        };
        if lease.cancel_requested {
            let msg = "cancelled by client".to_owned();
            self.finish_then(&job, TaskStatus::Cancelled, None, Some(msg), started, None);
            return;
        }
        self.retry_or_fail(job, error, started);
    }

    /// Puts a leased task back in the queue without using an attempt (its worker left, or
    /// never got it). The store's requeue moves the task's token, so the old lease's
    /// reports are refused there too.
    pub(super) fn give_back(&mut self, lease: Lease) {
        let recorded = lease.job.attempts + 1;
        self.requeue_after(lease.job, recorded, None, Duration::ZERO);
    }
}
