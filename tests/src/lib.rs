//! Shared helpers of the black-box tests: start the real `taskmesh` binary on a free
//! loopback port, speak HTTP to it, kill it with real signals.
//!
//! The binary is looked up as `$TASKMESH_BIN`, or next to the test executable's target
//! directory (`target/<profile>/taskmesh`), which `cargo test --workspace` and
//! `cargo nextest run --workspace` build because the node package has integration tests.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::time::Instant;

/// Path of the `taskmesh` binary under test.
pub fn taskmesh_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("TASKMESH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target directory")?;
    let bin = profile_dir.join("taskmesh");
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build -p taskmesh-node` or set TASKMESH_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// A free loopback port (bound then released; the node binds it right after).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `taskmesh node` process, killed (SIGKILL) when dropped.
pub struct TestNode {
    child: Option<Child>,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// An HTTP client with keep-alive.
    pub http: reqwest::Client,
}

impl TestNode {
    /// Starts a node with the test kernels on, storing in `data_dir`, with extra flags,
    /// and waits until it reports ready.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let mut node = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_path_buf(),
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        };
        node.restart().await?;
        Ok(node)
    }

    /// (Re)starts the process on a fresh port with the same data directory and flags.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let port = free_port()?;
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(taskmesh_bin()?)
            .arg("node")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--test-kernels")
            .args(&self.args)
            .env("TASKMESH_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .context("spawning taskmesh")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30)).await
    }

    /// Polls `/health/ready` until 200 or the deadline.
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("taskmesh exited before becoming ready: {status}");
            }
            if let Ok(r) = self.http.get(self.url("/health/ready")).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("node at {} not ready within {within:?}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("not running")?;
        kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
        Ok(())
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().context("not running")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!("process did not exit within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs JSON to `path`; returns status and parsed body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self.http.post(self.url(path)).json(body).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// GETs `path`; returns status and parsed body.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self.http.get(self.url(path)).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Submits one task; fails unless the node answers 202.
    pub async fn submit(&self, task: &Value) -> anyhow::Result<String> {
        let (status, body) = self.post("/v1/tasks", task).await?;
        if status != 202 {
            bail!("submit answered {status}: {body}");
        }
        body["id"]
            .as_str()
            .map(str::to_owned)
            .context("no id in the answer")
    }

    /// Long-polls the task until it is terminal (deadline `within`); returns its view.
    pub async fn wait_terminal(&self, id: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.get(&format!("/v1/tasks/{id}?wait_ms=2000")).await?;
            if status == 200
                && matches!(
                    body["status"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                )
            {
                return Ok(body);
            }
            if Instant::now() > deadline {
                bail!("task {id} not terminal within {within:?}: {status} {body}");
            }
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The value of a metric line in Prometheus text (`name{labels} value`), summed over
/// every line whose name and labels start with `prefix`.
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
