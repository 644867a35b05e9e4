//! Start to ready: spawn the node binary on a fresh data directory and a free port, and
//! time until `GET /health/ready` first answers 200 (polled every millisecond). Then,
//! after a short settle, read the idle node's RSS and CPU time, and kill it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;
use serde::Serialize;

use crate::http::{Conn, Target};
use crate::procstat;
use crate::stats::{Latency, Percentiles};

/// How long a node may take to become ready before the run fails.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How long the node idles after ready before its RSS is read.
const SETTLE: Duration = Duration::from_secs(1);

/// Startup figures.
#[derive(Debug, Serialize)]
pub struct StartupReport {
    /// Nodes started.
    pub runs: usize,
    /// Spawn until the first 200 from `/health/ready`.
    pub ready_us: Percentiles,
    /// RSS of the idle node, `SETTLE` after ready, KiB, one per run.
    pub idle_rss_kib: Vec<u64>,
    /// CPU seconds of the node from spawn to `SETTLE` after ready, one per run.
    pub startup_cpu_s: Vec<f64>,
}

/// Kills and reaps the child when dropped, so a failed run leaves no node behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bin` `runs` times (each on a new temporary data directory) with `extra` flags.
pub async fn run(bin: &Path, extra: &[String], runs: usize) -> anyhow::Result<StartupReport> {
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p taskmesh-node` or pass --node-bin",
            bin.display()
        );
    }
    let mut ready = Latency::new();
    let mut idle_rss_kib = Vec::with_capacity(runs);
    let mut startup_cpu_s = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (took, rss, cpu) = once(bin, extra).await?;
        ready.record(took);
        idle_rss_kib.push(rss);
        startup_cpu_s.push(cpu);
    }
    Ok(StartupReport {
        runs,
        ready_us: ready.summary(),
        idle_rss_kib,
        startup_cpu_s,
    })
}

/// One start: (spawn → ready, idle RSS in KiB, CPU seconds so far).
async fn once(bin: &Path, extra: &[String]) -> anyhow::Result<(Duration, u64, f64)> {
    let dir = tempfile::tempdir().context("creating a data directory")?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let target = Arc::new(Target::parse(&format!("http://{addr}"))?);
    let mut conn = Conn::new(target, Duration::from_secs(1))?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["node", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .args(extra)
        .env("TASKMESH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let mut child = KillOnDrop(child);
    loop {
        if let Ok(a) = conn.request(Method::GET, "/health/ready", None).await
            && a.status == 200
        {
            break;
        }
        if let Some(status) = child.0.try_wait()? {
            bail!("the node exited before it was ready: {status}");
        }
        if started.elapsed() > READY_WITHIN {
            bail!("the node was not ready within {READY_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let idle = procstat::sample(child.0.id())?;
    let cpu = (idle.utime + idle.stime) as f64 / procstat::clock_ticks() as f64;
    Ok((took, idle.rss_kib, cpu))
}
