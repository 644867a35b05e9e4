//! The compose backend: the project's own `compose/docker-compose.yml`, brought up with
//! `--scale node=N` under a project name of its own, faults through the Docker CLI.
//!
//! Nodes talk to each other on the `mesh` network and to Redis on the `store` network,
//! so `docker network disconnect` cuts one without the other. The host port is published
//! through `mesh`: a node cut off from its peers does not answer HTTP either (a
//! partition, seen from outside), and may come back on another port of the range.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use tokio::process::Command;

use super::Backend;
use crate::client::Api;
use crate::scenario::Cut;

/// How long a node may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// Settings of the compose backend.
#[derive(Clone, Debug)]
pub struct ComposeConfig {
    /// The compose command, e.g. `docker compose` or `docker-compose`.
    pub command: Vec<String>,
    /// The project name (containers, networks and volumes are prefixed with it).
    pub project: String,
    /// The compose file.
    pub file: PathBuf,
    /// The host port range of the nodes (`TASKMESH_PORTS`).
    pub ports: String,
    /// Leave the project running after the run.
    pub keep: bool,
}

/// A compose project.
pub struct Compose {
    config: ComposeConfig,
    api: Api,
    cookie: String,
    containers: Vec<String>,
    urls: Vec<String>,
    cuts: Vec<Vec<Cut>>,
}

impl Compose {
    /// A backend that has started nothing yet.
    pub fn new(config: ComposeConfig, api: Api) -> Self {
        let cookie = format!("chaos-{:016x}", rand::random::<u64>());
        Self {
            config,
            api,
            cookie,
            containers: Vec::new(),
            urls: Vec::new(),
            cuts: Vec::new(),
        }
    }

    async fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        let (program, first) = self
            .config
            .command
            .split_first()
            .context("empty compose command")?;
        let dir = self
            .config
            .file
            .parent()
            .context("compose file has no directory")?;
        let mut command = Command::new(program);
        command
            .args(first)
            .args(["-p", &self.config.project, "--project-directory"])
            .arg(dir)
            .arg("-f")
            .arg(&self.config.file)
            .args(args)
            .env("TASKMESH_CLUSTER_COOKIE", &self.cookie)
            .env("TASKMESH_ADMIN_KEY", self.api.admin_key())
            .env("TASKMESH_PORTS", &self.config.ports);
        run(
            command,
            &format!("{} {}", self.config.command.join(" "), args.join(" ")),
        )
        .await
    }

    async fn docker(args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new("docker");
        command.args(args);
        run(command, &format!("docker {}", args.join(" "))).await
    }

    /// The project's containers of `service`, sorted by name.
    async fn service_containers(&self, service: &str) -> anyhow::Result<Vec<String>> {
        let project = format!("label=com.docker.compose.project={}", self.config.project);
        let service = format!("label=com.docker.compose.service={service}");
        let out = Self::docker(&[
            "ps",
            "-a",
            "--filter",
            &project,
            "--filter",
            &service,
            "--format",
            "{{.Names}}",
        ])
        .await?;
        let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
        names.sort();
        Ok(names)
    }

    async fn url_of(container: &str) -> anyhow::Result<String> {
        let out = Self::docker(&["port", container, "8080/tcp"]).await?;
        let port = out
            .lines()
            .find_map(|line| line.rsplit_once(':').map(|(_, p)| p.trim().to_owned()))
            .with_context(|| format!("{container} publishes no port for 8080"))?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// Learns node `i`'s host port again (a restart may draw another from the range) and
    /// waits until it is ready.
    async fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        while tokio::time::Instant::now() < deadline {
            if let Ok(url) = Self::url_of(&self.containers[i]).await
                && self.api.ready(&url).await
            {
                self.urls[i] = url;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("{} not ready within {READY_WITHIN:?}", self.containers[i])
    }

    fn container(&self, i: usize) -> anyhow::Result<&str> {
        self.containers
            .get(i)
            .map(String::as_str)
            .with_context(|| format!("no node {i}"))
    }

    fn network(&self, cut: Cut) -> String {
        let net = match cut {
            Cut::Peers => "mesh",
            Cut::Redis => "store",
        };
        format!("{}_{net}", self.config.project)
    }

    async fn adopt_new_containers(&mut self) -> anyhow::Result<Vec<usize>> {
        let mut added = Vec::new();
        for name in self.service_containers("node").await? {
            if !self.containers.contains(&name) {
                self.containers.push(name);
                self.urls.push(String::new());
                self.cuts.push(Vec::new());
                added.push(self.containers.len() - 1);
            }
        }
        for &i in &added {
            self.wait_ready(i).await?;
        }
        Ok(added)
    }
}

async fn run(mut command: Command, what: &str) -> anyhow::Result<String> {
    let out = command
        .output()
        .await
        .with_context(|| format!("running `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[async_trait]
impl Backend for Compose {
    fn name(&self) -> &'static str {
        "compose"
    }

    fn api(&self) -> Api {
        self.api.clone()
    }

    async fn start(&mut self, nodes: usize) -> anyhow::Result<()> {
        self.compose(&["down", "-v", "--remove-orphans"]).await?;
        let scale = format!("node={nodes}");
        self.compose(&["up", "-d", "--scale", &scale, "redis", "node"])
            .await?;
        let added = self.adopt_new_containers().await?;
        if added.len() != nodes {
            bail!("expected {nodes} node containers, found {}", added.len());
        }
        Ok(())
    }

    fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        Self::docker(&["kill", "-s", "KILL", self.container(i)?]).await?;
        Ok(())
    }

    async fn terminate(&mut self, i: usize) -> anyhow::Result<()> {
        Self::docker(&["stop", "-t", "40", self.container(i)?]).await?;
        Ok(())
    }

    async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        Self::docker(&["start", self.container(i)?]).await?;
        self.wait_ready(i).await
    }

    async fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        Self::docker(&["pause", self.container(i)?]).await?;
        Ok(())
    }

    async fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        Self::docker(&["unpause", self.container(i)?]).await?;
        Ok(())
    }

    async fn partition(&mut self, i: usize, from: Cut) -> anyhow::Result<()> {
        let container = self.container(i)?.to_owned();
        Self::docker(&["network", "disconnect", &self.network(from), &container]).await?;
        self.cuts[i].push(from);
        Ok(())
    }

    async fn heal(&mut self, i: usize) -> anyhow::Result<()> {
        let container = self.container(i)?.to_owned();
        for cut in std::mem::take(&mut self.cuts[i]) {
            let network = self.network(cut);
            let alias = match cut {
                Cut::Peers => "peers",
                Cut::Redis => "node",
            };
            Self::docker(&["network", "connect", "--alias", alias, &network, &container]).await?;
        }
        // Reconnecting the network that publishes the port may draw another host port.
        self.wait_ready(i).await
    }

    async fn restart_redis(&mut self) -> anyhow::Result<()> {
        let redis = self.service_containers("redis").await?;
        let name = redis.first().context("no redis container")?;
        Self::docker(&["restart", "-t", "30", name]).await?;
        Ok(())
    }

    async fn add_node(&mut self) -> anyhow::Result<usize> {
        let count = self.service_containers("node").await?.len();
        let scale = format!("node={}", count + 1);
        self.compose(&["up", "-d", "--no-recreate", "--scale", &scale, "node"])
            .await?;
        let added = self.adopt_new_containers().await?;
        added
            .first()
            .copied()
            .context("scaling up started no container")
    }

    fn store_url(&self) -> Option<String> {
        None
    }

    fn logs_hint(&self) -> String {
        format!(
            "`{} -p {} logs node` (while the project runs; --keep leaves it up)",
            self.config.command.join(" "),
            self.config.project
        )
    }

    async fn shutdown(&mut self) {
        // Paused containers cannot be removed; thaw them first.
        for name in &self.containers {
            let _ = Self::docker(&["unpause", name]).await;
        }
        if !self.config.keep {
            let _ = self.compose(&["down", "-v", "--remove-orphans"]).await;
        }
    }
}
