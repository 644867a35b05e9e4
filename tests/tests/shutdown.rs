//! Shutdown an orchestrator can rely on: on SIGTERM the HTTP port stays open for the
//! drain period with `/health/ready` at 503 (`draining: true`), and the pool starts no
//! queued task; those stay queued in the store for the restart.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use integration_tests::{ONE_WORKER, TestNode, eventually};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use taskmesh_actors::store::TaskStore;
use taskmesh_actors::store::embedded::EmbeddedStore;
use taskmesh_kernels::task::{TaskId, TaskStatus};

/// Deadline of any single wait (generous: CI machines are slow).
const WITHIN: Duration = Duration::from_secs(60);

/// Whether `draining: true` appears anywhere in a readiness answer.
fn says_draining(body: &Value) -> bool {
    match body {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| (k == "draining" && v == &Value::Bool(true)) || says_draining(v)),
        _ => false,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test]
async fn sigterm_keeps_the_port_open_with_readiness_at_503_then_exits_0() -> anyhow::Result<()> {
    // A long drain, so a slow machine still sees it; the test does not wait it out
    // idly: it polls until it sees the 503, then waits for the exit.
    let mut node = TestNode::start_temp(&["--drain-ms", "8000"]).await?;
    let ready = node.get("/health/ready").await?;
    ensure!(ready.status == 200, "ready before SIGTERM: {ready:?}");
    node.signal(Signal::SIGTERM)?;
    let draining = eventually(WITHIN, "readiness answers 503 draining", || async {
        let answer = node.get("/health/ready").await?;
        Ok((answer.status == 503 && says_draining(&answer.body)).then_some(answer))
    })
    .await?;
    ensure!(
        node.pid().is_some(),
        "the node must still run while draining"
    );
    // Liveness still answers during the drain: the port is open and the node alive.
    let live = node.get("/health").await?;
    ensure!(live.status == 200, "liveness during the drain: {live:?}");
    let code = node.wait_exit(WITHIN).await?;
    ensure!(code == Some(0), "exit code {code:?} after SIGTERM");
    ensure!(
        node.get("/health").await.is_err(),
        "the port must be closed once the node exited"
    );
    ensure!(
        draining.body["status"] == "not_ready",
        "readiness body: {}",
        draining.body
    );
    Ok(())
}

#[tokio::test]
async fn drain_zero_closes_the_port_at_once_and_exits_0() -> anyhow::Result<()> {
    let mut node = TestNode::start_temp(&["--drain-ms", "0"]).await?;
    node.signal(Signal::SIGTERM)?;
    let code = node.wait_exit(WITHIN).await?;
    ensure!(code == Some(0), "exit code {code:?} after SIGTERM");
    Ok(())
}

#[tokio::test]
async fn no_queued_task_starts_after_sigterm_and_they_run_after_the_restart() -> anyhow::Result<()>
{
    let flags = [
        ONE_WORKER,
        &["--drain-ms", "2000", "--shutdown-grace-secs", "30"],
    ]
    .concat();
    let mut node = TestNode::start_temp(&flags).await?;
    // One worker: the first task runs, the others wait in the queue.
    let slow = json!({"kind": "sleep", "params": {"ms": 1500}});
    let running = node.submit(&slow).await?;
    node.wait_status(&running, "running", WITHIN).await?;
    let short = json!({"kind": "sleep", "params": {"ms": 300}});
    let queued = node.submit_batch(&vec![short; 20]).await?;
    // A long-poll open at SIGTERM (it kept the node alive and starting tasks before).
    let poll = {
        let (http, url) = (
            node.http.clone(),
            node.url(&format!("/v1/tasks/{}?wait_ms=60000", queued[0])),
        );
        tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) })
    };
    // The node answers other requests meanwhile (the long-poll went out before this).
    ensure!(node.get("/health").await?.status == 200);
    let signalled_at = now_ms();
    node.signal(Signal::SIGTERM)?;
    let code = node.wait_exit(WITHIN).await?;
    ensure!(code == Some(0), "exit code {code:?} after SIGTERM");
    let exited_at = now_ms();
    poll.abort();

    // The store as the node left it: the running task finished within the grace, every
    // queued one is still queued, never started.
    let store = EmbeddedStore::open(&node.data_dir)?;
    let first = store
        .get(
            &running
                .parse::<TaskId>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        )
        .await?
        .context("the running task's record")?;
    ensure!(
        first.status == TaskStatus::Succeeded,
        "the running task finishes within the grace: {:?}",
        first.status
    );
    for id in &queued {
        let record = store
            .get(&id.parse::<TaskId>().map_err(|e| anyhow::anyhow!("{e:?}"))?)
            .await?
            .context("a queued task's record")?;
        ensure!(
            record.status == TaskStatus::Queued && record.attempts == 0,
            "task {id} must still be queued and never started, found {:?} after {} attempts \
             (started at {:?}, SIGTERM at {signalled_at}, exit at {exited_at})",
            record.status,
            record.attempts,
            record.started_at_ms
        );
    }
    drop(store);

    // The restart runs them, each exactly once.
    node.restart().await?;
    let views = node.wait_all_terminal(&queued, WITHIN * 2).await?;
    for view in views {
        ensure!(
            view["status"] == "succeeded" && view["attempts"] == 1,
            "after the restart: {view}"
        );
    }
    Ok(())
}
