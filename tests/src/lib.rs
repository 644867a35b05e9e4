//! Shared helpers of the black-box tests: start the real `taskmesh` binary on a free
//! loopback port, speak HTTP to it, kill it with real signals.
//!
//! The binary is looked up as `$TASKMESH_BIN`, or next to the test executable's target
//! directory (`target/<profile>/taskmesh`), which `cargo test --workspace` and
//! `cargo nextest run --workspace` build because the node package has integration tests
//! (`node/tests/cli.rs`).
//!
//! # Layout
//! - [`TestNode`]: one `taskmesh node` process (SIGKILL on drop), its HTTP client and
//!   the calls the tests make through it. Nodes run with API keys on (the default); the
//!   client sends an admin key on every request (see [`TestNode::api_key`]).
//! - [`Answer`]: an HTTP answer with its JSON body.
//! - [`eventually`]: poll a condition until it holds or a deadline passes (never a bare
//!   sleep for correctness); [`is_terminal`] for a status; [`metric`] and [`metric_sum`]
//!   read values out of the Prometheus text. These live in `taskmesh_actors::testing`,
//!   shared with the chaos runner, and are re-exported here.
//! - [`cluster`]: several nodes sharing a real `redis-server`, joined as a cluster.
//! - [`workers`]: an HTTP worker of external kinds, spoken call by call.
//! - [`tls`]: test certificates (a CA made with rcgen) and a TLS-only `redis-server`.
//!
//! Every wait has a deadline; the deadlines are generous because CI machines are slow,
//! and no test asserts that something happens *quickly* unless the product promises it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use taskmesh_actors::auth::key::ApiKey;
use tempfile::TempDir;
use tokio::time::Instant;

pub mod cluster;
pub mod tls;
pub mod workers;

pub use taskmesh_actors::testing::{eventually, is_terminal, metric, metric_sum};

/// How long a node may take to report ready after its process starts.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// How many times [`TestNode::restart`] tries a fresh port when the one it picked was
/// taken between [`free_port`] and the node's bind.
const BIND_ATTEMPTS: usize = 5;

/// Log lines of the node kept for error messages.
const LOG_TAIL: usize = 200;

/// Flags for a node with exactly one worker (the autoscaler pinned), so tests control
/// what runs and what waits.
pub const ONE_WORKER: &[&str] = &["--workers", "1", "--min-workers", "1", "--max-workers", "1"];

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

/// Path of the workspace example `name` (built by `cargo build --workspace
/// --all-targets`, or `cargo build -p taskmesh-node --examples`).
pub fn example_bin(name: &str) -> anyhow::Result<PathBuf> {
    let bin = taskmesh_bin()?
        .parent()
        .context("the taskmesh binary has no directory")?
        .join("examples")
        .join(name);
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build -p taskmesh-node --examples`",
            bin.display()
        );
    }
    Ok(bin)
}

/// A free loopback port (bound then released; the node binds it right after, and
/// [`TestNode::restart`] retries with another port if someone else was faster).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// An HTTP answer of the node.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body parsed as JSON; `Null` when it is empty or not JSON.
    pub body: Value,
}

impl Answer {
    /// `error.code` of an error answer, or `""`.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// `error.message` of an error answer, or `""`.
    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// The last lines a node wrote to stdout (its logs), shared with the thread that forwards them.
type LogTail = Arc<Mutex<VecDeque<String>>>;

/// A `taskmesh node` process, killed (SIGKILL) when dropped.
///
/// Its stdout (the logs) is forwarded to the test's stderr, prefixed with the node's
/// address, so a failing test shows what the node said.
pub struct TestNode {
    child: Option<Child>,
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// A command the binary is run under (e.g. `unshare ...`), empty for none.
    wrapper: Vec<String>,
    /// The binary, when not `taskmesh` (an example built on the node library).
    binary: Option<PathBuf>,
    /// An HTTP client with keep-alive, for requests the helpers do not cover. Once the
    /// node is ready it sends [`TestNode::api_key`] on every request (a request that sets
    /// its own `Authorization` header sends that one instead).
    pub http: reqwest::Client,
    /// The bootstrap admin key given to the process as `TASKMESH_ADMIN_KEY`, if any.
    admin_key: Option<String>,
    /// The key the client sends, read once the node is ready.
    api_key: Option<String>,
    /// `http`, or `https` for a node started by [`TestNode::start_https`].
    scheme: &'static str,
    /// The CA certificate the client trusts for an HTTPS node.
    ca: Option<reqwest::Certificate>,
    log: LogTail,
    // Declared last: dropped after the process is killed.
    _temp: Option<TempDir>,
}

impl TestNode {
    /// Starts a node with the test kernels on, storing in `data_dir`, with extra flags,
    /// and waits until it reports ready.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_in(data_dir.to_path_buf(), None, extra).await
    }

    /// Like [`TestNode::start`] in a fresh temporary directory, deleted with the node.
    pub async fn start_temp(extra: &[&str]) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        Self::start_in(temp.path().to_path_buf(), Some(temp), extra).await
    }

    /// Like [`TestNode::start_temp`], with the binary run under `wrapper` (a command
    /// that ends by exec-ing its arguments, so signals still reach the node).
    pub async fn start_wrapped(wrapper: &[String], extra: &[&str]) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let mut node = Self::unstarted(temp.path().to_path_buf(), Some(temp), extra)?;
        node.wrapper = wrapper.to_vec();
        node.restart().await?;
        Ok(node)
    }

    /// Like [`TestNode::start_temp`], running the workspace example `example` (a node
    /// built with `taskmesh_node::Node`, which takes the same flags) instead of `taskmesh`.
    pub async fn start_example(example: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let mut node = Self::unstarted(temp.path().to_path_buf(), Some(temp), extra)?;
        node.binary = Some(example_bin(example)?);
        node.restart().await?;
        Ok(node)
    }

    /// Like [`TestNode::start_temp`] (or [`TestNode::start_example`] with an example),
    /// with `admin_key` as the node's bootstrap admin key (`TASKMESH_ADMIN_KEY`).
    pub async fn start_keyed(
        example: Option<&str>,
        admin_key: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let mut node = Self::unstarted(temp.path().to_path_buf(), Some(temp), extra)?;
        if let Some(example) = example {
            node.binary = Some(example_bin(example)?);
        }
        node.admin_key = Some(admin_key.to_owned());
        node.restart().await?;
        Ok(node)
    }

    /// Like [`TestNode::start_temp`] for a node serving HTTPS (`extra` holds its
    /// `--tls-cert` and `--tls-key`): every helper speaks `https://` to it, trusting only
    /// the CA certificate in `ca` (PEM).
    pub async fn start_https(extra: &[&str], ca: &Path) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let mut node = Self::unstarted(temp.path().to_path_buf(), Some(temp), extra)?;
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca)?)?;
        node.http = client(None, Some(&ca))?;
        node.ca = Some(ca);
        node.scheme = "https";
        node.restart().await?;
        Ok(node)
    }

    async fn start_in(
        data_dir: PathBuf,
        temp: Option<TempDir>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut node = Self::unstarted(data_dir, temp, extra)?;
        node.restart().await?;
        Ok(node)
    }

    fn unstarted(data_dir: PathBuf, temp: Option<TempDir>, extra: &[&str]) -> anyhow::Result<Self> {
        let node = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
            wrapper: Vec::new(),
            binary: None,
            http: client(None, None)?,
            admin_key: shared_store(extra).then(|| ApiKey::generate().expose()),
            api_key: None,
            scheme: "http",
            ca: None,
            log: LogTail::default(),
            _temp: temp,
        };
        Ok(node)
    }

    /// Gives the node `key` as its bootstrap admin key (`TASKMESH_ADMIN_KEY`) from its
    /// next (re)start on; [`cluster::TestCluster`] gives one key to all its nodes.
    pub fn set_admin_key(&mut self, key: Option<String>) {
        self.admin_key = key;
    }

    /// The key [`TestNode::http`] sends: the bootstrap key given to the node
    /// ([`TestNode::set_admin_key`], or generated for a node on a shared Redis store,
    /// whose first start may find the store already holding another node's keys), else
    /// the file of `--admin-key-file`, else the `<data dir>/admin.key` the node wrote.
    /// `None` for a node with `--auth off`.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// An HTTP client that sends no key (for tests of what a keyless caller gets).
    pub fn anonymous(&self) -> anyhow::Result<reqwest::Client> {
        client(None, self.ca.as_ref())
    }

    /// A new HTTP client (its own connections) that sends [`TestNode::api_key`], like
    /// [`TestNode::http`].
    pub fn fresh_client(&self) -> anyhow::Result<reqwest::Client> {
        client(self.api_key.as_deref(), self.ca.as_ref())
    }

    /// Reads the key the node's client sends (see [`TestNode::api_key`]) and rebuilds
    /// the client with it.
    fn use_key(&mut self) -> anyhow::Result<()> {
        let key_file = self
            .args
            .iter()
            .position(|a| a == "--admin-key-file")
            .and_then(|i| self.args.get(i + 1))
            .map(PathBuf::from)
            .unwrap_or_else(|| self.data_dir.join("admin.key"));
        let key = match &self.admin_key {
            Some(key) => Some(key.clone()),
            None if auth_off(&self.args) => None,
            None => match std::fs::read_to_string(&key_file) {
                Ok(text) => Some(text.trim().to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).context(format!("reading {}", key_file.display())),
            },
        };
        self.http = client(key.as_deref(), self.ca.as_ref())?;
        self.api_key = key;
        Ok(())
    }

    /// (Re)starts the process on a fresh port with the same data directory and flags,
    /// and waits until it reports ready. A running process is SIGKILLed first.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        for _ in 0..BIND_ATTEMPTS {
            self.spawn()?;
            match self.wait_ready(READY_WITHIN).await {
                Ok(()) => return self.use_key(),
                // Another process took the port between `free_port` and the bind.
                Err(_) if self.child.is_none() && self.log_contains("binding the HTTP API") => {
                    continue;
                }
                Err(e) => return Err(e.context(self.log_excerpt())),
            }
        }
        bail!("no free port after {BIND_ATTEMPTS} attempts")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let port = free_port()?;
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let binary = match &self.binary {
            Some(binary) => binary.clone(),
            None => taskmesh_bin()?,
        };
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        match &self.admin_key {
            Some(key) => command.env("TASKMESH_ADMIN_KEY", key),
            None => command.env_remove("TASKMESH_ADMIN_KEY"),
        };
        let mut child = command
            .arg("node")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--test-kernels")
            .arg("--log-format")
            .arg("text")
            .args(&self.args)
            .env("TASKMESH_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning taskmesh")?;
        if let Some(stdout) = child.stdout.take() {
            self.log = LogTail::default();
            forward_logs(stdout, self.addr, Arc::clone(&self.log));
        }
        self.child = Some(child);
        Ok(())
    }

    fn log_contains(&self, needle: &str) -> bool {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().any(|l| l.contains(needle))
    }

    /// The node's last log lines (at most 200).
    pub fn log_lines(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().cloned().collect()
    }

    /// The node's last log lines, for error messages.
    pub fn log_excerpt(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let lines: Vec<&str> = log.iter().map(String::as_str).collect();
        format!("last log lines of {}:\n{}", self.addr, lines.join("\n"))
    }

    /// Polls `/health/ready` until 200 or the deadline; fails at once if the process
    /// exits.
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                // Let the forwarding thread catch up with the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
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

    /// `http://addr{path}` (`https://` for [`TestNode::start_https`]).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The process id, while the process runs.
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

    /// Waits for the process to exit and returns its exit code (`None` if a signal
    /// killed it).
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

    /// Sends a request built from [`TestNode::http`] and reads the answer.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Answer> {
        let r = request.send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// POSTs JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// POSTs raw bytes with the given content type to `path`.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<Answer> {
        let request = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.send(request).await
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(self.http.get(self.url(path))).await
    }

    /// DELETEs `path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(self.http.delete(self.url(path))).await
    }

    /// Submits one task; fails unless the node answers 202.
    pub async fn submit(&self, task: &Value) -> anyhow::Result<String> {
        let answer = self.post("/v1/tasks", task).await?;
        ensure!(
            answer.status == 202,
            "submit answered {}: {}",
            answer.status,
            answer.body
        );
        answer.body["id"]
            .as_str()
            .map(str::to_owned)
            .context("no id in the answer")
    }

    /// Submits a batch; fails unless the node answers 202 with one id per task.
    pub async fn submit_batch(&self, tasks: &[Value]) -> anyhow::Result<Vec<String>> {
        let answer = self
            .post("/v1/tasks/batch", &json!({ "tasks": tasks }))
            .await?;
        ensure!(
            answer.status == 202,
            "batch answered {}: {}",
            answer.status,
            answer.body
        );
        let ids: Vec<String> = answer.body["ids"]
            .as_array()
            .context("no ids in the answer")?
            .iter()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        ensure!(
            ids.len() == tasks.len(),
            "{} ids for {} tasks",
            ids.len(),
            tasks.len()
        );
        Ok(ids)
    }

    /// The task's view; fails unless the node answers 200.
    pub async fn task(&self, id: &str) -> anyhow::Result<Value> {
        let answer = self.get(&format!("/v1/tasks/{id}")).await?;
        ensure!(
            answer.status == 200,
            "GET task {id} answered {}: {}",
            answer.status,
            answer.body
        );
        Ok(answer.body)
    }

    /// `GET /v1/tasks?{query}`: the listed tasks; fails unless the node answers 200.
    pub async fn list(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        let answer = self.get(&format!("/v1/tasks?{query}")).await?;
        ensure!(
            answer.status == 200,
            "listing answered {}: {}",
            answer.status,
            answer.body
        );
        answer.body["tasks"]
            .as_array()
            .cloned()
            .context("no tasks in the listing")
    }

    /// Long-polls the task until it is terminal (deadline `within`); returns its view.
    pub async fn wait_terminal(&self, id: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let answer = self.get(&format!("/v1/tasks/{id}?wait_ms=2000")).await?;
            if answer.status == 200 && answer.body["status"].as_str().is_some_and(is_terminal) {
                return Ok(answer.body);
            }
            if Instant::now() > deadline {
                bail!(
                    "task {id} not terminal within {within:?}: {} {}",
                    answer.status,
                    answer.body
                );
            }
        }
    }

    /// Waits until every task is terminal; returns their views in the same order.
    pub async fn wait_all_terminal(
        &self,
        ids: &[String],
        within: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + within;
        let mut views = Vec::with_capacity(ids.len());
        for id in ids {
            let left = deadline.saturating_duration_since(Instant::now());
            views.push(self.wait_terminal(id, left).await?);
        }
        Ok(views)
    }

    /// Polls the task until it has `status` (e.g. `running`); returns its view.
    pub async fn wait_status(
        &self,
        id: &str,
        status: &str,
        within: Duration,
    ) -> anyhow::Result<Value> {
        eventually(within, &format!("task {id} is {status}"), || async {
            let view = self.task(id).await?;
            Ok((view["status"] == status).then_some(view))
        })
        .await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let r = self.http.get(self.url("/metrics")).send().await?;
        ensure!(r.status() == 200, "/metrics answered {}", r.status());
        Ok(r.text().await?)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `args` turn authentication off.
fn auth_off(args: &[String]) -> bool {
    args.windows(2).any(|w| w[0] == "--auth" && w[1] == "off")
        || args.iter().any(|a| a == "--auth=off")
}

/// Whether a node with `args` uses a Redis store (shared with other nodes, so its first
/// start may find keys it did not make and write no `admin.key`) and takes its admin key
/// from nowhere else: such a node is given a key of its own.
fn shared_store(args: &[&str]) -> bool {
    let owned: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let redis = args
        .windows(2)
        .any(|w| w[0] == "--store" && w[1].starts_with("redis"))
        || args.iter().any(|a| a.starts_with("--store=redis"));
    redis && !auth_off(&owned) && !args.contains(&"--admin-key-file")
}

/// An HTTP client with keep-alive that sends `key`, if given, on every request.
fn client(key: Option<&str>, ca: Option<&reqwest::Certificate>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        builder = builder.tls_certs_only([ca.clone()]);
    }
    if let Some(key) = key {
        let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
            .context("the API key is not valid in a header")?;
        value.set_sensitive(true);
        builder = builder.default_headers(HeaderMap::from_iter([(AUTHORIZATION, value)]));
    }
    Ok(builder.build()?)
}

/// Copies the node's stdout (its logs) line by line to our stderr (prefixed) and into
/// `tail`.
fn forward_logs(stdout: ChildStdout, addr: SocketAddr, tail: LogTail) {
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[node {addr}] {line}");
            let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
}
