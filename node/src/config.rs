//! The command line and environment of `taskmesh`, and the validated [`NodeConfig`]
//! built from them.
//!
//! # Layout
//! - `args`: the flags ([`Cli`], [`NodeArgs`]) as clap parses them from the command
//!   line and the `TASKMESH_*` environment.
//! - this module: [`NodeConfig`], which checks the flags and aggregates what each part
//!   of the node needs; the store ([`StoreKind`]), the workers and the leases.
//! - `cluster`: the cluster flags checked into [`ClusterSettings`].
//! - [`server`]: the HTTP server's bounds and the shutdown's drain period.
//! - [`rate_limit`]: the rate limits per API key and per client IP.
//! - `store`: `--store` ([`StoreKind`]) and [`RedisUrl`], whose password is never shown.
//! - [`tls`]: HTTPS, mutual TLS between nodes and the Redis CA ([`tls::TlsSettings`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use taskmesh_actors::auth::key::ApiKey;

mod args;
mod cluster;
pub mod rate_limit;
pub mod server;
mod store;
#[cfg(test)]
mod tests;
pub mod tls;

pub use args::{AuthMode, Cli, Command, LogFormat, MetricsAuth, NodeArgs, Secret};
pub use cluster::ClusterSettings;
use cluster::{check_forget, cluster_settings, heartbeat_settings};
use rate_limit::RateLimitSettings;
use server::ServerSettings;
pub use store::{RedisUrl, StoreKind};
use tls::TlsSettings;

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// HTTP API address.
    pub listen: SocketAddr,
    /// Embedded store directory.
    pub data_dir: PathBuf,
    /// Which task store to use.
    pub store: StoreKind,
    /// Embedded store page cache, in bytes.
    pub store_cache_bytes: usize,
    /// This node's id.
    pub node_id: String,
    /// Initial worker count.
    pub workers: usize,
    /// Autoscaler lower bound.
    pub min_workers: usize,
    /// Autoscaler upper bound.
    pub max_workers: usize,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Resource labels.
    pub labels: Vec<String>,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Params limit.
    pub max_params_bytes: usize,
    /// Limit of a result reported by an HTTP worker.
    pub max_result_bytes: usize,
    /// How long finished records are kept.
    pub result_ttl: Duration,
    /// Grace period for running tasks on shutdown.
    pub shutdown_grace: Duration,
    /// Autoscaler cool-down.
    pub scale_down_after: Duration,
    /// Whether test-only kernels are registered.
    pub test_kernels: bool,
    /// Kinds run by worker processes over HTTP.
    pub external_kinds: Vec<String>,
    /// How long an HTTP worker keeps its leases without a sign of life.
    pub worker_lease: Duration,
    /// Cluster membership; `None` for a node on its own.
    pub cluster: Option<ClusterSettings>,
    /// How long the node's lease on its tasks lasts without renewal.
    pub lease_ttl: Duration,
    /// How often the lease is renewed (and readiness checked).
    pub lease_renew: Duration,
    /// How long a peer's renewal counter must stand still, after its session closed,
    /// before its tasks are claimed.
    pub claim_after: Duration,
    /// HTTP server bounds, drain period, cluster handshake timeout.
    pub server: ServerSettings,
    /// API keys: whether they are asked for, and the bootstrap admin key.
    pub auth: AuthSettings,
    /// Rate limits per key and per client IP (enforced with `--auth on`).
    pub rate_limits: RateLimitSettings,
    /// HTTPS, TLS between nodes, the Redis CA.
    pub tls: TlsSettings,
}

/// API-key settings (`--auth`, `TASKMESH_ADMIN_KEY`, `--admin-key-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// Whether requests need a key.
    pub enabled: bool,
    /// Whether `GET /metrics` needs a key with `read` (only when `enabled`).
    pub protect_metrics: bool,
    /// Where the bootstrap admin key comes from, if configured.
    pub admin_key: Option<AdminKeySource>,
}

/// Where the bootstrap admin key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminKeySource {
    /// `TASKMESH_ADMIN_KEY`, already checked to be well-formed.
    Env(ApiKey),
    /// `--admin-key-file`, read at start.
    File(PathBuf),
}

fn auth_settings(a: &NodeArgs) -> anyhow::Result<AuthSettings> {
    let admin_key = match (&a.admin_key, &a.admin_key_file) {
        (Some(_), Some(_)) => bail!("set TASKMESH_ADMIN_KEY or --admin-key-file, not both"),
        (Some(Secret(key)), None) => Some(AdminKeySource::Env(key.trim().parse().map_err(
            |_| anyhow::anyhow!("TASKMESH_ADMIN_KEY is not a well-formed key (tm_<12 chars>_<32 chars>, lowercase letters and digits; `taskmesh keys generate` prints one)"),
        )?)),
        (None, Some(path)) => Some(AdminKeySource::File(path.clone())),
        (None, None) => None,
    };
    Ok(AuthSettings {
        enabled: a.auth == AuthMode::On,
        protect_metrics: a.metrics_auth == MetricsAuth::On,
        admin_key,
    })
}

/// The `--external-kinds`, trimmed, without empty entries; each a plain name.
fn external_kinds(kinds: Vec<String>) -> anyhow::Result<Vec<String>> {
    let kinds: Vec<String> = kinds
        .into_iter()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .collect();
    for kind in &kinds {
        let plain = kind.len() <= 64
            && kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        anyhow::ensure!(
            plain,
            "--external-kinds: `{kind}` is not a kind name (letters, digits, `_`, `-`, `.`; at most 64)"
        );
    }
    Ok(kinds)
}

/// `--worker-lease-ms`, checked: long enough for a heartbeat over a slow link.
fn worker_lease(ms: u64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        (500..=600_000).contains(&ms),
        "--worker-lease-ms must lie between 500 and 600000 (got {ms})"
    );
    Ok(Duration::from_millis(ms))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `--claim-after-ms`, or its default (2 × `--lease-renew-ms`), checked: at least two
/// renewal periods (a live node's counter moves in any such window, even with one late
/// renewal) and at most the lease (past it the lapse decides anyway).
fn claim_after(a: &NodeArgs) -> anyhow::Result<Duration> {
    let ms = a.claim_after_ms.unwrap_or(2 * a.lease_renew_ms);
    if ms < 2 * a.lease_renew_ms || ms > a.lease_ttl_ms {
        bail!(
            "--claim-after-ms must be between 2 × --lease-renew-ms ({}) and --lease-ttl-ms \
             ({}), got {ms}",
            2 * a.lease_renew_ms,
            a.lease_ttl_ms
        );
    }
    Ok(Duration::from_millis(ms))
}

/// `<hostname>-<HTTP port>`: unique per host for nodes on distinct ports, and the same
/// after a restart, so a restarted node takes back the tasks it owned in a shared store.
fn default_node_id(listen: SocketAddr) -> String {
    format!("{}-{}", hostname(), listen.port())
}

impl TryFrom<NodeArgs> for NodeConfig {
    type Error = anyhow::Error;

    fn try_from(a: NodeArgs) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = a.workers.unwrap_or(2 * cores);
        let min_workers = a.min_workers.unwrap_or(cores.min(workers));
        let max_workers = a.max_workers.unwrap_or((8 * cores).max(workers));
        if workers == 0 || min_workers == 0 {
            bail!("--workers and --min-workers must be at least 1");
        }
        if !(min_workers <= workers && workers <= max_workers) {
            bail!(
                "need --min-workers ≤ --workers ≤ --max-workers, got {min_workers} ≤ {workers} ≤ {max_workers}"
            );
        }
        if !(100..=10_000).contains(&a.lease_renew_ms) {
            bail!("--lease-renew-ms must be between 100 and 10000");
        }
        if a.lease_ttl_ms < 1000 || a.lease_ttl_ms < 2 * a.lease_renew_ms {
            bail!(
                "--lease-ttl-ms must be at least 1000 and at least twice --lease-renew-ms \
                 ({}), so one late renewal does not lose the node's tasks",
                a.lease_renew_ms
            );
        }
        heartbeat_settings(&a)?;
        let claim_after = claim_after(&a)?;
        check_forget(&a)?;
        if a.queue_capacity == 0 {
            bail!("--queue-capacity must be at least 1");
        }
        if a.max_params_bytes > a.max_body_bytes {
            bail!("--max-params-bytes cannot exceed --max-body-bytes");
        }
        let cluster = cluster_settings(&a)?;
        let server = ServerSettings::try_from(&a.server)?;
        let auth = auth_settings(&a)?;
        let rate_limits = RateLimitSettings::try_from(&a.rate_limits)?;
        let store: StoreKind = a.store.0.parse()?;
        let rediss = matches!(&store, StoreKind::Redis(url) if url.is_tls());
        let tls = TlsSettings::check(&a.tls, cluster.is_some(), rediss)?;
        let node_id = a.node_id.unwrap_or_else(|| default_node_id(a.listen));
        if node_id.is_empty() || node_id.contains('/') {
            bail!("--node-id must be non-empty and contain no '/'");
        }
        let labels = a
            .labels
            .into_iter()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        Ok(Self {
            listen: a.listen,
            data_dir: a.data_dir,
            store,
            store_cache_bytes: a.store_cache_mb.saturating_mul(1 << 20).max(1 << 20),
            node_id,
            workers,
            min_workers,
            max_workers,
            queue_capacity: a.queue_capacity,
            labels,
            max_body_bytes: a.max_body_bytes,
            max_params_bytes: a.max_params_bytes,
            max_result_bytes: a.max_result_bytes,
            result_ttl: Duration::from_secs(a.result_ttl_secs),
            shutdown_grace: Duration::from_secs(a.shutdown_grace_secs),
            scale_down_after: Duration::from_secs(a.scale_down_after_secs),
            test_kernels: a.test_kernels,
            external_kinds: external_kinds(a.external_kinds)?,
            worker_lease: worker_lease(a.worker_lease_ms)?,
            cluster,
            lease_ttl: Duration::from_millis(a.lease_ttl_ms),
            lease_renew: Duration::from_millis(a.lease_renew_ms),
            claim_after,
            server,
            auth,
            rate_limits,
            tls,
        })
    }
}

impl NodeConfig {
    /// A configuration for tests: loopback on a free port, data in `data_dir`, no drain
    /// period.
    pub fn for_test(data_dir: PathBuf) -> anyhow::Result<Self> {
        let mut args = NodeArgs::try_parse_from(["node"]).context("default args")?;
        args.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        args.data_dir = data_dir;
        args.test_kernels = true;
        args.server.drain_ms = 0;
        args.try_into()
    }
}
