//! The command line and the environment: `taskmesh [node] [FLAGS]`, every flag also
//! settable by its `TASKMESH_*` variable. Parsing only; [`super::NodeConfig`] checks the
//! values and builds the configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use taskmesh_cluster::discovery::{DnsTarget, Peer};

use super::rate_limit::RateLimitArgs;
use super::server::ServerArgs;
use super::tls::TlsArgs;

/// taskmesh: a distributed task-processing runtime in one binary.
#[derive(Debug, Parser)]
#[command(name = "taskmesh", version)]
pub struct Cli {
    /// What to do; `node` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
// Parsed once per process: boxing `NodeArgs` would only make its users' code noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: the HTTP API, the dispatcher and a pool of workers (the default).
    Node(NodeArgs),
    /// The client subcommands, spoken to a node's HTTP API.
    #[command(flatten)]
    Client(crate::cli::ClientCommand),
    /// API keys: `generate` prints a fresh key offline; `create`, `ls` and `revoke`
    /// manage the keys of a node (admin key).
    #[command(subcommand)]
    Keys(crate::keys::KeysCommand),
}

/// Whether the HTTP API asks for API keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// No keys: anyone who reaches the port may do anything (trusted networks only).
    Off,
    /// `Authorization: Bearer <key>` on every route but `/health`, `/health/ready` and
    /// (unless --metrics-auth on) `/metrics`. The default.
    On,
}

/// Whether `GET /metrics` asks for a key (with `--auth on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MetricsAuth {
    /// Open, like the health probes: for Prometheus scrapers on a trusted network.
    Off,
    /// A key with the `read` (or `admin`) scope.
    On,
}

/// A secret given by flag or environment: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
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
    /// `redis://127.0.0.1:6379/0`; `rediss://` for TLS, `redis://user:password@host…`
    /// for an ACL user (the password is never logged).
    #[arg(
        long,
        env = "TASKMESH_STORE",
        default_value = "embedded",
        hide_env_values = true
    )]
    pub store: Secret,

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

    /// Largest result an HTTP worker may report for an external task (413 above; the
    /// worker's lease stays valid).
    #[arg(long, env = "TASKMESH_MAX_RESULT_BYTES", default_value_t = 1 << 20)]
    pub max_result_bytes: usize,

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

    /// Task kinds run by worker processes over HTTP (`POST /v1/workers`), comma-separated:
    /// their tasks are accepted, stored and queued like any other and leased to workers
    /// that poll for them (docs/extending.md).
    #[arg(long, env = "TASKMESH_EXTERNAL_KINDS", value_delimiter = ',')]
    pub external_kinds: Vec<String>,

    /// How long an HTTP worker keeps its leases without a heartbeat (or any other call):
    /// past it each leased attempt is recorded failed (`lease_expired`) and its task is
    /// queued again. Workers are told to heartbeat five times per lease.
    #[arg(long, env = "TASKMESH_WORKER_LEASE_MS", default_value_t = 10_000)]
    pub worker_lease_ms: u64,

    /// Also register the test-only kernels (`panic`, `abort`, `fail`, `flaky`, `spin`). Never in
    /// production.
    #[arg(long, env = "TASKMESH_TEST_KERNELS")]
    pub test_kernels: bool,

    /// API keys: `on` (the default) asks every request but the health probes (and
    /// `/metrics`, unless --metrics-auth on) for `Authorization: Bearer <key>`
    /// (docs/api.md). `off` leaves the API open to anyone who reaches the port (trusted
    /// networks only) and logs a warning at every start.
    #[arg(long, env = "TASKMESH_AUTH", value_enum, default_value_t = AuthMode::On)]
    pub auth: AuthMode,

    /// With --auth on: `on` makes `GET /metrics` need a key with the `read` scope;
    /// `off` (the default) leaves it open for Prometheus scrapers.
    #[arg(long, env = "TASKMESH_METRICS_AUTH", value_enum, default_value_t = MetricsAuth::Off)]
    pub metrics_auth: MetricsAuth,

    /// With --auth on: a file holding the bootstrap admin key (`tm_…`, as printed by
    /// `taskmesh keys generate`), stored as the admin key `bootstrap` if its id is new.
    /// Like the TASKMESH_ADMIN_KEY variable; without either, a node whose store has no
    /// key creates one in <data-dir>/admin.key.
    #[arg(long, env = "TASKMESH_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,

    /// The bootstrap admin key itself: set it by the environment (TASKMESH_ADMIN_KEY),
    /// never on a command line.
    #[arg(long, env = "TASKMESH_ADMIN_KEY", hide = true, hide_env_values = true)]
    pub admin_key: Option<Secret>,

    /// HTTP server bounds and shutdown.
    #[command(flatten)]
    pub server: ServerArgs,

    /// Rate limits per API key and per client IP.
    #[command(flatten)]
    pub rate_limits: RateLimitArgs,
    /// TLS: HTTPS on the API, between nodes, to Redis.
    #[command(flatten)]
    pub tls: TlsArgs,
}
