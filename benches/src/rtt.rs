//! The idle round trip: on one keep-alive connection, submit a task, then long-poll it
//! (`GET /v1/tasks/{id}?wait_ms=5000`) until it is terminal; one task at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use serde::Serialize;

use crate::http::{Conn, Target};
use crate::stats::{Counts, Latency, Percentiles};
use crate::workload::{TaskState, Workload, accepted_ids, task_path};

/// How long each long-poll may wait.
const WAIT_MS: u64 = 5_000;

/// Round-trip figures.
#[derive(Debug)]
pub struct RttOutcome {
    /// Submit until the terminal answer arrived.
    pub round_trip: Latency,
    /// The `POST` alone.
    pub submit: Latency,
    /// The long-poll `GET` alone.
    pub wait: Latency,
    /// Iterations whose task was still not terminal after the long-poll.
    pub not_terminal: u64,
    /// Iterations that failed, by cause.
    pub errors: Counts,
}

/// The JSON form of [`RttOutcome`].
#[derive(Debug, Serialize)]
pub struct RttReport {
    /// Submit until terminal.
    pub round_trip_us: Percentiles,
    /// The `POST` alone.
    pub submit_us: Percentiles,
    /// The long-poll alone.
    pub wait_us: Percentiles,
    /// Not terminal after the long-poll.
    pub not_terminal: u64,
    /// Failures by cause.
    pub errors: Counts,
}

impl From<&RttOutcome> for RttReport {
    fn from(o: &RttOutcome) -> Self {
        Self {
            round_trip_us: o.round_trip.summary(),
            submit_us: o.submit.summary(),
            wait_us: o.wait.summary(),
            not_terminal: o.not_terminal,
            errors: o.errors.clone(),
        }
    }
}

/// Runs `warmup` unrecorded iterations, then `iterations` recorded ones.
pub async fn run(
    target: Arc<Target>,
    workload: &Workload,
    iterations: u64,
    warmup: u64,
    timeout: Duration,
) -> anyhow::Result<RttOutcome> {
    let mut conn = Conn::new(target, timeout)?;
    conn.connect().await?;
    let mut outcome = RttOutcome {
        round_trip: Latency::new(),
        submit: Latency::new(),
        wait: Latency::new(),
        not_terminal: 0,
        errors: Counts::default(),
    };
    for i in 0..warmup + iterations {
        let record = i >= warmup;
        let started = Instant::now();
        match once(&mut conn, workload).await {
            Ok((posted, terminal)) => {
                let done = Instant::now();
                if !record {
                    continue;
                }
                outcome.round_trip.record(done - started);
                outcome.submit.record(posted - started);
                outcome.wait.record(done - posted);
                if !terminal {
                    outcome.not_terminal += 1;
                }
            }
            Err(cause) if record => outcome.errors.add(cause, 1),
            Err(_) => {}
        }
    }
    Ok(outcome)
}

/// One iteration: when the `POST` was answered, and whether the task ended terminal.
async fn once(conn: &mut Conn, workload: &Workload) -> Result<(Instant, bool), String> {
    let answer = conn
        .request(Method::POST, "/v1/tasks", Some(workload.single()))
        .await
        .map_err(|e| format!("submit {}", e.kind()))?;
    let posted = Instant::now();
    if answer.status != 202 {
        return Err(format!("submit {}", answer.status));
    }
    let mut ids = Vec::with_capacity(1);
    accepted_ids(&answer.body, false, &mut ids).map_err(|_| "submit body".to_owned())?;
    let id = ids.first().ok_or("submit body")?;
    let answer = conn
        .request(Method::GET, &task_path(id, WAIT_MS), None)
        .await
        .map_err(|e| format!("wait {}", e.kind()))?;
    if answer.status != 200 {
        return Err(format!("wait {}", answer.status));
    }
    let state: TaskState<'_> =
        serde_json::from_slice(&answer.body).map_err(|_| "wait body".to_owned())?;
    Ok((posted, state.is_terminal()))
}
