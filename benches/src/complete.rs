//! The completion phase: wait until every accepted task is terminal, checked through the
//! API, and find when the last one finished.
//!
//! 1. **Wait**: each connection's last accepted id is long-polled
//!    (`GET /v1/tasks/{id}?wait_ms=…`) until terminal. Tasks of one priority start in
//!    FIFO order, so once these are done almost everything is; the moment they all are
//!    is when the generator *observed* completion.
//! 2. **Verify**: every accepted id (or an evenly spaced sample) is read back with
//!    `GET /v1/tasks/{id}` over C connections, and any that is not terminal yet is
//!    long-polled until it is. The statuses are tallied, and the latest `finished_at`
//!    is kept: the end-to-end time runs from the first submission to that instant, so
//!    the time spent verifying does not count against the node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::Method;
use serde::Serialize;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::cli::Verify;
use crate::http::{Conn, Target};
use crate::workload::{TaskState, task_path};

/// The longest `wait_ms` the API honours.
const MAX_WAIT_MS: u64 = 60_000;

/// How to run the completion phase.
#[derive(Clone, Debug)]
pub struct CompletionPlan {
    /// The nodes, in the order the submit phase used.
    pub targets: Vec<Arc<Target>>,
    /// Connections for verification.
    pub connections: usize,
    /// Per-request timeout (above the long-poll time).
    pub timeout: Duration,
    /// Give up on tasks still unfinished at this instant.
    pub deadline: Instant,
}

/// What the reads found, task by task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Tasks read back.
    pub checked: u64,
    /// Terminal: succeeded.
    pub succeeded: u64,
    /// Terminal: failed.
    pub failed: u64,
    /// Terminal: cancelled.
    pub cancelled: u64,
    /// Still queued or running at the deadline.
    pub unfinished: u64,
    /// Answered 404.
    pub not_found: u64,
    /// No usable answer (transport error, other status, unreadable body).
    pub errors: u64,
    /// The latest `finished_at` seen, in ms since the Unix epoch.
    pub last_finished_ms: Option<u64>,
}

impl Tally {
    /// Tasks seen in a terminal status.
    pub fn terminal(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled
    }

    fn merge(&mut self, o: &Tally) {
        self.checked += o.checked;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
        self.cancelled += o.cancelled;
        self.unfinished += o.unfinished;
        self.not_found += o.not_found;
        self.errors += o.errors;
        self.last_finished_ms = self.last_finished_ms.max(o.last_finished_ms);
    }
}

/// Long-polls each `(target, id)` until terminal or the deadline; returns the tally and
/// the moment the last of them was seen terminal.
pub async fn wait_for(
    plan: &CompletionPlan,
    ids: &[(usize, Uuid)],
) -> anyhow::Result<(Tally, Instant)> {
    let mut polls = JoinSet::new();
    for &(target, id) in ids {
        let conn = Conn::new(Arc::clone(&plan.targets[target]), plan.timeout)?;
        polls.spawn(check(conn, vec![id], plan.deadline));
    }
    collect(polls).await
}

/// Reads back `ids` (by target index) as `verify` says, over the plan's connections.
pub async fn verify(
    plan: &CompletionPlan,
    ids: &[Vec<Uuid>],
    last_ids: &[(usize, Uuid)],
    verify: Verify,
) -> anyhow::Result<(Tally, Instant)> {
    let chosen: Vec<Vec<Uuid>> = ids
        .iter()
        .enumerate()
        .map(|(target, ids)| {
            let mut picked = pick(ids, verify, plan.targets.len());
            if matches!(verify, Verify::Sample(_)) {
                picked.extend(
                    last_ids
                        .iter()
                        .filter(|(t, _)| *t == target)
                        .map(|(_, id)| id),
                );
            }
            picked
        })
        .collect();
    // Connection i reads every (connections_of_target)-th id of target i % targets.
    let targets = plan.targets.len();
    let mut reads = JoinSet::new();
    for i in 0..plan.connections.max(targets) {
        let target = i % targets;
        let stride = plan.connections.max(targets).div_ceil(targets);
        let share: Vec<Uuid> = chosen[target]
            .iter()
            .skip(i / targets)
            .step_by(stride)
            .copied()
            .collect();
        if share.is_empty() {
            continue;
        }
        let conn = Conn::new(Arc::clone(&plan.targets[target]), plan.timeout)?;
        reads.spawn(check(conn, share, plan.deadline));
    }
    collect(reads).await
}

/// What [`verify`] reads: all ids, or an evenly spaced sample of this target's share.
fn pick(ids: &[Uuid], verify: Verify, targets: usize) -> Vec<Uuid> {
    match verify {
        Verify::None => Vec::new(),
        Verify::All => ids.to_vec(),
        Verify::Sample(n) => {
            let n = n.div_ceil(targets.max(1)).min(ids.len());
            if n == 0 {
                return Vec::new();
            }
            let step = ids.len() as f64 / n as f64;
            (0..n)
                .filter_map(|k| ids.get((k as f64 * step) as usize).copied())
                .collect()
        }
    }
}

async fn collect(mut set: JoinSet<anyhow::Result<Tally>>) -> anyhow::Result<(Tally, Instant)> {
    let mut total = Tally::default();
    while let Some(done) = set.join_next().await {
        total.merge(&done.context("a verification task panicked")??);
    }
    Ok((total, Instant::now()))
}

/// Reads each id; long-polls those not terminal until they are or `deadline` passes.
async fn check(mut conn: Conn, ids: Vec<Uuid>, deadline: Instant) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    for id in ids {
        tally.checked += 1;
        let mut wait_ms = 0;
        loop {
            let answer = conn
                .request(Method::GET, &task_path(&id, wait_ms), None)
                .await;
            let Ok(answer) = answer else {
                tally.errors += 1;
                break;
            };
            if answer.status == 404 {
                tally.not_found += 1;
                break;
            }
            let state = match answer.status {
                200 => serde_json::from_slice::<TaskState<'_>>(&answer.body).ok(),
                _ => None,
            };
            let Some(state) = state else {
                tally.errors += 1;
                break;
            };
            if state.is_terminal() {
                match state.status {
                    "succeeded" => tally.succeeded += 1,
                    "failed" => tally.failed += 1,
                    _ => tally.cancelled += 1,
                }
                tally.last_finished_ms = tally.last_finished_ms.max(state.finished_at_ms());
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tally.unfinished += 1;
                break;
            }
            wait_ms = u64::try_from(left.as_millis())
                .unwrap_or(MAX_WAIT_MS)
                .clamp(1, MAX_WAIT_MS);
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_evenly_spaced_and_bounded() {
        let ids: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
        let sample = pick(&ids, Verify::Sample(4), 1);
        assert_eq!(sample, [ids[0], ids[25], ids[50], ids[75]]);
        assert_eq!(pick(&ids, Verify::Sample(1000), 1).len(), 100);
        assert_eq!(pick(&ids, Verify::Sample(10), 2).len(), 5);
        assert_eq!(pick(&ids, Verify::All, 1).len(), 100);
        assert!(pick(&ids, Verify::None, 1).is_empty());
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally {
            checked: 2,
            succeeded: 2,
            last_finished_ms: Some(5),
            ..Tally::default()
        };
        a.merge(&Tally {
            checked: 1,
            failed: 1,
            last_finished_ms: Some(9),
            ..Tally::default()
        });
        assert_eq!(
            (a.checked, a.terminal(), a.last_finished_ms),
            (3, 3, Some(9))
        );
    }
}
