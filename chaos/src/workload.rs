//! The workload: submissions at a steady rate (open loop, so a stalled node does not slow
//! it down) or in bursts, and the ledger of every answer. Only ids that came back in a
//! 202 count as accepted; they are what the invariants are checked on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::client::{Api, Submitted};
use crate::clock::RunClock;
use crate::scenario::{SubmitTo, WorkloadSpec};

/// Submissions in flight at most; beyond that the steady workload skips a beat.
const MAX_IN_FLIGHT: usize = 256;

/// One accepted task.
#[derive(Clone, Debug, Serialize)]
pub struct Accepted {
    /// Its id.
    pub id: String,
    /// When the 202 arrived, in milliseconds since the run started.
    pub at_ms: u64,
    /// The node that accepted it.
    pub node: usize,
}

/// Every answer the workload got.
#[derive(Debug, Default, Serialize)]
pub struct Ledger {
    /// Accepted tasks, in the order their 202s arrived.
    pub accepted: Vec<Accepted>,
    /// Documented 503 refusals, by error code: nothing was stored.
    pub refused: BTreeMap<String, u64>,
    /// Tasks of submissions answered `503 outcome_unknown`: perhaps stored. They are read
    /// back at the end, and those stored are checked like accepted ones.
    pub unknown: Vec<Accepted>,
    /// 5xx answers that are not documented 503s: `status code` lines.
    pub server_errors: Vec<String>,
    /// 4xx answers (the workload's own fault): `status code` lines.
    pub rejected: Vec<String>,
    /// Submissions no node answered in time (not accepted, so not checked).
    pub unanswered: u64,
    /// Beats skipped because too many submissions were in flight.
    pub skipped: u64,
}

/// Where submissions may go now: live node indices and their URLs. The runner updates it
/// as nodes die and come back.
pub type Targets = Arc<RwLock<Vec<(usize, String)>>>;

/// What the workload shares with the runner.
#[derive(Clone)]
pub struct Submitter {
    api: Api,
    spec: Arc<WorkloadSpec>,
    targets: Targets,
    ledger: Arc<Mutex<Ledger>>,
    rng: Arc<Mutex<ChaCha8Rng>>,
    clock: RunClock,
}

impl Submitter {
    /// A submitter drawing tasks from `spec` with `seed`.
    pub fn new(api: Api, spec: WorkloadSpec, targets: Targets, seed: u64, clock: RunClock) -> Self {
        Self {
            api,
            spec: Arc::new(spec),
            targets,
            ledger: Arc::default(),
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x5eed))),
            clock,
        }
    }

    /// The ledger so far.
    pub fn ledger(&self) -> Arc<Mutex<Ledger>> {
        Arc::clone(&self.ledger)
    }

    fn task(&self) -> Value {
        let total: u32 = self.spec.mix.iter().map(|t| t.weight).sum();
        let mut pick = lock(&self.rng).random_range(0..total.max(1));
        let spec = self
            .spec
            .mix
            .iter()
            .find(|t| {
                let hit = pick < t.weight;
                pick = pick.saturating_sub(t.weight);
                hit
            })
            .unwrap_or(&self.spec.mix[0]);
        json!({ "kind": spec.kind, "params": spec.params })
    }

    /// The targets in the order to try them for submission number `n`.
    fn order(&self, n: usize) -> Vec<(usize, String)> {
        let mut targets = read(&self.targets).clone();
        if targets.is_empty() {
            return targets;
        }
        match self.spec.submit_to {
            SubmitTo::First => {}
            SubmitTo::All => {
                let len = targets.len();
                targets.rotate_left(n % len);
            }
        }
        targets
    }

    /// Submits `tasks` as one request, to each live node in turn until one answers.
    async fn submit(&self, n: usize, tasks: Vec<Value>) {
        for (node, url) in self.order(n) {
            let outcome = self.api.submit(&url, &tasks).await;
            let mut ledger = lock(&self.ledger);
            match outcome {
                Submitted::Accepted(ids) => {
                    let at_ms = self.clock.elapsed_ms();
                    ledger
                        .accepted
                        .extend(ids.into_iter().map(|id| Accepted { id, at_ms, node }));
                }
                Submitted::Unknown(ids) => {
                    let at_ms = self.clock.elapsed_ms();
                    ledger
                        .unknown
                        .extend(ids.into_iter().map(|id| Accepted { id, at_ms, node }));
                }
                Submitted::Refused(code) => *ledger.refused.entry(code).or_default() += 1,
                Submitted::ServerError(status, code) => {
                    ledger
                        .server_errors
                        .push(format!("{status} {code} from node {node}"));
                }
                Submitted::Rejected(status, code) => {
                    ledger
                        .rejected
                        .push(format!("{status} {code} from node {node}"));
                }
                Submitted::Unreachable => continue,
            }
            return;
        }
        lock(&self.ledger).unanswered += 1;
    }

    /// Submits `count` tasks now, in batches of up to 100, and waits for the answers.
    pub async fn burst(&self, count: usize) {
        let mut left = count;
        let mut n = 0;
        while left > 0 {
            let size = left.min(100);
            let tasks = (0..size).map(|_| self.task()).collect();
            self.submit(n, tasks).await;
            left -= size;
            n += 1;
        }
    }

    /// Starts submitting one task every `1 / rate` seconds until stopped.
    pub fn start(&self) -> Workload {
        let (stop, mut stopped) = watch::channel(false);
        let this = self.clone();
        let handle = tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / this.spec.rate);
            let mut beat = tokio::time::interval(period);
            beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            let mut tasks = tokio::task::JoinSet::new();
            for n in 0.. {
                tokio::select! {
                    _ = beat.tick() => {}
                    _ = stopped.changed() => break,
                }
                let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                    lock(&this.ledger).skipped += 1;
                    continue;
                };
                let submitter = this.clone();
                let task = this.task();
                tasks.spawn(async move {
                    submitter.submit(n, vec![task]).await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
            // Submissions already sent finish, so their 202s are recorded.
            while tasks.join_next().await.is_some() {}
        });
        Workload { stop, handle }
    }
}

/// A running steady workload.
pub struct Workload {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Workload {
    /// Stops submitting and waits for the submissions in flight.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.handle.await;
    }
}

/// Locks a mutex, ignoring poisoning (a panicked holder left plain data behind).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads an `RwLock`, ignoring poisoning.
pub fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}
