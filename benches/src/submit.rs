//! The submit phase: C connections sending tasks, in a closed or an open loop.
//!
//! - **Closed loop**: each connection sends its next request as soon as the previous
//!   answer arrives. Latency is each request's own time.
//! - **Open loop**: request `i` is *due* at `start + i / rate`. Each connection claims
//!   the next due slot, waits for its time if it is in the future, and sends. Latency is
//!   measured from the due time, so when the node stalls and requests pile up, the wait
//!   they spend queued behind the stall is counted (no coordinated omission). The time
//!   from the actual send is kept too, as the service time. With every connection busy,
//!   due requests wait for a free one: C bounds the requests in flight, not the rate.
//!
//! Every connection is opened before the clock starts. Accepted ids are kept (16 bytes
//! each) for the completion phase.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use hyper::Method;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::cli::Limit;
use crate::http::{Conn, Target};
use crate::stats::{Counts, Latency};
use crate::workload::{Workload, accepted_ids};

/// How to run the submit phase.
#[derive(Clone, Debug)]
pub struct SubmitPlan {
    /// The nodes; connection `i` talks to `targets[i % len]`.
    pub targets: Vec<Arc<Target>>,
    /// Connections (the most requests in flight).
    pub connections: usize,
    /// What each request carries.
    pub workload: Arc<Workload>,
    /// When to stop.
    pub limit: Limit,
    /// Open loop at this many requests per second; closed loop when `None`.
    pub rate: Option<f64>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// What the submit phase did.
#[derive(Debug)]
pub struct SubmitOutcome {
    /// Wall-clock time of the first send, to compare with the node's `finished_at`.
    pub first_send_wall: SystemTime,
    /// Monotonic time of the first send.
    pub first_send: Instant,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    /// Closed: request latency. Open: latency from the due time.
    pub latency: Latency,
    /// Open loop only: latency from the actual send.
    pub service: Option<Latency>,
    /// Answers by HTTP status.
    pub statuses: Counts,
    /// Requests without an answer, by kind (connect, http, timeout).
    pub transport_errors: Counts,
    /// `202` answers whose body had no readable ids.
    pub bad_answers: u64,
    /// Requests sent.
    pub requests: u64,
    /// Tasks in the requests sent.
    pub tasks_sent: u64,
    /// TCP connections opened (equal to the connection count when keep-alive held).
    pub connects: u64,
    /// Accepted ids, by target index.
    pub ids: Vec<Vec<Uuid>>,
    /// Each connection's last accepted id, with its target index.
    pub last_ids: Vec<(usize, Uuid)>,
}

impl SubmitOutcome {
    /// Tasks the nodes accepted (answered 202).
    pub fn accepted(&self) -> u64 {
        self.ids.iter().map(|ids| ids.len() as u64).sum()
    }
}

/// A request slot claimed from the [`Schedule`].
struct Slot {
    tasks: usize,
    due: Option<Instant>,
}

/// Hands out request slots to the connections until the limit.
struct Schedule {
    next: AtomicU64,
    start: Instant,
    batch: u64,
    limit: Limit,
    interval: Option<f64>,
}

impl Schedule {
    fn claim(&self) -> Option<Slot> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let due = self
            .interval
            .map(|secs| self.start + Duration::from_secs_f64(seq as f64 * secs));
        let tasks = match self.limit {
            Limit::Tasks(total) => {
                let sent = seq.checked_mul(self.batch)?;
                if sent >= total {
                    return None;
                }
                (total - sent).min(self.batch)
            }
            Limit::Duration(length) => {
                let end = self.start + length;
                if due.unwrap_or_else(Instant::now) >= end {
                    return None;
                }
                self.batch
            }
        };
        Some(Slot {
            tasks: usize::try_from(tasks).ok()?,
            due,
        })
    }
}

/// What one connection did.
struct ConnOutcome {
    target: usize,
    latency: Latency,
    service: Latency,
    statuses: Counts,
    transport_errors: Counts,
    bad_answers: u64,
    requests: u64,
    tasks_sent: u64,
    connects: u64,
    ids: Vec<Uuid>,
    last_answer: Option<Instant>,
}

/// Runs the submit phase.
pub async fn run(plan: &SubmitPlan) -> anyhow::Result<SubmitOutcome> {
    let mut conns = Vec::with_capacity(plan.connections);
    for i in 0..plan.connections {
        let target = Arc::clone(&plan.targets[i % plan.targets.len()]);
        let mut conn = Conn::new(Arc::clone(&target), plan.timeout)?;
        conn.connect()
            .await
            .with_context(|| format!("connecting to {}", target.url))?;
        conns.push((i % plan.targets.len(), conn));
    }
    let first_send_wall = SystemTime::now();
    let start = Instant::now();
    let schedule = Arc::new(Schedule {
        next: AtomicU64::new(0),
        start,
        batch: plan.workload.batch() as u64,
        limit: plan.limit,
        interval: plan.rate.map(|rate| 1.0 / rate),
    });
    let mut tasks = JoinSet::new();
    for (target, conn) in conns {
        let (schedule, workload) = (Arc::clone(&schedule), Arc::clone(&plan.workload));
        tasks.spawn(drive(conn, target, schedule, workload));
    }
    let mut outcome = SubmitOutcome {
        first_send_wall,
        first_send: start,
        elapsed: Duration::ZERO,
        latency: Latency::new(),
        service: plan.rate.map(|_| Latency::new()),
        statuses: Counts::default(),
        transport_errors: Counts::default(),
        bad_answers: 0,
        requests: 0,
        tasks_sent: 0,
        connects: 0,
        ids: vec![Vec::new(); plan.targets.len()],
        last_ids: Vec::new(),
    };
    let mut last_answer = start;
    while let Some(done) = tasks.join_next().await {
        let c = done.context("a connection task panicked")??;
        outcome.latency.merge(&c.latency);
        if let Some(service) = outcome.service.as_mut() {
            service.merge(&c.service);
        }
        outcome.statuses.merge(&c.statuses);
        outcome.transport_errors.merge(&c.transport_errors);
        outcome.bad_answers += c.bad_answers;
        outcome.requests += c.requests;
        outcome.tasks_sent += c.tasks_sent;
        outcome.connects += c.connects;
        if let Some(&last) = c.ids.last() {
            outcome.last_ids.push((c.target, last));
        }
        outcome.ids[c.target].extend(c.ids);
        last_answer = last_answer.max(c.last_answer.unwrap_or(start));
    }
    outcome.elapsed = last_answer - start;
    Ok(outcome)
}

/// One connection's loop: claim a slot, (open loop: wait until it is due,) send, record.
async fn drive(
    mut conn: Conn,
    target: usize,
    schedule: Arc<Schedule>,
    workload: Arc<Workload>,
) -> anyhow::Result<ConnOutcome> {
    let batch = workload.batch() > 1;
    let mut out = ConnOutcome {
        target,
        latency: Latency::new(),
        service: Latency::new(),
        statuses: Counts::default(),
        transport_errors: Counts::default(),
        bad_answers: 0,
        requests: 0,
        tasks_sent: 0,
        connects: 0,
        ids: Vec::new(),
        last_answer: None,
    };
    while let Some(slot) = schedule.claim() {
        if let Some(due) = slot.due
            && due > Instant::now()
        {
            tokio::time::sleep_until(due.into()).await;
        }
        let body = workload.body(slot.tasks)?;
        let sent = Instant::now();
        let answer = conn
            .request(Method::POST, workload.path(), Some(body))
            .await;
        let now = Instant::now();
        out.latency.record(now - slot.due.unwrap_or(sent));
        out.service.record(now - sent);
        out.requests += 1;
        out.tasks_sent += slot.tasks as u64;
        out.last_answer = Some(now);
        match answer {
            Ok(a) => {
                out.statuses.add(a.status.to_string(), 1);
                if a.status == 202 && accepted_ids(&a.body, batch, &mut out.ids).is_err() {
                    out.bad_answers += 1;
                }
            }
            Err(e) => out.transport_errors.add(e.kind(), 1),
        }
    }
    out.connects = conn.opened();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(limit: Limit, batch: u64, interval: Option<f64>) -> Schedule {
        Schedule {
            next: AtomicU64::new(0),
            start: Instant::now(),
            batch,
            limit,
            interval,
        }
    }

    #[test]
    fn task_limits_end_with_a_short_batch() {
        let s = schedule(Limit::Tasks(25), 10, None);
        let sizes: Vec<usize> = std::iter::from_fn(|| s.claim().map(|slot| slot.tasks)).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert!(s.claim().is_none(), "stays exhausted");
    }

    #[test]
    fn open_loop_slots_are_due_at_fixed_intervals() {
        let s = schedule(Limit::Duration(Duration::from_secs(1)), 1, Some(0.25));
        let dues: Vec<Duration> = std::iter::from_fn(|| s.claim())
            .filter_map(|slot| slot.due.map(|d| d - s.start))
            .collect();
        let expected: Vec<Duration> = (0..4).map(|i| Duration::from_millis(250 * i)).collect();
        assert_eq!(dues, expected);
    }
}
