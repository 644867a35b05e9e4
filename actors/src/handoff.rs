//! What the Dispatcher, the WorkerPool and the actors that feed them hand each other:
//! tasks ([`Job`]), what a cancel found ([`CancelOutcome`]) and the pool's load
//! ([`PoolLoad`], and [`LocalLoad`], its live figures shared without a message).
//!
//! Neither the `dispatcher` nor the `worker_pool` module owns these types, so the pool
//! never needs the dispatcher's messages: it publishes its load in [`LocalLoad`] after
//! every message it handles, and the dispatcher reads it when it admits a task.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use taskmesh_kernels::task::{TaskId, TaskSpec};

use crate::task::TaskRecord;

/// A task as the pool holds it.
#[derive(Clone, Debug)]
pub struct Job {
    /// The task.
    pub id: TaskId,
    /// What to run: the spec the ingress built (or the store or a peer sent), shared
    /// with the task's record and every attempt, never copied.
    pub spec: Arc<TaskSpec>,
    /// Attempts already started (0 for a fresh task).
    pub attempts: u32,
    /// When it entered the pool's queue.
    pub enqueued_at: Instant,
    /// Read back from the store (recovered or claimed) rather than freshly submitted:
    /// an attempt of it may have died with a node.
    pub recovered: bool,
    /// The task's lease token when it was given to this node (0 for a fresh task; the
    /// record's token for one read back from the store), or one more after this node's
    /// requeue of it for a retry (a requeue bumps the token). Every store write of its
    /// attempts carries it, so a copy the task has since been moved away from (claimed
    /// or reassigned, even back to this node) or retried cannot record anything.
    pub lease: u64,
}

impl Job {
    /// A fresh task.
    pub fn new(id: TaskId, spec: impl Into<Arc<TaskSpec>>) -> Self {
        Self {
            id,
            spec: spec.into(),
            attempts: 0,
            enqueued_at: Instant::now(),
            recovered: false,
            lease: 0,
        }
    }

    /// The tracing span of every log line about this task: its id, kind, the attempt
    /// about to run, and the submission's request id.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "task",
            task_id = %self.id,
            kind = %self.spec.kind,
            attempt = self.attempts + 1,
            request_id = self.spec.request_id.as_deref().unwrap_or("-"),
        )
    }

    /// A task read back from the store (recovered or claimed), under the record's
    /// current lease token.
    pub fn from_record(record: TaskRecord) -> Self {
        Self {
            id: record.id,
            spec: record.spec,
            attempts: record.attempts,
            enqueued_at: Instant::now(),
            recovered: true,
            lease: record.lease,
        }
    }
}

/// What a cancel request found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The task was waiting here and will never run; the caller records it cancelled.
    Removed,
    /// The task is running here; its cancel flag is raised and its worker will record it.
    Signalled,
    /// The task is not held by this pool.
    NotHere,
}

/// The list behind `lock`, shared (empty if a writer panicked holding it).
fn shared(lock: &RwLock<Arc<[String]>>) -> Arc<[String]> {
    lock.read()
        .map(|l| Arc::clone(&l))
        .unwrap_or_else(|_| Arc::from([]))
}

fn saturating_sub(counter: &AtomicUsize, n: usize) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        Some(c.saturating_sub(n))
    });
}

/// A pool's figures: its queue, workers and counters ([`PoolLoad`] adds its node and
/// labels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadFigures {
    /// Identifies this incarnation of the pool (changes when it restarts).
    pub incarnation: u64,
    /// Tasks waiting, per priority (high, normal, low).
    pub queued: [usize; 3],
    /// Tasks waiting for a retry's backoff to elapse.
    pub delayed: usize,
    /// Workers running a task.
    pub busy: usize,
    /// Live workers.
    pub workers: usize,
    /// Queue capacity.
    pub capacity: usize,
    /// Tasks received since this incarnation started.
    pub received_total: u64,
    /// Whether the pool is draining (takes no new work).
    pub draining: bool,
}

/// The pool's load, as the pool answers `GetLoad` and the dispatcher reports it to peers:
/// its figures, with the node it runs on and its labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolLoad {
    /// The node the pool runs on.
    pub node: String,
    /// Resource labels (with the classes of its HTTP workers).
    pub labels: Vec<String>,
    /// Its queue, workers and counters.
    pub figures: LoadFigures,
    /// Its external kinds that no HTTP worker serves now: it takes their tasks only when
    /// no node has a worker for them.
    pub unserved: Vec<String>,
}

impl PoolLoad {
    /// A pool's load from its figures (every external kind served).
    pub fn new(node: String, labels: Vec<String>, figures: LoadFigures) -> Self {
        Self {
            node,
            labels,
            figures,
            unserved: Vec::new(),
        }
    }
}

/// The local pool's live load, shared by the pool (which writes it after every message
/// it handles), the dispatcher (which reads it at every admission and reports it to
/// peers) and the code that hands tasks to the pool.
///
/// It also counts the tasks on their way to the pool: `admitting` (admitted for it, not
/// stored yet) and `incoming` (sent to its mailbox, not taken yet). Both count against
/// its queue capacity, so concurrent admissions never overcommit it, and peers hear of
/// them in load reports, so every node counts them as this node does. Incoming tasks
/// also count in the pool's wait, like queued ones. The figures are read one by one,
/// not as a whole: a reader may see a task in two of admitting, incoming and queued
/// (each move adds before it removes), never in none.
#[derive(Debug, Default)]
pub struct LocalLoad {
    live: AtomicBool,
    incarnation: AtomicU64,
    queued: [AtomicUsize; 3],
    delayed: AtomicUsize,
    busy: AtomicUsize,
    workers: AtomicUsize,
    capacity: AtomicUsize,
    received_total: AtomicU64,
    draining: AtomicBool,
    admitting: AtomicUsize,
    incoming: AtomicUsize,
    labels: RwLock<Arc<[String]>>,
    kinds: RwLock<Arc<[String]>>,
    unserved: RwLock<Arc<[String]>>,
}

impl LocalLoad {
    /// A pool (re)started with these labels, running these kinds: what was sent to the
    /// old pool is not on its way any more (it lives in the store, and the new pool's
    /// rescan takes it back); admissions in flight still are.
    pub fn started(&self, labels: &[String], kinds: &[&str]) {
        if let Ok(mut l) = self.labels.write() {
            *l = labels.into();
        }
        if let Ok(mut k) = self.kinds.write() {
            *k = kinds.iter().map(|k| (*k).to_owned()).collect();
        }
        self.incoming.store(0, Ordering::Relaxed);
    }

    /// The pool's HTTP workers changed: its labels are now `labels` (the node's and its
    /// workers' classes), and no worker serves the external kinds `unserved`.
    pub fn external_changed(&self, labels: &[String], unserved: &[String]) {
        if let Ok(mut l) = self.labels.write() {
            *l = labels.into();
        }
        if let Ok(mut u) = self.unserved.write() {
            *u = unserved.into();
        }
    }

    /// The external kinds no HTTP worker of the pool serves now.
    pub fn unserved(&self) -> Arc<[String]> {
        shared(&self.unserved)
    }

    /// The pool's figures now.
    pub fn publish(&self, f: &LoadFigures) {
        let r = Ordering::Relaxed;
        self.incarnation.store(f.incarnation, r);
        for (slot, q) in self.queued.iter().zip(f.queued) {
            slot.store(q, r);
        }
        self.delayed.store(f.delayed, r);
        self.busy.store(f.busy, r);
        self.workers.store(f.workers, r);
        self.capacity.store(f.capacity, r);
        self.received_total.store(f.received_total, r);
        self.draining.store(f.draining, r);
        self.live.store(true, Ordering::Release);
    }

    /// The pool's last figures; `None` before a pool published any.
    pub fn figures(&self) -> Option<LoadFigures> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let r = Ordering::Relaxed;
        Some(LoadFigures {
            incarnation: self.incarnation.load(r),
            queued: [0, 1, 2].map(|i| self.queued[i].load(r)),
            delayed: self.delayed.load(r),
            busy: self.busy.load(r),
            workers: self.workers.load(r),
            capacity: self.capacity.load(r),
            received_total: self.received_total.load(r),
            draining: self.draining.load(r),
        })
    }

    /// The pool's labels.
    pub fn labels(&self) -> Arc<[String]> {
        shared(&self.labels)
    }

    /// The kinds the pool runs (shared, not copied).
    pub fn kinds(&self) -> Arc<[String]> {
        shared(&self.kinds)
    }

    /// Tasks sent to the pool and not taken yet.
    pub fn incoming(&self) -> usize {
        self.incoming.load(Ordering::Relaxed)
    }

    /// Tasks admitted for the pool and not stored (or released) yet.
    pub fn admitting(&self) -> usize {
        self.admitting.load(Ordering::Relaxed)
    }

    /// `n` tasks are admitted for the pool if its admissions are still `seen` (what the
    /// caller decided on); `false` when another admission came first.
    pub fn admit_if(&self, seen: usize, n: usize) -> bool {
        self.admitting
            .compare_exchange(seen, seen + n, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// `n` tasks were admitted for the pool.
    pub fn admit(&self, n: usize) {
        self.admitting.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` admitted tasks will not come (not stored, or duplicates).
    pub fn release(&self, n: usize) {
        saturating_sub(&self.admitting, n);
    }

    /// `n` tasks are sent to the pool's mailbox; `admitted` of them were admitted.
    pub fn send(&self, n: usize, admitted: usize) {
        self.incoming.fetch_add(n, Ordering::Relaxed);
        saturating_sub(&self.admitting, admitted);
    }

    /// The pool took `n` tasks sent to it, or they never reached it.
    pub fn taken(&self, n: usize) {
        saturating_sub(&self.incoming, n);
    }

    /// The pool's last load, with its node and labels; `None` before it published.
    pub fn load(&self, node: &str) -> Option<PoolLoad> {
        let f = self.figures()?;
        let mut load = PoolLoad::new(node.to_owned(), self.labels().to_vec(), f);
        load.unserved = self.unserved().to_vec();
        Some(load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_appear_once_published_and_incoming_never_goes_below_zero() {
        let board = LocalLoad::default();
        assert_eq!(board.figures(), None);
        board.started(&["heavy".to_owned()], &["noop"]);
        let f = LoadFigures {
            incarnation: 7,
            queued: [1, 2, 3],
            busy: 2,
            workers: 4,
            capacity: 10,
            ..LoadFigures::default()
        };
        board.publish(&f);
        assert_eq!(board.figures(), Some(f));
        assert_eq!(&*board.labels(), ["heavy".to_owned()]);
        assert_eq!(&*board.kinds(), ["noop".to_owned()]);
        board.admit(3);
        board.release(1);
        board.send(2, 2);
        assert_eq!((board.admitting(), board.incoming()), (0, 2));
        board.taken(5);
        assert_eq!(board.incoming(), 0);
        board.send(4, 0);
        board.admit(1);
        board.started(&[], &[]);
        assert_eq!(
            (board.admitting(), board.incoming()),
            (1, 0),
            "a restarted pool has nothing sent on its way; admissions go on"
        );
        let load = board.load("n1").expect("published");
        assert_eq!((load.node.as_str(), load.figures.busy), ("n1", 2));
    }
}
