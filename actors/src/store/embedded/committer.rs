//! The committer: one OS thread that owns every write transaction (group commit).
//!
//! Writers send an [`Op`] carrying a oneshot reply. The thread blocks for the first op,
//! then drains whatever else is already queued (up to [`MAX_BATCH`]), applies the whole
//! batch in one write transaction, commits it durably (fsync), and only then answers
//! every op. The more callers wait during a commit, the more the next commit carries.
//!
//! Failure answers: if redb fails anywhere in the batch, or the commit fails, nothing of
//! the batch is visible and every op gets [`StoreError::Backend`]. A per-op answer such as
//! `Rejected`, `NotFound` or `Corrupt` does not abort the batch. If the thread exits (on
//! [`Command::Stop`], or by panicking) its queue is dropped with the reply senders in it,
//! so every waiting caller sees [`StoreError::Closed`] rather than hanging.
//!
//! Backpressure: at most [`MAX_QUEUED`] writes wait for or ride in a commit ([`Queue`]);
//! a writer past that waits (asynchronously) for room, so a flood of submissions cannot
//! grow the queue without bound while the disk is slow. Room comes back when the
//! committer answers an op, not when its caller stops waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};

use redb::Database;
use taskmesh_kernels::task::TaskId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::CommitStats;
use super::write::Tables;
use crate::store::rules::Change;
use crate::store::{Created, StoreError, Transition};
use crate::task::{Millis, NewTask, TaskRecord};

/// The most ops one transaction carries, so one commit's latency stays bounded.
pub(super) const MAX_BATCH: usize = 4096;

/// The most writes queued for or riding in a commit; more wait for room.
pub(super) const MAX_QUEUED: usize = 4 * MAX_BATCH;

/// The sending side of the committer's queue, bounded to [`MAX_QUEUED`] ops.
pub(super) struct Queue {
    commands: mpsc::Sender<Command>,
    room: Arc<Semaphore>,
}

impl Queue {
    /// A queue of at most `capacity` ops, and the committer's end of it.
    pub(super) fn bounded(capacity: usize) -> (Self, Receiver<Command>) {
        let (commands, queue) = mpsc::channel();
        let room = Arc::new(Semaphore::new(capacity));
        (Self { commands, room }, queue)
    }

    /// Queues `op`, waiting while the queue is full. `Err` when the committer is gone.
    pub(super) async fn send(&self, op: Op) -> Result<(), StoreError> {
        let permit = Arc::clone(&self.room)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        self.commands
            .send(Command::Op(op, permit))
            .map_err(|_| StoreError::Closed)
    }

    /// Asks the committer to stop (never waits for room).
    pub(super) fn stop(&self) {
        // Fails only if the committer is already gone, which is what we want anyway.
        let _ = self.commands.send(Command::Stop);
        self.room.close();
    }

    /// Ops queued or in a commit now.
    #[cfg(test)]
    pub(super) fn queued(&self, capacity: usize) -> usize {
        capacity - self.room.available_permits()
    }
}

/// Where an op's answer goes.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the store sends to the committer thread.
pub(super) enum Command {
    /// Apply a write; the permit is its room in the queue, given back once answered.
    Op(Op, OwnedSemaphorePermit),
    /// Commit what is already taken, then exit; later writes answer `Closed`.
    Stop,
}

/// One write, with the channel its answer goes back on.
pub(super) enum Op {
    /// `TaskStore::create`.
    Create(Vec<NewTask>, Reply<Vec<Created>>),
    /// `start`, `requeue` or `finish`.
    Change(TaskId, Change, Reply<Transition>),
    /// One bounded batch of `purge_finished`: (finished before, at most this many).
    Purge(Millis, usize, Reply<usize>),
    /// `claim` (no ids: every task `from` holds) or `reassign` (these ids).
    Transfer(Transfer, Reply<Vec<TaskRecord>>),
}

/// The arguments of a `claim` or `reassign`.
pub(super) struct Transfer {
    /// The tasks to consider; `None` for every unfinished task (a claim).
    pub(super) ids: Option<Vec<TaskId>>,
    /// The holder they must still have.
    pub(super) from: String,
    /// The new holder.
    pub(super) to: String,
    /// The `error` a running task gets when it goes back to the queue.
    pub(super) error: String,
}

/// An applied op whose answer waits for the commit.
enum Done {
    Create(Result<Vec<Created>, StoreError>, Reply<Vec<Created>>),
    Change(Result<Transition, StoreError>, Reply<Transition>),
    Purge(Result<usize, StoreError>, Reply<usize>),
    Transfer(Result<Vec<TaskRecord>, StoreError>, Reply<Vec<TaskRecord>>),
}

impl Op {
    fn apply(self, tables: &mut Tables<'_>) -> Done {
        match self {
            Op::Create(tasks, reply) => Done::Create(tables.create(tasks), reply),
            Op::Change(id, change, reply) => Done::Change(tables.change(&id, change), reply),
            Op::Purge(before, max, reply) => Done::Purge(tables.purge(before, max), reply),
            Op::Transfer(transfer, reply) => Done::Transfer(tables.transfer(transfer), reply),
        }
    }

    /// The op, not applied because the batch already failed; answered by [`Done::fail`].
    fn skip(self) -> Done {
        match self {
            Op::Create(_, reply) => Done::Create(failed("batch aborted"), reply),
            Op::Change(_, _, reply) => Done::Change(failed("batch aborted"), reply),
            Op::Purge(_, _, reply) => Done::Purge(failed("batch aborted"), reply),
            Op::Transfer(_, reply) => Done::Transfer(failed("batch aborted"), reply),
        }
    }
}

impl Done {
    /// The redb failure that must abort the batch, if this op hit one.
    fn fatal(&self) -> Option<String> {
        let error = match self {
            Done::Create(Err(e), _)
            | Done::Change(Err(e), _)
            | Done::Purge(Err(e), _)
            | Done::Transfer(Err(e), _) => e,
            _ => return None,
        };
        matches!(error, StoreError::Backend(_)).then(|| error.to_string())
    }

    /// Sends the answer. A caller that stopped waiting is not an error.
    fn send(self) {
        match self {
            Done::Create(answer, reply) => drop(reply.send(answer)),
            Done::Change(answer, reply) => drop(reply.send(answer)),
            Done::Purge(answer, reply) => drop(reply.send(answer)),
            Done::Transfer(answer, reply) => drop(reply.send(answer)),
        }
    }

    /// Answers with the batch's failure instead.
    fn fail(self, reason: &str) {
        match self {
            Done::Create(_, reply) => drop(reply.send(failed(reason))),
            Done::Change(_, reply) => drop(reply.send(failed(reason))),
            Done::Purge(_, reply) => drop(reply.send(failed(reason))),
            Done::Transfer(_, reply) => drop(reply.send(failed(reason))),
        }
    }
}

fn failed<T>(reason: &str) -> Result<T, StoreError> {
    Err(StoreError::Backend(reason.to_owned()))
}

/// The committer's running totals.
#[derive(Debug, Default)]
pub(super) struct Counters {
    commits: AtomicU64,
    ops: AtomicU64,
    failed_batches: AtomicU64,
    largest_batch: AtomicU64,
}

impl Counters {
    /// A snapshot of the totals.
    pub(super) fn snapshot(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
        }
    }

    fn committed(&self, ops: usize) {
        let ops = ops as u64;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops.fetch_add(ops, Ordering::Relaxed);
        self.largest_batch.fetch_max(ops, Ordering::Relaxed);
    }
}

/// The committer thread's body: batches until [`Command::Stop`] or until every sender
/// is gone.
pub(super) fn run(db: &Database, commands: Receiver<Command>, counters: &Counters) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut room = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    while !stopping {
        match commands.recv() {
            Ok(Command::Op(op, permit)) => {
                batch.push(op);
                room.push(permit);
            }
            Ok(Command::Stop) | Err(_) => break,
        }
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(Command::Op(op, permit)) => {
                    batch.push(op);
                    room.push(permit);
                }
                Ok(Command::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        commit(db, &mut batch, counters);
        room.clear();
    }
    // Dropping `commands` here drops any op queued after Stop: its caller sees Closed.
}

/// Applies `batch` in one write transaction, commits it, and answers every op.
fn commit(db: &Database, batch: &mut Vec<Op>, counters: &Counters) {
    let count = batch.len();
    let mut done = Vec::with_capacity(count);
    let outcome = apply_and_commit(db, batch.drain(..), &mut done);
    match outcome {
        Ok(()) => {
            counters.committed(count);
            done.into_iter().for_each(Done::send);
        }
        Err(reason) => {
            counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            tracing::error!(ops = count, %reason, "task store commit failed");
            done.into_iter().for_each(|d| d.fail(&reason));
        }
    }
}

/// Fills `done` with one entry per op, whatever happens, and commits if nothing failed.
fn apply_and_commit(
    db: &Database,
    ops: impl Iterator<Item = Op>,
    done: &mut Vec<Done>,
) -> Result<(), String> {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            done.extend(ops.map(Op::skip));
            return Err(e.to_string());
        }
    };
    let mut failure = None;
    match Tables::open(&txn) {
        Ok(mut tables) => {
            for op in ops {
                if failure.is_some() {
                    done.push(op.skip());
                    continue;
                }
                let applied = op.apply(&mut tables);
                failure = applied.fatal();
                done.push(applied);
            }
        }
        Err(e) => {
            done.extend(ops.map(Op::skip));
            failure = Some(e.to_string());
        }
    }
    match failure {
        None => txn.commit().map_err(|e| e.to_string()),
        Some(reason) => {
            if let Err(e) = txn.abort() {
                tracing::error!(error = %e, "aborting a failed task store batch failed");
            }
            Err(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn purge() -> Op {
        Op::Purge(0, 1, oneshot::channel().0)
    }

    #[tokio::test]
    async fn a_full_queue_makes_writers_wait_until_an_op_is_answered() {
        let (queue, commands) = Queue::bounded(2);
        queue.send(purge()).await.expect("room");
        queue.send(purge()).await.expect("room");
        assert_eq!(queue.queued(2), 2);
        let third = queue.send(purge());
        tokio::pin!(third);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut third)
                .await
                .is_err(),
            "a third op must wait while two are queued"
        );
        // The committer takes one op and answers it: its room comes back.
        let taken = commands.recv().expect("queued op");
        drop(taken);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("room came back")
            .expect("sent");
        assert_eq!(queue.queued(2), 2);
        queue.stop();
        assert!(matches!(queue.send(purge()).await, Err(StoreError::Closed)));
    }
}
