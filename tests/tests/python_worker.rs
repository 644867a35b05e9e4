//! Real Python worker processes (`tests/python/worker.py`, on the `taskmesh_worker`
//! client) running external tasks on real nodes: end to end in a cluster, through a
//! SIGKILL, a SIGSTOP past the lease, a cancel, and parked idle.
//!
//! Each worker is a `python3` child killed (SIGKILL) when its guard drops; its stdout
//! lines (`started <id> <attempt>`, `saw-cancel <id>`) are collected on a thread so a
//! test waits for a line with a deadline. The client's logs (stderr) go to the test's
//! stderr.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use integration_tests::cluster::{TestCluster, cluster_view};
use integration_tests::{TestNode, eventually, metric};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::time::Instant;

const WITHIN: Duration = Duration::from_secs(60);
const KIND: &str = "py_square";

/// Lines a worker printed on stdout, shared with the thread that reads them.
type Lines = Arc<Mutex<Vec<String>>>;

/// A `python3 tests/python/worker.py` process, SIGKILLed and reaped when dropped.
struct PyWorker {
    child: Child,
    name: String,
    lines: Lines,
}

impl PyWorker {
    /// Starts a worker named `name` with `slots` for `py_square` on the nodes `urls`,
    /// sending `key` (`TASKMESH_API_KEY`, which the Python client reads) when given.
    fn start(urls: &[String], key: Option<&str>, name: &str, slots: usize) -> anyhow::Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut command = Command::new("python3");
        command
            .arg(root.join("python/worker.py"))
            .args(["--kind", KIND, "--name", name])
            .args(["--slots", &slots.to_string()]);
        for url in urls {
            command.args(["--url", url]);
        }
        match key {
            Some(key) => command.env("TASKMESH_API_KEY", key),
            None => command.env_remove("TASKMESH_API_KEY"),
        };
        let mut child = command
            .env("PYTHONPATH", root.join("../kernels/python"))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning python3 (is it installed?)")?;
        let lines = Lines::default();
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        forward(stdout, format!("{name} out"), Some(Arc::clone(&lines)));
        forward(stderr, format!("{name} log"), None);
        Ok(Self {
            child,
            name: name.to_owned(),
            lines,
        })
    }

    /// Waits until the worker printed exactly `line`.
    async fn wait_line(&self, line: &str) -> anyhow::Result<()> {
        let what = format!("{} prints `{line}`", self.name);
        eventually(WITHIN, &what, async || {
            let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            Ok(lines.iter().any(|l| l == line).then_some(()))
        })
        .await
    }

    /// Sends `signal` to the process.
    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        kill(Pid::from_raw(i32::try_from(self.child.id())?), signal)?;
        Ok(())
    }
}

impl Drop for PyWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a worker's output line by line to the test's stderr (prefixed), and into
/// `lines` when given.
fn forward(from: impl Read + Send + 'static, prefix: String, lines: Option<Lines>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            eprintln!("[{prefix}] {line}");
            if let Some(lines) = &lines {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        }
    });
}

/// A single node with the external kind `py_square` and extra flags.
async fn node(extra: &[&str]) -> anyhow::Result<TestNode> {
    let mut flags = vec!["--external-kinds", KIND];
    flags.extend_from_slice(extra);
    TestNode::start_temp(&flags).await
}

fn square(x: i64, sleep_s: f64) -> Value {
    json!({ "kind": KIND, "params": { "x": x, "sleep_s": sleep_s } })
}

/// A metric of `node` (absent counts as 0).
async fn read_metric(node: &TestNode, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    Ok(metric(&node.metrics().await?, name, labels).unwrap_or(0.0))
}

/// How many polls are parked on `node` now.
async fn parked_polls(node: &TestNode) -> anyhow::Result<f64> {
    read_metric(node, "taskmesh_external_parked_polls", &[]).await
}

/// Waits until `node` has `n` Python workers registered for `py_square`.
async fn wait_workers(node: &TestNode, n: usize) -> anyhow::Result<()> {
    eventually(WITHIN, &format!("{n} workers registered"), async || {
        let count = read_metric(node, "taskmesh_external_workers", &[("kind", KIND)]).await?;
        Ok((count == n as f64).then_some(()))
    })
    .await
}

/// The CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3 (`state`);
    // utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').context("no `)` in stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field =
        |n: usize| -> anyhow::Result<u64> { Ok(fields.get(n - 3).context("short stat")?.parse()?) };
    Ok(field(14)? + field(15)?)
}

/// Proves: a Python worker connected to n2 runs tasks submitted to n1, and every
/// result is readable from n3.
#[tokio::test]
async fn a_python_worker_runs_external_tasks_across_a_cluster() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, &["--external-kinds", KIND]).await?;
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let worker = PyWorker::start(&[n2.url("")], n2.api_key(), "w-n2", 4)?;
    // n1 places tasks on n2 once n2's load report says it serves the kind.
    eventually(WITHIN, "n1 sees that n2 serves py_square", async || {
        let view = cluster_view(n1).await?;
        let n2_serves = view["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["id"] == "n2"))
            .is_some_and(|p| p["unserved"] == json!([]));
        Ok((n2_serves && view["node"]["unserved"] == json!([KIND])).then_some(()))
    })
    .await?;
    let xs: Vec<i64> = (1..=10).collect();
    let ids = n1
        .submit_batch(&xs.iter().map(|&x| square(x, 0.0)).collect::<Vec<_>>())
        .await?;
    let views = n3.wait_all_terminal(&ids, WITHIN).await?;
    for (x, view) in xs.iter().zip(views) {
        assert_eq!(view["status"], "succeeded", "{view}");
        assert_eq!(view["result"], json!({ "y": x * x, "by": worker.name }));
    }
    Ok(())
}

/// Proves: when the worker running a task is SIGKILLed, its lease expires, the failed
/// attempt is recorded as `lease_expired`, and a second worker completes the task as
/// attempt 2.
#[tokio::test]
async fn a_task_survives_the_sigkill_of_its_worker() -> anyhow::Result<()> {
    let node = node(&["--worker-lease-ms", "1000"]).await?;
    let id = node.submit(&square(5, 3.0)).await?;
    let a = PyWorker::start(&[node.url("")], node.api_key(), "A", 1)?;
    a.wait_line(&format!("started {id} 1")).await?;
    a.signal(Signal::SIGKILL)?;
    let b = PyWorker::start(&[node.url("")], node.api_key(), "B", 1)?;
    b.wait_line(&format!("started {id} 2")).await?;
    // Attempt 2 sleeps for 3 s: look at the task while it runs.
    let view = node.task(&id).await?;
    assert_eq!(view["status"], "running", "{view}");
    let error = view["error"].as_str().unwrap_or_default();
    assert!(error.contains("lease_expired"), "{view}");

    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["result"], json!({ "y": 25, "by": "B" }));
    assert_eq!(view["attempts"], 2, "{view}");
    Ok(())
}

/// Proves: a worker frozen (SIGSTOP) past its lease loses the task to another worker,
/// and once it resumes (SIGCONT, while the second attempt still runs) the node refuses
/// it and the stored result is the second worker's.
///
/// The client drops a result whose lease is gone, so the node sees A's late report only
/// when A's results call wins the race with A's heartbeat: either answers 404 (A's
/// registration ended with its lease), and the test waits for one of the two.
#[tokio::test]
async fn a_frozen_worker_loses_its_task_and_its_late_result_changes_nothing() -> anyhow::Result<()>
{
    let node = node(&["--worker-lease-ms", "1000"]).await?;
    let id = node.submit(&square(6, 2.0)).await?;
    let a = PyWorker::start(&[node.url("")], node.api_key(), "A", 1)?;
    a.wait_line(&format!("started {id} 1")).await?;
    a.signal(Signal::SIGSTOP)?;
    let b = PyWorker::start(&[node.url("")], node.api_key(), "B", 1)?;
    b.wait_line(&format!("started {id} 2")).await?;
    a.signal(Signal::SIGCONT)?;

    let heartbeat_404 = [
        ("route", "/v1/workers/{wid}/heartbeat"),
        ("method", "POST"),
        ("status", "404"),
    ];
    let late_result = [("outcome", "unknown_worker")];
    eventually(
        WITHIN,
        "the node refuses A's old registration",
        async || {
            let refused = read_metric(&node, "taskmesh_http_requests_total", &heartbeat_404)
                .await?
                + read_metric(
                    &node,
                    "taskmesh_external_refused_reports_total",
                    &late_result,
                )
                .await?;
            Ok((refused >= 1.0).then_some(()))
        },
    )
    .await?;
    // A registers again (its old leases void) next to B.
    wait_workers(&node, 2).await?;

    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["result"], json!({ "y": 36, "by": "B" }));
    assert_eq!(view["attempts"], 2, "{view}");
    let text = node.metrics().await?;
    let recorded = metric(
        &text,
        "taskmesh_tasks_completed_total",
        &[("kind", KIND), ("outcome", "succeeded")],
    );
    assert_eq!(recorded, Some(1.0), "one terminal write: B's");
    Ok(())
}

/// Proves: a cancel of a running external task reaches the Python handler in a
/// heartbeat answer (`ctx.cancelled`), and the task ends `cancelled`.
#[tokio::test]
async fn a_cancel_reaches_a_running_python_handler() -> anyhow::Result<()> {
    // A 5 s lease: the worker heartbeats every second.
    let node = node(&["--worker-lease-ms", "5000"]).await?;
    let heartbeat = Duration::from_secs(1);
    // Without the cancel the handler would run for a minute.
    let id = node.submit(&square(2, 60.0)).await?;
    let worker = PyWorker::start(&[node.url("")], node.api_key(), "W", 1)?;
    worker.wait_line(&format!("started {id} 1")).await?;
    let asked = Instant::now();
    let answer = node.delete(&format!("/v1/tasks/{id}")).await?;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    worker.wait_line(&format!("saw-cancel {id}")).await?;
    // One heartbeat, with room for a slow machine (far below the handler's minute).
    let took = asked.elapsed();
    assert!(took < 5 * heartbeat, "the cancel took {took:?}");
    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(view["status"], "cancelled", "{view}");
    Ok(())
}

/// Proves: four Python workers parked in polls cost their node no more CPU than an
/// idle node uses over the same window (a ratio with a floor, not a time).
#[tokio::test]
async fn idle_workers_parked_in_polls_cost_no_cpu() -> anyhow::Result<()> {
    let polled = node(&[]).await?;
    let idle = node(&[]).await?;
    let _workers: Vec<PyWorker> = (1..=4)
        .map(|i| PyWorker::start(&[polled.url("")], polled.api_key(), &format!("idle-{i}"), 1))
        .collect::<Result<_, _>>()?;
    eventually(WITHIN, "4 polls parked", async || {
        Ok((parked_polls(&polled).await? == 4.0).then_some(()))
    })
    .await?;

    let pids = (
        polled.pid().context("polled node")?,
        idle.pid().context("idle node")?,
    );
    let before = (cpu_ticks(pids.0)?, cpu_ticks(pids.1)?);
    // The window: ten samples a second apart. Both nodes answer the same scrapes.
    let mut samples = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(parked_polls(&polled).await?);
        parked_polls(&idle).await?;
    }
    let after = (cpu_ticks(pids.0)?, cpu_ticks(pids.1)?);
    let (used_polled, used_idle) = (after.0 - before.0, after.1 - before.1);
    eprintln!("CPU ticks over the window: polled {used_polled}, idle {used_idle}");
    // A worker re-polls every 20 s: a sample may fall in its gap between two polls.
    assert!(
        samples.iter().all(|&s| s >= 3.0) && samples.iter().filter(|&&s| s == 4.0).count() >= 8,
        "parked polls during the window: {samples:?}"
    );
    assert!(
        used_polled <= 3 * used_idle.max(20),
        "polled node used {used_polled} ticks, idle node {used_idle}"
    );
    Ok(())
}
