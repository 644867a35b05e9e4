//! Who holds what among the HTTP workers of one pool: the workers registered here, the
//! leases they hold, and their parked polls. Pure: every decision takes `now`, and a
//! parked poll's reply port is a type parameter, so the rules are tested without actors.
//!
//! - A worker is alive while it calls (any call: poll, heartbeat, results) at least once
//!   per lease period. A worker silent for the lease period loses every lease it holds,
//!   and its registration unless a poll of its is parked here ([`Book::expire`]): a
//!   frozen process keeps its parked connection open, so only calls keep leases.
//! - A lease is one attempt of one task, named by its [`Token`]. It ends when its result
//!   is reported ([`Book::release`]), when its worker expires or leaves, when the task's
//!   `timeout_ms` passes (heartbeats never extend it), or when the task moves away.
//! - A worker never holds more leases than its slots ([`Book::free_slots`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use taskmesh_kernels::task::TaskId;

use crate::handoff::Job;

/// A registered worker's id, as the API shows it.
pub type WorkerId = Arc<str>;

/// What a worker registers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSpec {
    /// A name for humans (logs, metrics are by kind).
    pub name: String,
    /// The external kinds it runs.
    pub kinds: Vec<String>,
    /// How many tasks it runs at once.
    pub slots: usize,
    /// Its resource class: it takes tasks of that class and tasks of none.
    pub class: Option<String>,
}

/// One attempt's lease token: the task, the store's lease token of the attempt, the
/// attempt number and a random part, as `{task}.{lease}.{attempt}.{nonce}`. A report
/// must quote it whole; any earlier attempt's token differs at least in its lease or its
/// attempt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// The token of attempt `attempt` of `id` under store lease `lease`.
    pub fn new(id: TaskId, lease: u64, attempt: u32, nonce: u64) -> Self {
        Self(format!("{id}.{lease}.{attempt}.{nonce:016x}"))
    }

    /// A token as a client quoted it (unchecked: an unknown token is simply not found).
    pub fn quoted(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A poll waiting for tasks: how many it takes, and where the answer goes.
#[derive(Debug)]
pub struct Parked<R> {
    /// At most this many tasks (and at most the worker's free slots when they are leased).
    pub max: usize,
    /// Tells this poll from a later one of the same worker.
    pub seq: u64,
    /// When it was parked.
    pub since: Instant,
    /// Where its answer goes.
    pub reply: R,
}

/// A registered worker.
#[derive(Debug)]
pub struct Registered<R> {
    /// What it registered with.
    pub spec: WorkerSpec,
    /// When it last called.
    pub last_seen: Instant,
    /// Leases it holds.
    pub held: usize,
    /// Its poll waiting for tasks, if any.
    pub parked: Option<Parked<R>>,
}

/// One leased attempt.
#[derive(Clone, Debug)]
pub struct Lease {
    /// The task, as the pool held it (its `attempts` not counting this attempt).
    pub job: Job,
    /// The worker holding it.
    pub worker: WorkerId,
    /// When the attempt started (wall clock, for the store).
    pub started_at_ms: u64,
    /// When it started (monotonic).
    pub started: Instant,
    /// When the task's `timeout_ms` runs out, if it has one.
    pub deadline: Option<Instant>,
    /// A client asked to cancel the task: the worker is told in its next heartbeat, and
    /// whatever it reports ends the task cancelled.
    pub cancel_requested: bool,
}

impl Lease {
    /// The attempt number this lease runs.
    pub fn attempt(&self) -> u32 {
        self.job.attempts + 1
    }
}

/// What a heartbeat learns of one of its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// The lease holds: go on.
    Ok,
    /// The lease holds, and a client asked to cancel the task: stop and report.
    CancelRequested,
    /// Not a lease of this worker (expired, moved, finished, never granted): stop, and
    /// report nothing.
    Stale,
}

impl LeaseState {
    /// The state as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Ok => "ok",
            LeaseState::CancelRequested => "cancel_requested",
            LeaseState::Stale => "stale",
        }
    }
}

/// Why a lease ended without a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Its worker was silent for the lease period.
    LeaseExpired,
    /// The task's `timeout_ms` passed.
    TimedOut(Duration),
}

/// What [`Book::expire`] took away.
#[derive(Debug)]
pub struct Expired<R> {
    /// Workers silent for the lease period, now forgotten, with their parked poll.
    pub workers: Vec<(WorkerId, Option<Parked<R>>)>,
    /// Leases that ended, and why.
    pub leases: Vec<(Lease, Ended)>,
}

/// The workers of one pool and their leases.
#[derive(Debug)]
pub struct Book<R> {
    lease_period: Duration,
    workers: HashMap<WorkerId, Registered<R>>,
    leases: HashMap<Token, Lease>,
    by_task: HashMap<TaskId, Token>,
    polls: u64,
}

impl<R> Book<R> {
    /// An empty book whose workers keep their leases for `lease_period` without a call.
    pub fn new(lease_period: Duration) -> Self {
        Self {
            lease_period,
            workers: HashMap::new(),
            leases: HashMap::new(),
            by_task: HashMap::new(),
            polls: 0,
        }
    }

    /// The lease period.
    pub fn lease_period(&self) -> Duration {
        self.lease_period
    }

    /// Registers a worker under `id`.
    pub fn register(&mut self, id: WorkerId, spec: WorkerSpec, now: Instant) {
        let worker = Registered {
            spec,
            last_seen: now,
            held: 0,
            parked: None,
        };
        self.workers.insert(id, worker);
    }

    /// The worker, if registered; a call from it counts as a sign of life.
    pub fn touch(&mut self, id: &str, now: Instant) -> Option<&mut Registered<R>> {
        let worker = self.workers.get_mut(id)?;
        worker.last_seen = now;
        Some(worker)
    }

    /// A registered worker.
    pub fn worker(&self, id: &str) -> Option<&Registered<R>> {
        self.workers.get(id)
    }

    /// The registered workers.
    pub fn workers(&self) -> impl Iterator<Item = (&WorkerId, &Registered<R>)> {
        self.workers.iter()
    }

    /// Registered workers with a poll parked.
    pub fn parked(&self) -> impl Iterator<Item = (&WorkerId, &Registered<R>)> {
        self.workers.iter().filter(|(_, w)| w.parked.is_some())
    }

    /// The worker's parked poll, if any.
    pub fn parked_of(&self, id: &str) -> Option<&Parked<R>> {
        self.workers.get(id)?.parked.as_ref()
    }

    /// How many more leases the worker may hold.
    pub fn free_slots(&self, id: &str) -> usize {
        self.workers
            .get(id)
            .map_or(0, |w| w.spec.slots.saturating_sub(w.held))
    }

    /// Parks a poll of `id` for at most `max` tasks; answers its sequence number and the
    /// poll it replaces (the worker gave up on it), if any.
    pub fn park(&mut self, id: &str, max: usize, reply: R, now: Instant) -> (u64, Option<R>) {
        self.polls += 1;
        let seq = self.polls;
        let Some(worker) = self.workers.get_mut(id) else {
            return (seq, Some(reply));
        };
        let parked = Parked {
            max,
            seq,
            since: now,
            reply,
        };
        let old = worker.parked.replace(parked).map(|p| p.reply);
        (seq, old)
    }

    /// Takes the worker's parked poll, if it is poll `seq` (any parked poll for `None`).
    pub fn unpark(&mut self, id: &str, seq: Option<u64>) -> Option<Parked<R>> {
        let worker = self.workers.get_mut(id)?;
        if seq.is_some_and(|s| worker.parked.as_ref().is_none_or(|p| p.seq != s)) {
            return None;
        }
        worker.parked.take()
    }

    /// Leases `job` to worker `id` for its next attempt and answers the token.
    pub fn grant(&mut self, id: &WorkerId, job: Job, now: Instant, started_at_ms: u64) -> Token {
        let token = Token::new(job.id, job.lease, job.attempts + 1, rand::random());
        let deadline = job
            .spec
            .timeout_ms
            .map(|ms| now + Duration::from_millis(ms));
        if let Some(worker) = self.workers.get_mut(id) {
            worker.held += 1;
            worker.last_seen = now;
        }
        self.by_task.insert(job.id, token.clone());
        let lease = Lease {
            job,
            worker: Arc::clone(id),
            started_at_ms,
            started: now,
            deadline,
            cancel_requested: false,
        };
        self.leases.insert(token.clone(), lease);
        token
    }

    /// The lease named by `token`.
    pub fn lease(&self, token: &Token) -> Option<&Lease> {
        self.leases.get(token)
    }

    /// The lease of task `id`, if one is out.
    pub fn lease_of(&self, id: &TaskId) -> Option<&Lease> {
        self.leases.get(self.by_task.get(id)?)
    }

    /// The lease of task `id`, to change.
    pub fn lease_of_mut(&mut self, id: &TaskId) -> Option<&mut Lease> {
        let token = self.by_task.get(id)?;
        self.leases.get_mut(token)
    }

    /// Ends the lease named by `token` (its result was reported, or it was taken back).
    pub fn release(&mut self, token: &Token) -> Option<Lease> {
        let lease = self.leases.remove(token)?;
        self.by_task.remove(&lease.job.id);
        if let Some(worker) = self.workers.get_mut(&lease.worker) {
            worker.held = worker.held.saturating_sub(1);
        }
        Some(lease)
    }

    /// Ends the lease of task `id`, if one is out.
    pub fn release_task(&mut self, id: &TaskId) -> Option<Lease> {
        let token = self.by_task.get(id)?.clone();
        self.release(&token)
    }

    /// What a heartbeat of worker `id` learns of each of `tokens`: a token that is not a
    /// live lease of this worker is stale.
    pub fn states(&self, id: &str, tokens: &[Token]) -> Vec<LeaseState> {
        tokens
            .iter()
            .map(|t| match self.leases.get(t) {
                Some(l) if &*l.worker == id && l.cancel_requested => LeaseState::CancelRequested,
                Some(l) if &*l.worker == id => LeaseState::Ok,
                _ => LeaseState::Stale,
            })
            .collect()
    }

    /// Forgets worker `id` and ends every lease it holds; answers them with its parked
    /// poll, or `None` for an unknown worker.
    pub fn deregister(&mut self, id: &str) -> Option<(Vec<Lease>, Option<Parked<R>>)> {
        let worker = self.workers.remove(id)?;
        let tokens: Vec<Token> = self
            .leases
            .iter()
            .filter(|(_, l)| &*l.worker == id)
            .map(|(t, _)| t.clone())
            .collect();
        let leases = tokens.iter().filter_map(|t| self.release(t)).collect();
        Some((leases, worker.parked))
    }

    /// Ends what is over at `now`: the leases of every worker silent for the lease period
    /// (a parked poll does not count as a sign of life for its leases: a frozen process
    /// keeps its connection open), and the registration of such a worker unless a poll of
    /// its is parked; and leases past their task's timeout.
    pub fn expire(&mut self, now: Instant) -> Expired<R> {
        let silent: Vec<(WorkerId, bool)> = self
            .workers
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.last_seen) > self.lease_period)
            // A parked worker holding nothing has nothing to lose yet.
            .filter(|(_, w)| w.held > 0 || w.parked.is_none())
            .map(|(id, w)| (Arc::clone(id), w.parked.is_some()))
            .collect();
        let mut expired = Expired {
            workers: Vec::new(),
            leases: Vec::new(),
        };
        for (id, parked) in silent {
            let held: Vec<Token> = self
                .leases
                .iter()
                .filter(|(_, l)| l.worker == id)
                .map(|(t, _)| t.clone())
                .collect();
            let ended = held.iter().filter_map(|t| self.release(t));
            expired
                .leases
                .extend(ended.map(|l| (l, Ended::LeaseExpired)).collect::<Vec<_>>());
            if !parked && let Some(worker) = self.workers.remove(&id) {
                expired.workers.push((id, worker.parked));
            }
        }
        let late: Vec<Token> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline.is_some_and(|d| now >= d))
            .map(|(t, _)| t.clone())
            .collect();
        for token in late {
            if let Some(lease) = self.release(&token) {
                let limit = lease.deadline.map_or(Duration::ZERO, |d| d - lease.started);
                expired.leases.push((lease, Ended::TimedOut(limit)));
            }
        }
        expired
    }

    /// Leases out.
    pub fn leases(&self) -> usize {
        self.leases.len()
    }

    /// Whether a registered worker runs `kind`.
    pub fn serves(&self, kind: &str) -> bool {
        self.workers
            .values()
            .any(|w| w.spec.kinds.iter().any(|k| k == kind))
    }

    /// The classes of the registered workers, sorted, each once.
    pub fn classes(&self) -> Vec<String> {
        let mut classes: Vec<String> = self
            .workers
            .values()
            .filter_map(|w| w.spec.class.clone())
            .collect();
        classes.sort();
        classes.dedup();
        classes
    }
}

#[cfg(test)]
mod tests;
