//! The loopback backend: a durable `redis-server` and `taskmesh` processes on 127.0.0.1,
//! no Docker needed.
//!
//! Every node reaches Redis through a [`Link`] of its own, and each pair of nodes talks
//! through one [`Link`] (the higher-numbered node dials the lower one, so a pair has
//! exactly one session). Cutting a node's links partitions it without touching the
//! process: no reset, just silence.

use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use taskmesh_actors::store::redis::testing::RedisServer;
use tokio::process::{Child, Command};

use super::Backend;
use crate::client::Api;
use crate::proxy::Link;
use crate::scenario::Cut;

/// The cookie of a loopback cluster (nothing else listens on its links).
const COOKIE: &str = "chaos-loopback";

/// How long a node may take to become ready, and a terminated one to exit.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Settings of the loopback backend.
#[derive(Clone, Debug)]
pub struct LoopbackConfig {
    /// The `taskmesh` binary.
    pub bin: PathBuf,
    /// Where data directories and logs go.
    pub work_dir: PathBuf,
    /// Extra flags for every node.
    pub node_args: Vec<String>,
}

/// One local node.
struct LocalNode {
    id: String,
    http: SocketAddr,
    cluster: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    /// Its way to Redis.
    redis_link: Link,
    /// Links it dials: to every lower-numbered node, by that node's index.
    dials: Vec<(usize, Link)>,
    child: Option<Child>,
}

/// Local processes on loopback.
pub struct Loopback {
    config: LoopbackConfig,
    api: Api,
    redis: Option<RedisServer>,
    nodes: Vec<LocalNode>,
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Loopback {
    /// A backend that has started nothing yet.
    pub fn new(config: LoopbackConfig, api: Api) -> Self {
        Self {
            config,
            api,
            redis: None,
            nodes: Vec::new(),
        }
    }

    fn redis(&self) -> anyhow::Result<&RedisServer> {
        self.redis.as_ref().context("redis-server is not started")
    }

    fn node(&mut self, i: usize) -> anyhow::Result<&mut LocalNode> {
        self.nodes
            .get_mut(i)
            .with_context(|| format!("no node {i}"))
    }

    fn pid(&mut self, i: usize) -> anyhow::Result<Pid> {
        let node = self.node(i)?;
        let pid = node
            .child
            .as_ref()
            .and_then(Child::id)
            .with_context(|| format!("node {} is not running", node.id))?;
        Ok(Pid::from_raw(i32::try_from(pid)?))
    }

    fn signal(&mut self, i: usize, signal: Signal) -> anyhow::Result<()> {
        let pid = self.pid(i)?;
        kill(pid, signal).with_context(|| format!("sending {signal} to node {i}"))
    }

    /// Every link that carries node `i`'s peer traffic, either way.
    fn peer_links(&self, i: usize) -> impl Iterator<Item = &Link> {
        self.nodes.iter().enumerate().flat_map(move |(j, node)| {
            node.dials
                .iter()
                .filter(move |(to, _)| j == i || *to == i)
                .map(|(_, link)| link)
        })
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let peers: Vec<String> = node
            .dials
            .iter()
            .map(|(_, l)| l.addr().to_string())
            .collect();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        let mut command = Command::new(&self.config.bin);
        command
            .arg("node")
            .args(["--node-id", &node.id])
            .args(["--listen", &node.http.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--store", &format!("redis://{}/0", node.redis_link.addr())])
            .args(["--cluster-listen", &node.cluster.to_string()])
            .args(["--advertise", &node.cluster.to_string()])
            .args(["--cluster-cookie", COOKIE])
            .args(["--log-format", "json"])
            .env("TASKMESH_ADMIN_KEY", self.api.admin_key());
        if !peers.is_empty() {
            command.args(["--peers", &peers.join(",")]);
        }
        let child = command
            .args(&self.config.node_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", self.config.bin.display()))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let url = format!("http://{}", self.nodes[i].http);
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        while tokio::time::Instant::now() < deadline {
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "node {} exited ({status}) while starting; see {}",
                    self.nodes[i].id,
                    self.nodes[i].log.display()
                );
            }
            if self.api.ready(&url).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "node {} not ready within {READY_WITHIN:?}",
            self.nodes[i].id
        )
    }

    async fn new_node(&mut self) -> anyhow::Result<usize> {
        let i = self.nodes.len();
        let redis = SocketAddr::from(([127, 0, 0, 1], self.redis()?.port()));
        let mut dials = Vec::with_capacity(i);
        for (j, other) in self.nodes.iter().enumerate() {
            dials.push((j, Link::start(other.cluster).await?));
        }
        let id = format!("c{}", i + 1);
        let data_dir = self.config.work_dir.join(&id);
        std::fs::create_dir_all(&data_dir)?;
        self.nodes.push(LocalNode {
            log: self.config.work_dir.join(format!("{id}.log")),
            id,
            http: free_addr()?,
            cluster: free_addr()?,
            data_dir,
            redis_link: Link::start(redis).await?,
            dials,
            child: None,
        });
        self.spawn(i)?;
        self.wait_ready(i).await?;
        Ok(i)
    }
}

#[async_trait]
impl Backend for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn api(&self) -> Api {
        self.api.clone()
    }

    async fn start(&mut self, nodes: usize) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.config.work_dir)?;
        let redis = tokio::task::spawn_blocking(RedisServer::start_durable)
            .await?
            .context("starting redis-server (is it installed?)")?;
        self.redis = Some(redis);
        for _ in 0..nodes {
            self.new_node().await?;
        }
        Ok(())
    }

    fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.http))
            .collect()
    }

    async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.node(i)?;
        if let Some(mut child) = node.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    async fn terminate(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::SIGTERM)?;
        let node = self.node(i)?;
        let id = node.id.clone();
        if let Some(mut child) = node.child.take() {
            let status = tokio::time::timeout(READY_WITHIN, child.wait())
                .await
                .with_context(|| format!("node {id} did not exit after SIGTERM"))??;
            if !status.success() {
                bail!("node {id} exited {status} after SIGTERM, not 0");
            }
        }
        Ok(())
    }

    async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        if self.node(i)?.child.is_some() {
            bail!("node {i} is still running");
        }
        self.spawn(i)?;
        self.wait_ready(i).await
    }

    async fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::SIGSTOP)
    }

    async fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, Signal::SIGCONT)
    }

    async fn partition(&mut self, i: usize, from: Cut) -> anyhow::Result<()> {
        match from {
            Cut::Peers => self.peer_links(i).for_each(Link::cut),
            Cut::Redis => self.node(i)?.redis_link.cut(),
        }
        Ok(())
    }

    async fn heal(&mut self, i: usize) -> anyhow::Result<()> {
        self.peer_links(i).for_each(Link::heal);
        self.node(i)?.redis_link.heal();
        Ok(())
    }

    async fn restart_redis(&mut self) -> anyhow::Result<()> {
        let mut redis = self.redis.take().context("redis-server is not started")?;
        let (redis, result) = tokio::task::spawn_blocking(move || {
            let result = redis.restart();
            (redis, result)
        })
        .await?;
        self.redis = Some(redis);
        result.context("restarting redis-server")
    }

    async fn add_node(&mut self) -> anyhow::Result<usize> {
        self.new_node().await
    }

    fn store_url(&self) -> Option<String> {
        self.redis.as_ref().map(RedisServer::url)
    }

    fn logs_hint(&self) -> String {
        format!("{}/c<N>.log", self.config.work_dir.display())
    }

    async fn shutdown(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                // A paused process must be thawed to die of SIGKILL promptly on every kernel.
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                }
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        if let Some(mut redis) = self.redis.take() {
            let _ = tokio::task::spawn_blocking(move || redis.kill()).await;
        }
    }
}

/// The `taskmesh` binary next to this executable (`target/<profile>/`), or next to the
/// test binary's directory (`target/<profile>/deps/`).
pub fn sibling_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dirs = [exe.parent(), exe.parent().and_then(Path::parent)];
    dirs.into_iter()
        .flatten()
        .map(|dir| dir.join("taskmesh"))
        .find(|bin| bin.exists())
        .context("no taskmesh binary next to this one: build it (cargo build -p taskmesh-node) or pass --taskmesh-bin")
}
