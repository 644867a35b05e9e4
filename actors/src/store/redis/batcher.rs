//! The batcher: one tokio task that sends every single-task operation of the store to
//! Redis, many at a time, as one pipeline.
//!
//! A store method builds its command (an `EVALSHA` of a script, or an `HMGET`), queues it
//! with a oneshot reply, and awaits the answer. The batcher waits for the first queued
//! command, takes whatever else is already queued (up to the batch limit), sends them all
//! as ONE pipeline, and answers each caller from its own slot of the reply. While a
//! pipeline is on the wire the next one fills up, so N concurrent callers cost far fewer
//! than N round trips ([`PipelineStats`] shows the ratio), the way group commit does for
//! the embedded store.
//!
//! Failure answers: if the whole round trip fails (Redis unreachable, or no reply within
//! the timeout) every caller of the pipeline gets [`StoreError::Backend`]; a timed-out
//! write may still have been applied. A refused connection gives every caller
//! [`StoreError::Unreachable`]: the pipeline was never sent. A command refused on its own (`NOSCRIPT` aside)
//! fails only its caller. On `NOSCRIPT` the batcher loads the scripts and resends the
//! refused commands once: a refused script never ran, so resending cannot apply it twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Cmd, ErrorKind, RedisResult, ServerErrorKind, Value};
use tokio::sync::{mpsc, oneshot};

use super::PipelineStats;
use super::scripts::Scripts;
use crate::store::StoreError;

/// One queued command and where its answer goes.
pub(super) struct Op {
    /// The command, sent as one slot of a pipeline.
    pub(super) cmd: Cmd,
    /// The caller waiting for that slot's reply.
    pub(super) reply: oneshot::Sender<Result<Value, StoreError>>,
}

/// The batcher's running totals.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pipelines: AtomicU64,
    ops: AtomicU64,
    failed_pipelines: AtomicU64,
    largest_pipeline: AtomicU64,
    script_loads: AtomicU64,
}

impl Counters {
    /// A snapshot of the totals.
    pub(super) fn snapshot(&self) -> PipelineStats {
        PipelineStats {
            pipelines: self.pipelines.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
            failed_pipelines: self.failed_pipelines.load(Ordering::Relaxed),
            largest_pipeline: self.largest_pipeline.load(Ordering::Relaxed),
            script_loads: self.script_loads.load(Ordering::Relaxed),
        }
    }

    fn sent(&self, ops: usize) {
        let ops = ops as u64;
        self.pipelines.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops, Ordering::Relaxed);
        self.largest_pipeline.fetch_max(ops, Ordering::Relaxed);
    }
}

/// The batcher task's state.
pub(super) struct Batcher {
    pub(super) conn: ConnectionManager,
    pub(super) scripts: Arc<Scripts>,
    pub(super) counters: Arc<Counters>,
    pub(super) timeout: Duration,
    pub(super) max_batch: usize,
}

impl Batcher {
    /// Sends pipelines until every sender of `ops` is gone (the store was dropped).
    pub(super) async fn run(mut self, mut ops: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while ops.recv_many(&mut batch, self.max_batch).await > 0 {
            let taken = std::mem::replace(&mut batch, Vec::with_capacity(self.max_batch));
            self.send(taken).await;
        }
    }

    /// Sends one batch and answers every op in it.
    async fn send(&mut self, batch: Vec<Op>) {
        let replies = match self.round_trip(&batch).await {
            Ok(replies) => replies,
            Err(reason) => return fail(batch, &reason),
        };
        let mut refused = Vec::new();
        for (op, reply) in batch.into_iter().zip(replies) {
            match reply {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    refused.push(op);
                }
                reply => answer(op, reply),
            }
        }
        if refused.is_empty() {
            return;
        }
        tracing::info!(
            ops = refused.len(),
            "redis lost the task store scripts; reloading"
        );
        self.counters.script_loads.fetch_add(1, Ordering::Relaxed);
        let loaded = self
            .with_timeout(self.scripts.load().exec_async(&mut self.conn.clone()))
            .await;
        if let Err(reason) = loaded {
            return fail(refused, &reason);
        }
        match self.round_trip(&refused).await {
            Ok(replies) => refused
                .into_iter()
                .zip(replies)
                .for_each(|(op, r)| answer(op, r)),
            Err(reason) => fail(refused, &reason),
        }
    }

    /// One pipeline of every op's command; one reply per op, or why there is none.
    async fn round_trip(&mut self, batch: &[Op]) -> Result<Vec<RedisResult<Value>>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for op in batch {
            pipe.add_command(op.cmd.clone());
        }
        self.counters.sent(batch.len());
        let mut conn = self.conn.clone();
        let replies: Vec<RedisResult<Value>> =
            self.with_timeout(pipe.query_async(&mut conn)).await?;
        if replies.len() != batch.len() {
            return Err(StoreError::Backend(format!(
                "redis answered {} of {} pipelined commands",
                replies.len(),
                batch.len()
            )));
        }
        Ok(replies)
    }

    /// Awaits `request` for at most the timeout; failures are counted and described.
    async fn with_timeout<T>(
        &self,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let outcome = match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => super::request_failed(&e),
            Err(_) => {
                StoreError::Backend(format!("redis did not answer within {:?}", self.timeout))
            }
        };
        self.counters
            .failed_pipelines
            .fetch_add(1, Ordering::Relaxed);
        Err(outcome)
    }
}

/// Answers one op from its slot. A caller that stopped waiting is not an error.
fn answer(op: Op, reply: RedisResult<Value>) {
    let answer = reply.map_err(|e| StoreError::Backend(format!("redis refused a command: {e}")));
    let _ = op.reply.send(answer);
}

/// Answers every op with the batch's failure.
fn fail(batch: Vec<Op>, reason: &StoreError) {
    tracing::warn!(ops = batch.len(), %reason, "task store pipeline failed");
    for op in batch {
        let _ = op.reply.send(Err(reason.clone()));
    }
}
