//! The command line and environment of `taskmesh`, and the validated [`NodeConfig`]
//! built from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use taskmesh_cluster::breaker::BreakerConfig;
use taskmesh_cluster::detector::DetectorConfig;
use taskmesh_cluster::discovery::{Discovery, DnsTarget, Peer};

pub mod server;

use server::{ServerArgs, ServerSettings};

/// taskmesh: a distributed task-processing runtime in one binary.
#[derive(Debug, Parser)]
#[command(name = "taskmesh", version)]
pub struct Cli {
    /// What to do; `node` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: the HTTP API, the dispatcher and a pool of workers (the default).
    Node(NodeArgs),
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Pretty on a terminal, plain text lines otherwise.
    Auto,
    /// Human-readable, multi-line.
    Pretty,
    /// One line of text per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `taskmesh node`. Every flag can also be set by its `TASKMESH_*` variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "taskmesh node")]
pub struct NodeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "TASKMESH_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Directory of the embedded task store.
    #[arg(long, env = "TASKMESH_DATA_DIR", default_value = "./taskmesh-data")]
    pub data_dir: PathBuf,

    /// Task store: `embedded` (on --data-dir) or a Redis URL such as
    /// `redis://127.0.0.1:6379/0`.
    #[arg(long, env = "TASKMESH_STORE", default_value = "embedded")]
    pub store: String,

    /// Memory for the embedded store's page cache, in MiB.
    #[arg(long, env = "TASKMESH_STORE_CACHE_MB", default_value_t = 64)]
    pub store_cache_mb: usize,

    /// Unique id of this node, kept across restarts [default: <hostname>-<HTTP port>].
    #[arg(long, env = "TASKMESH_NODE_ID")]
    pub node_id: Option<String>,

    /// Workers started with the pool [default: 2 per CPU core].
    #[arg(long, env = "TASKMESH_WORKERS")]
    pub workers: Option<usize>,

    /// Fewest workers the autoscaler keeps [default: 1 per CPU core, at most --workers].
    #[arg(long, env = "TASKMESH_MIN_WORKERS")]
    pub min_workers: Option<usize>,

    /// Most workers the autoscaler runs [default: 8 per CPU core, at least --workers].
    #[arg(long, env = "TASKMESH_MAX_WORKERS")]
    pub max_workers: Option<usize>,

    /// Tasks that may wait in this node's queues; beyond it submissions get 503.
    #[arg(long, env = "TASKMESH_QUEUE_CAPACITY", default_value_t = 100_000)]
    pub queue_capacity: usize,

    /// Resource labels of this node, comma-separated (tasks with a `class` need one).
    #[arg(long, env = "TASKMESH_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Largest HTTP request body in bytes (413 above).
    #[arg(long, env = "TASKMESH_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,

    /// Largest `params` of one task in bytes (413 above).
    #[arg(long, env = "TASKMESH_MAX_PARAMS_BYTES", default_value_t = 256 << 10)]
    pub max_params_bytes: usize,

    /// Seconds a finished task's record is kept.
    #[arg(long, env = "TASKMESH_RESULT_TTL_SECS", default_value_t = 86_400)]
    pub result_ttl_secs: u64,

    /// Seconds running tasks get to finish on SIGTERM before the node exits anyway.
    #[arg(long, env = "TASKMESH_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Seconds workers must stand idle before the autoscaler removes them.
    #[arg(long, env = "TASKMESH_SCALE_DOWN_AFTER_SECS", default_value_t = 30)]
    pub scale_down_after_secs: u64,

    /// Log format.
    #[arg(long, env = "TASKMESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,taskmesh_actors=debug`).
    #[arg(long, env = "TASKMESH_LOG", default_value = "info")]
    pub log: String,

    /// Cluster: address of the node-to-node listener (ractor_cluster).
    #[arg(long, env = "TASKMESH_CLUSTER_LISTEN", default_value = "0.0.0.0:4697")]
    pub cluster_listen: SocketAddr,

    /// Cluster: the shared secret every node presents. Setting it (or --peers or
    /// --discover) makes this node join a cluster; clustering without it is refused.
    #[arg(long, env = "TASKMESH_CLUSTER_COOKIE", hide_env_values = true)]
    pub cluster_cookie: Option<String>,

    /// Cluster: HOST:PORT peers dial to reach this node [default: <hostname>:<cluster port>].
    #[arg(long, env = "TASKMESH_ADVERTISE")]
    pub advertise: Option<String>,

    /// Cluster: HOST:PORT of this node's HTTP API as shown to peers and in
    /// `GET /v1/cluster` [default: the --advertise host and the --listen port].
    #[arg(long, env = "TASKMESH_HTTP_ADVERTISE")]
    pub http_advertise: Option<String>,

    /// Cluster: peers to dial, comma-separated HOST:PORT.
    #[arg(long, env = "TASKMESH_PEERS", value_delimiter = ',')]
    pub peers: Vec<Peer>,

    /// Cluster: DNS names re-resolved every second, each `dns:NAME:PORT`
    /// (a compose service or Kubernetes headless service name); comma-separated.
    #[arg(long, env = "TASKMESH_DISCOVER", value_delimiter = ',')]
    pub discover: Vec<DnsTarget>,

    /// Cluster: consecutive failed dispatches that open a peer's circuit.
    #[arg(long, env = "TASKMESH_PEER_MAX_FAILS", default_value_t = 3)]
    pub peer_max_fails: u32,

    /// Cluster: seconds an open circuit keeps a peer out before a probe.
    #[arg(long, env = "TASKMESH_PEER_FAIL_TIMEOUT_SECS", default_value_t = 30)]
    pub peer_fail_timeout_secs: u64,

    /// Milliseconds this node's hold on its tasks in the store lasts without renewal.
    /// Once it lapses, any node claims the tasks.
    #[arg(long, env = "TASKMESH_LEASE_TTL_MS", default_value_t = 5000)]
    pub lease_ttl_ms: u64,

    /// Milliseconds between two renewals of this node's lease (one store round trip for
    /// all its tasks), also the period of the readiness checks of the store and the pool.
    #[arg(long, env = "TASKMESH_LEASE_RENEW_MS", default_value_t = 500)]
    pub lease_renew_ms: u64,

    /// Cluster: a peer whose session closed has its tasks claimed once its lease's
    /// renewal counter in the store has not moved for this many milliseconds (or its
    /// lease lapsed). Default: 2 × --lease-renew-ms. Between 2 × --lease-renew-ms and
    /// --lease-ttl-ms.
    #[arg(long, env = "TASKMESH_CLAIM_AFTER_MS")]
    pub claim_after_ms: Option<u64>,

    /// Cluster: a peer down for this many seconds is forgotten (gone from
    /// `GET /v1/cluster` and `taskmesh_peers`); it comes back as new if it returns.
    #[arg(long, env = "TASKMESH_FORGET_PEER_AFTER_SECS", default_value_t = 300)]
    pub forget_peer_after_secs: u64,

    /// Cluster: milliseconds between two heartbeats to each peer, and between two
    /// verdicts of the failure detector.
    #[arg(long, env = "TASKMESH_HEARTBEAT_INTERVAL_MS", default_value_t = 200)]
    pub heartbeat_interval_ms: u64,

    /// Cluster: a peer whose heartbeats stop for this many milliseconds is suspect and
    /// gets no new work. At least two heartbeat intervals.
    #[arg(long, env = "TASKMESH_SUSPECT_AFTER_MS", default_value_t = 1000)]
    pub suspect_after_ms: u64,

    /// Cluster: a peer whose heartbeats stop for this many milliseconds is down: no work
    /// goes to it (its tasks move only once its lease lapses). More than
    /// --suspect-after-ms.
    #[arg(long, env = "TASKMESH_DOWN_AFTER_MS", default_value_t = 2000)]
    pub down_after_ms: u64,

    /// Also register the test-only kernels (`panic`, `abort`, `fail`, `flaky`, `spin`). Never in
    /// production.
    #[arg(long, env = "TASKMESH_TEST_KERNELS")]
    pub test_kernels: bool,

    /// HTTP server bounds and shutdown.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The task store a node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// redb in `--data-dir`: the single-node default.
    Embedded,
    /// A Redis server (URL `redis://host:port/db`).
    Redis(String),
}

impl std::fmt::Display for StoreKind {
    /// The store for logs, with any password in a Redis URL hidden.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Embedded => f.write_str("embedded"),
            StoreKind::Redis(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    write!(f, "{}://***{}", &url[..scheme], &url[at..])
                }
                _ => f.write_str(url),
            },
        }
    }
}

impl std::str::FromStr for StoreKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "embedded" => Ok(StoreKind::Embedded),
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Ok(StoreKind::Redis(url.to_owned()))
            }
            other => bail!("--store must be `embedded` or a redis:// URL, got `{other}`"),
        }
    }
}

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
    /// How long finished records are kept.
    pub result_ttl: Duration,
    /// Grace period for running tasks on shutdown.
    pub shutdown_grace: Duration,
    /// Autoscaler cool-down.
    pub scale_down_after: Duration,
    /// Whether test-only kernels are registered.
    pub test_kernels: bool,
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
}

/// How a clustered node joins its peers.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Node-to-node listener.
    pub listen: SocketAddr,
    /// Shared secret.
    pub cookie: String,
    /// HOST:PORT peers dial.
    pub advertise: String,
    /// HOST:PORT of the HTTP API as peers see it.
    pub http_advertise: String,
    /// Where peers are.
    pub discovery: Discovery,
    /// Per-peer circuit breaker.
    pub breaker: BreakerConfig,
    /// Time between two heartbeats to each peer.
    pub heartbeat_interval: Duration,
    /// When a peer's silence makes it suspect, and down.
    pub detector: DetectorConfig,
    /// How long a peer stays down before it is forgotten.
    pub forget_peer_after: Duration,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The largest `params` a clustered node accepts: a quarter of ractor_cluster's 16 MiB
/// inbound frame limit, which tears down the whole session when exceeded.
const MAX_CLUSTER_PARAMS_BYTES: usize = 4 << 20;

/// The heartbeat interval and the failure detector's thresholds, checked.
fn heartbeat_settings(a: &NodeArgs) -> anyhow::Result<(Duration, DetectorConfig)> {
    let (interval, suspect, down) = (a.heartbeat_interval_ms, a.suspect_after_ms, a.down_after_ms);
    if !(10..=10_000).contains(&interval) {
        bail!("--heartbeat-interval-ms must be between 10 and 10000, got {interval}");
    }
    if suspect < 2 * interval {
        bail!(
            "--suspect-after-ms must be at least two heartbeat intervals \
             (2 × --heartbeat-interval-ms = {}), got {suspect}",
            2 * interval
        );
    }
    if down <= suspect {
        bail!("--down-after-ms must be more than --suspect-after-ms ({suspect}), got {down}");
    }
    Ok((
        Duration::from_millis(interval),
        DetectorConfig {
            suspect_after: Duration::from_millis(suspect),
            down_after: Duration::from_millis(down),
        },
    ))
}

fn cluster_settings(a: &NodeArgs) -> anyhow::Result<Option<ClusterSettings>> {
    let wants = a.cluster_cookie.is_some() || !a.peers.is_empty() || !a.discover.is_empty();
    if !wants {
        return Ok(None);
    }
    let Some(cookie) = a.cluster_cookie.clone().filter(|c| !c.is_empty()) else {
        bail!(
            "joining a cluster (--peers, --discover or --cluster-cookie) needs a non-empty \
             shared secret: set --cluster-cookie or TASKMESH_CLUSTER_COOKIE on every node"
        );
    };
    if a.store == "embedded" {
        bail!(
            "a cluster needs a shared task store: pass --store redis://HOST:PORT/DB \
             (the embedded store is private to one node)"
        );
    }
    if a.max_params_bytes > MAX_CLUSTER_PARAMS_BYTES {
        bail!(
            "--max-params-bytes is at most {MAX_CLUSTER_PARAMS_BYTES} on a clustered node: \
             tasks travel between nodes in frames that peers refuse above 16 MiB"
        );
    }
    if a.peer_max_fails == 0 {
        bail!("--peer-max-fails must be at least 1");
    }
    let advertise = match &a.advertise {
        Some(adv) => {
            adv.parse::<Peer>()
                .map_err(|_| anyhow::anyhow!("--advertise must be HOST:PORT, got `{adv}`"))?;
            adv.clone()
        }
        None => format!("{}:{}", hostname(), a.cluster_listen.port()),
    };
    let host = advertise.rsplit_once(':').map_or("localhost", |(h, _)| h);
    let http_advertise = match &a.http_advertise {
        Some(h) => {
            h.parse::<Peer>()
                .map_err(|_| anyhow::anyhow!("--http-advertise must be HOST:PORT, got `{h}`"))?;
            h.clone()
        }
        None => format!("{host}:{}", a.listen.port()),
    };
    let (heartbeat_interval, detector) = heartbeat_settings(a)?;
    Ok(Some(ClusterSettings {
        listen: a.cluster_listen,
        cookie,
        advertise,
        http_advertise,
        discovery: Discovery {
            peers: a.peers.iter().map(|p| p.0.clone()).collect(),
            dns: a.discover.iter().map(|d| d.0.clone()).collect(),
        },
        breaker: BreakerConfig {
            max_fails: a.peer_max_fails,
            open_for: Duration::from_secs(a.peer_fail_timeout_secs),
        },
        heartbeat_interval,
        detector,
        forget_peer_after: Duration::from_secs(a.forget_peer_after_secs),
    }))
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

/// `--forget-peer-after-secs`, checked: at least one second, and longer than
/// `--down-after-ms` (a peer is forgotten only after it was down).
fn check_forget(a: &NodeArgs) -> anyhow::Result<()> {
    let secs = a.forget_peer_after_secs;
    if secs == 0 || secs.saturating_mul(1000) <= a.down_after_ms || secs > 7 * 24 * 3600 {
        bail!(
            "--forget-peer-after-secs must be longer than --down-after-ms ({} ms) and at \
             most a week, got {secs}",
            a.down_after_ms
        );
    }
    Ok(())
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
            store: a.store.parse()?,
            store_cache_bytes: a.store_cache_mb.saturating_mul(1 << 20).max(1 << 20),
            node_id,
            workers,
            min_workers,
            max_workers,
            queue_capacity: a.queue_capacity,
            labels,
            max_body_bytes: a.max_body_bytes,
            max_params_bytes: a.max_params_bytes,
            result_ttl: Duration::from_secs(a.result_ttl_secs),
            shutdown_grace: Duration::from_secs(a.shutdown_grace_secs),
            scale_down_after: Duration::from_secs(a.scale_down_after_secs),
            test_kernels: a.test_kernels,
            cluster,
            lease_ttl: Duration::from_millis(a.lease_ttl_ms),
            lease_renew: Duration::from_millis(a.lease_renew_ms),
            claim_after,
            server,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_node_with_defaults() {
        let cli = Cli::try_parse_from(["taskmesh"]).expect("parse");
        assert!(cli.command.is_none());
        let args = NodeArgs::try_parse_from(["node"]).expect("parse");
        assert_eq!(args.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(args.queue_capacity, 100_000);
    }

    #[test]
    fn worker_bounds_are_checked() {
        let args =
            NodeArgs::try_parse_from(["node", "--workers", "4", "--max-workers", "2"]).expect("p");
        let err = NodeConfig::try_from(args).expect_err("must fail");
        assert!(err.to_string().contains("--max-workers"), "{err}");
        let args = NodeArgs::try_parse_from(["node", "--workers", "0"]).expect("parse");
        assert!(NodeConfig::try_from(args).is_err());
    }

    #[test]
    fn store_is_embedded_or_a_redis_url() {
        let cfg = |s: &str| NodeArgs::try_parse_from(["node", "--store", s]).expect("p");
        let embedded = NodeConfig::try_from(cfg("embedded")).expect("valid");
        assert_eq!(embedded.store, StoreKind::Embedded);
        let redis = NodeConfig::try_from(cfg("redis://127.0.0.1:6379/0")).expect("valid");
        assert_eq!(
            redis.store,
            StoreKind::Redis("redis://127.0.0.1:6379/0".into())
        );
        let secret = StoreKind::Redis("redis://user:pw@db:6379/0".into());
        assert_eq!(secret.to_string(), "redis://***@db:6379/0");
        let err = NodeConfig::try_from(cfg("postgres://x")).expect_err("invalid");
        assert!(err.to_string().contains("--store"), "{err}");
    }

    #[test]
    fn clustering_needs_a_cookie_and_a_shared_store() {
        let cfg = |args: &[&str]| {
            let mut all = vec!["node"];
            all.extend_from_slice(args);
            NodeConfig::try_from(NodeArgs::try_parse_from(all).expect("parse"))
        };
        let alone = cfg(&[]).expect("valid");
        assert!(alone.cluster.is_none());
        let err =
            cfg(&["--store", "redis://r:6379/0", "--peers", "a:4697"]).expect_err("no cookie");
        assert!(err.to_string().contains("--cluster-cookie"), "{err}");
        let err = cfg(&["--cluster-cookie", "s", "--peers", "a:4697"]).expect_err("embedded");
        assert!(err.to_string().contains("shared task store"), "{err}");
        let ok = cfg(&[
            "--store",
            "redis://r:6379/0",
            "--cluster-cookie",
            "s",
            "--peers",
            "a:4697,b:4697",
            "--discover",
            "dns:node:4697",
            "--advertise",
            "10.0.0.5:4697",
            "--listen",
            "0.0.0.0:8081",
        ])
        .expect("valid");
        let c = ok.cluster.expect("clustered");
        assert_eq!(c.discovery.peers, ["a:4697", "b:4697"]);
        assert_eq!(c.discovery.dns, ["node:4697"]);
        assert_eq!(c.http_advertise, "10.0.0.5:8081");
        assert!(NodeArgs::try_parse_from(["node", "--discover", "node:4697"]).is_err());
        let err = cfg(&[
            "--store",
            "redis://r:6379/0",
            "--cluster-cookie",
            "s",
            "--max-body-bytes",
            "67108864",
            "--max-params-bytes",
            "33554432",
        ])
        .expect_err("params too large for the cluster");
        assert!(err.to_string().contains("--max-params-bytes"), "{err}");
        assert!(NodeArgs::try_parse_from(["node", "--peers", "nohost"]).is_err());
    }

    #[test]
    fn heartbeat_flags_have_safe_defaults_and_bad_values_are_refused() {
        let cfg = |args: &[&str]| {
            let mut all = vec![
                "node",
                "--store",
                "redis://r:6379/0",
                "--cluster-cookie",
                "s",
            ];
            all.extend_from_slice(args);
            NodeConfig::try_from(NodeArgs::try_parse_from(all).expect("parse"))
        };
        let c = cfg(&[]).expect("valid").cluster.expect("clustered");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.detector, DetectorConfig::default());
        // A paused node must be down within 3 s: down-after plus one verdict period.
        assert!(c.detector.down_after + c.heartbeat_interval < Duration::from_secs(3));
        let c = cfg(&[
            "--heartbeat-interval-ms",
            "50",
            "--suspect-after-ms",
            "300",
            "--down-after-ms",
            "800",
        ])
        .expect("valid")
        .cluster
        .expect("clustered");
        assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(c.detector.suspect_after, Duration::from_millis(300));
        assert_eq!(c.detector.down_after, Duration::from_millis(800));
        for (bad, flag) in [
            (
                &["--heartbeat-interval-ms", "0"][..],
                "--heartbeat-interval-ms",
            ),
            (
                &["--heartbeat-interval-ms", "60000"][..],
                "--heartbeat-interval-ms",
            ),
            (
                &["--heartbeat-interval-ms", "600"][..],
                "--suspect-after-ms",
            ),
            (&["--suspect-after-ms", "300"][..], "--suspect-after-ms"),
            (&["--down-after-ms", "1000"][..], "--down-after-ms"),
            (&["--down-after-ms", "500"][..], "--down-after-ms"),
        ] {
            let err = cfg(bad).expect_err("invalid");
            assert!(err.to_string().contains(flag), "{bad:?}: {err}");
        }
        // Checked on a node alone too, so a typo does not wait for the cluster.
        let alone = NodeArgs::try_parse_from(["node", "--down-after-ms", "10"]).expect("parse");
        assert!(NodeConfig::try_from(alone).is_err());
        assert!(NodeArgs::try_parse_from(["node", "--suspect-after-ms", "-1"]).is_err());
    }

    #[test]
    fn claim_after_defaults_to_two_renewals_and_must_fit_in_the_lease() {
        let cfg = |args: &[&str]| {
            let args = NodeArgs::try_parse_from([&["node"], args].concat()).expect("parse");
            NodeConfig::try_from(args)
        };
        let c = cfg(&[]).expect("defaults");
        assert_eq!(c.claim_after, Duration::from_millis(1000));
        let c = cfg(&["--lease-renew-ms", "1000", "--lease-ttl-ms", "5000"]).expect("valid");
        assert_eq!(
            c.claim_after,
            Duration::from_millis(2000),
            "follows the renewal"
        );
        let c = cfg(&["--claim-after-ms", "3000"]).expect("valid");
        assert_eq!(c.claim_after, Duration::from_millis(3000));
        for bad in ["999", "5001"] {
            let err = cfg(&["--claim-after-ms", bad]).expect_err(bad).to_string();
            assert!(err.contains("--claim-after-ms"), "{err}");
        }
    }

    #[test]
    fn forget_peer_after_must_outlast_the_down_verdict() {
        let cfg = |secs: &str| {
            let all = [
                "node",
                "--store",
                "redis://r:6379/0",
                "--cluster-cookie",
                "s",
                "--forget-peer-after-secs",
                secs,
            ];
            NodeConfig::try_from(NodeArgs::try_parse_from(all).expect("parse"))
        };
        let c = cfg("300").expect("valid").cluster.expect("clustered");
        assert_eq!(c.forget_peer_after, Duration::from_secs(300));
        for bad in ["0", "2", "999999999"] {
            let err = cfg(bad).expect_err(bad).to_string();
            assert!(err.contains("--forget-peer-after-secs"), "{err}");
        }
        cfg("3").expect("3 s is past the 2 s down verdict");
    }

    #[test]
    fn lease_renewal_must_fit_in_the_lease() {
        let cfg = |args: &[&str]| {
            let args = NodeArgs::try_parse_from([&["node"], args].concat()).expect("parse");
            NodeConfig::try_from(args)
        };
        let ok = cfg(&["--lease-ttl-ms", "3000", "--lease-renew-ms", "1000"]).expect("valid");
        assert_eq!(ok.lease_renew, Duration::from_secs(1));
        assert!(cfg(&["--lease-ttl-ms", "3000", "--lease-renew-ms", "2000"]).is_err());
        assert!(cfg(&["--lease-renew-ms", "50"]).is_err());
        assert!(cfg(&["--lease-ttl-ms", "900"]).is_err());
    }

    #[test]
    fn labels_are_split_and_trimmed() {
        let args = NodeArgs::try_parse_from(["node", "--labels", "heavy, gpu,,"]).expect("p");
        let cfg = NodeConfig::try_from(args).expect("valid");
        assert_eq!(cfg.labels, ["heavy", "gpu"]);
    }
}
