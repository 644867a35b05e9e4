//! A taskmesh node: configuration, wiring and lifecycle; and the node as a library.
//!
//! [`Node`] is how a program of one's own runs a node with extra task kinds and the
//! whole `taskmesh` command line: `Node::new().kind(MyKind).run_cli()` (the
//! `taskmesh` binary is `Node::new().run_cli()`). [`kernels`] re-exports the task-kind
//! contract ([`kernels::Kernel`] and friends), so one dependency is enough.
//!
//! # Layout
//! - [`Node`] (`app`): the node as a library: extra kinds, the CLI, start and run.
//! - [`cli`]: the client subcommands (`submit`, `get`, `wait`, `ls`, `cancel`,
//!   `cluster`, `stats`) that speak to a node's HTTP API.
//! - [`config`]: CLI flags and environment → [`config::NodeConfig`].
//! - [`keys`]: `taskmesh keys generate` and the bootstrap admin key (`--auth on`).
//! - [`supervisor`]: the root actor and the supervision tree (drawn there).
//! - [`telemetry`]: log setup.
//! - [`shutdown`]: the stop signal.
//! - `tls`: the PEM files of the TLS flags read into rustls configurations.
//!
//! [`start`] brings a node with the built-in kinds up and returns a [`NodeHandle`];
//! [`run`] starts one, waits for the shutdown signal and stops it gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, ActorRef};
use taskmesh_actors::auth::Authenticator;
use taskmesh_actors::autoscaler::AutoscalerConfig;
use taskmesh_actors::autoscaler::policy::AutoscalePolicy;
use taskmesh_actors::context::{ActorNames, NodeContext};
use taskmesh_actors::dispatcher::DispatcherConfig;
use taskmesh_actors::dispatcher::peers::PeerSettings;
use taskmesh_actors::failover::{FailoverConfig, ensure_id_free};
use taskmesh_actors::health::HealthConfig;
use taskmesh_actors::heartbeat::HeartbeatConfig;
use taskmesh_actors::ingress::IngressLimits;
use taskmesh_actors::metrics::Metrics;
use taskmesh_actors::notify::Notifier;
use taskmesh_actors::rate_limit::local::LocalLimiter;
use taskmesh_actors::rate_limit::{RateLimiter, RateLimits};
use taskmesh_actors::store::TaskStore;
use taskmesh_actors::store::embedded::EmbeddedStore;
use taskmesh_actors::store::redis::{RedisConfig, RedisStore};
use taskmesh_actors::worker_pool::WorkerPoolConfig;
use taskmesh_actors::worker_pool::retry::Backoff;
use taskmesh_cluster::bootstrap::{Cluster, ClusterConfig};
use taskmesh_cluster::wire::NodeInfo;
use taskmesh_kernels::Registry;
use tokio::task::JoinHandle;

mod app;
pub mod cli;
pub mod config;
pub mod keys;
pub mod shutdown;
pub mod supervisor;
pub mod telemetry;
mod tls;

pub use app::Node;
use config::{NodeConfig, StoreKind};
use supervisor::{NodeSupervisor, SupervisorArgs, SupervisorMessage};
/// The task-kind contract: [`kernels::Kernel`], [`kernels::Params`],
/// [`kernels::KernelError`], [`kernels::Context`] and the [`kernels::check`] helpers.
pub use taskmesh_kernels as kernels;

/// A running node.
pub struct NodeHandle {
    /// Where the HTTP API listens.
    pub addr: SocketAddr,
    /// The node's id.
    pub node_id: String,
    supervisor: ActorRef<SupervisorMessage>,
    join: JoinHandle<()>,
    grace: Duration,
    drain: Duration,
    cluster: Option<Cluster>,
}

impl NodeHandle {
    /// Stops the node gracefully and waits until it has: readiness off and no queued
    /// task started from now on; the HTTP listener open for the drain period, then
    /// closed; running tasks given the grace period (counted from now).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let (grace, drain) = (self.grace, self.drain);
        let wait = grace.max(drain) + Duration::from_secs(30);
        let stopped = ractor::call_t!(
            self.supervisor,
            |reply| SupervisorMessage::Shutdown {
                grace,
                drain,
                reply
            },
            wait.as_millis() as u64
        );
        if let Err(e) = stopped {
            tracing::warn!(error = %e, "graceful shutdown did not complete");
        }
        self.join.await.context("supervisor task panicked")?;
        if let Some(cluster) = &self.cluster {
            cluster.stop();
        }
        Ok(())
    }
}

/// File descriptors kept for everything but HTTP connections (store, cluster, logs).
const SPARE_FDS: u64 = 512;

/// Raises the soft limit on open files to the hard one (as Go and nginx setups do): a
/// soft limit of 1024, common by default, would cap the node far below
/// `--max-connections`. Warns when even the hard limit is too low for it.
fn raise_open_files_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let mut limit = soft;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        limit = hard;
    }
    let needed = max_connections as u64 + SPARE_FDS;
    if limit < needed {
        tracing::warn!(
            open_files_limit = limit,
            max_connections,
            "the open-files limit is below --max-connections + {SPARE_FDS}: connections past \
             it fail to be accepted; raise `ulimit -n` or lower --max-connections"
        );
    }
}

/// Opens the store, binds the HTTP port and starts the supervision tree, with the
/// built-in kinds ([`Node::start`] adds one's own).
pub async fn start(config: NodeConfig) -> anyhow::Result<NodeHandle> {
    Node::new().start(config).await
}

/// [`start`] with the kinds in `kernels`.
async fn start_with(config: NodeConfig, kernels: Registry) -> anyhow::Result<NodeHandle> {
    raise_open_files_limit(config.server.max_connections);
    tls::install_provider();
    // Every TLS file is read before anything opens: a bad one stops the start at once.
    let https = config
        .tls
        .https
        .as_ref()
        .map(tls::https_acceptor)
        .transpose()?;
    let cluster_tls = config
        .tls
        .cluster
        .as_ref()
        .map(tls::cluster_tls)
        .transpose()?;
    let (store, limiter) = open_store(&config).await?;
    ensure_id_free(&*store, &config.node_id, config.lease_renew).await?;
    let auth = authentication(&config, &store, limiter).await?;
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("binding the HTTP API to {}", config.listen))?;
    let addr = listener.local_addr()?;
    let info = config.cluster.as_ref().map(|c| {
        Arc::new(NodeInfo {
            node_id: config.node_id.clone(),
            generation: rand::random(),
            cluster_address: c.advertise.clone(),
            http_address: c.http_advertise.clone(),
            labels: config.labels.clone(),
            kinds: {
                let external = kernels.external_kinds();
                let mut kinds: Vec<String> = kernels
                    .kinds()
                    .into_iter()
                    .chain(external)
                    .map(str::to_owned)
                    .collect();
                kinds.sort();
                kinds
            },
        })
    });
    let ctx = NodeContext {
        cluster: info.clone(),
        node_id: config.node_id.as_str().into(),
        store,
        kernels,
        metrics: Arc::new(Metrics::new().context("registering metrics")?),
        notifier: Arc::new(Notifier::default()),
        names: Arc::new(ActorNames::for_node(&config.node_id)),
        local_load: Default::default(),
    };
    let args = SupervisorArgs {
        pool: WorkerPoolConfig {
            initial_workers: config.workers,
            queue_capacity: config.queue_capacity,
            backoff: Backoff::default(),
            report_interval: Duration::from_millis(100),
            labels: config.labels.clone(),
            worker_lease: config.worker_lease,
        },
        dispatcher: DispatcherConfig {
            peers: match &config.cluster {
                Some(c) => PeerSettings {
                    breaker: c.breaker,
                    forget_after: c.forget_peer_after,
                },
                None => PeerSettings::default(),
            },
            ..DispatcherConfig::default()
        },
        autoscaler: AutoscalerConfig {
            policy: AutoscalePolicy {
                min_workers: config.min_workers,
                max_workers: config.max_workers,
                scale_down_after: config.scale_down_after,
            },
            interval: Duration::from_secs(1),
        },
        health: HealthConfig {
            interval: config.lease_renew,
            ..HealthConfig::default()
        },
        failover: FailoverConfig {
            renew: config.lease_renew,
            lease_ttl: config.lease_ttl,
            claim_after: config.claim_after,
            ..FailoverConfig::default()
        },
        heartbeat: match &config.cluster {
            Some(c) => HeartbeatConfig {
                interval: c.heartbeat_interval,
                detector: c.detector,
                forget_after: c.forget_peer_after,
                ..HeartbeatConfig::default()
            },
            None => HeartbeatConfig::default(),
        },
        limits: Arc::new(IngressLimits {
            max_body_bytes: config.max_body_bytes,
            max_params_bytes: config.max_params_bytes,
            max_result_bytes: config.max_result_bytes,
            max_wait: config.server.max_wait,
            max_connections: config.server.max_connections,
            max_concurrent_requests: config.server.max_concurrent_requests,
            request_timeout: config.server.request_timeout,
            header_read_timeout: config.server.header_read_timeout,
            ..IngressLimits::default()
        }),
        auth,
        listener: Arc::new(listener),
        https,
        result_ttl: config.result_ttl,
        ctx,
    };
    let name = format!("{}/supervisor", config.node_id);
    let (supervisor, join) = Actor::spawn(Some(name), NodeSupervisor, args)
        .await
        .context("starting the supervision tree")?;
    let cluster = match (&config.cluster, &info) {
        (Some(c), Some(info)) => {
            let joined = Cluster::start(ClusterConfig {
                listen: c.listen,
                cookie: c.cookie.clone(),
                advertise: c.advertise.clone(),
                node_name: format!("{}~{:016x}", info.node_id, info.generation),
                discovery: c.discovery.clone(),
                interval: Duration::from_secs(1),
                max_backoff: Duration::from_secs(10),
                handshake_timeout: config.server.cluster_handshake_timeout,
                tls: cluster_tls,
            })
            .await;
            match joined {
                Ok(cluster) => Some(cluster),
                Err(e) => {
                    let _ = supervisor.cast(SupervisorMessage::Shutdown {
                        grace: Duration::ZERO,
                        drain: Duration::ZERO,
                        reply: ractor::concurrency::oneshot().0.into(),
                    });
                    return Err(e).with_context(|| format!("joining the cluster on {}", c.listen));
                }
            }
        }
        _ => None,
    };
    tracing::info!(
        node = %config.node_id,
        %addr,
        https = config.tls.https.is_some(),
        cluster_tls = config.tls.cluster.is_some(),
        store = %config.store,
        cluster = config.cluster.as_ref().map(|c| c.advertise.as_str()).unwrap_or("off"),
        "node started"
    );
    Ok(NodeHandle {
        cluster,
        addr,
        node_id: config.node_id,
        supervisor,
        join,
        grace: config.shutdown_grace,
        drain: config.server.drain,
    })
}

/// With `--auth on`: the bootstrap admin key ([`keys::bootstrap`]) and the
/// authenticator, enforcing the rate limits on `limiter`. With `--auth off`: a warning,
/// and `None`.
async fn authentication(
    config: &NodeConfig,
    store: &Arc<dyn TaskStore>,
    limiter: Arc<dyn RateLimiter>,
) -> anyhow::Result<Option<Arc<Authenticator>>> {
    if !config.auth.enabled {
        tracing::warn!(
            "authentication is off (--auth off): anyone who reaches the HTTP port may submit, \
             read and cancel every task and run tasks as a worker; use it on trusted networks \
             only, and leave --auth at its default (on) anywhere else"
        );
        return Ok(None);
    }
    match keys::bootstrap(&**store, &config.auth, &config.data_dir).await? {
        keys::Bootstrapped::Created(path) => tracing::warn!(
            path = %path.display(),
            "no API key was stored or configured: created an admin key and wrote it to this \
             file (mode 0600); read it from there"
        ),
        keys::Bootstrapped::Stored(key_id) => {
            tracing::info!(%key_id, "stored the configured admin key as `bootstrap`")
        }
        keys::Bootstrapped::AlreadyStored(key_id) => {
            tracing::info!(%key_id, "the configured admin key is already stored")
        }
        keys::Bootstrapped::Nothing => {}
    }
    tracing::info!("authentication is on: API keys are required (docs/api.md)");
    let limits = &config.rate_limits;
    tracing::info!(
        key = %limits.key_default.map_or("off".into(), |l| l.to_string()),
        ip = %limits.ip.map_or("off".into(), |l| l.to_string()),
        trusted_proxies = limits.trusted_proxies.len(),
        "rate limits (per second/burst)"
    );
    let auth = Authenticator::new(Arc::clone(store))
        .protect_metrics(config.auth.protect_metrics)
        .with_rate_limits(RateLimits {
            limiter,
            key_default: limits.key_default,
            ip: limits.ip,
            trusted_proxies: limits.trusted_proxies.clone(),
        });
    Ok(Some(Arc::new(auth)))
}

/// Opens the configured task store, and the rate limiter that goes with it: buckets in
/// memory beside the embedded store (one node), in Redis beside the Redis store (shared
/// by the cluster).
async fn open_store(
    config: &NodeConfig,
) -> anyhow::Result<(Arc<dyn TaskStore>, Arc<dyn RateLimiter>)> {
    match &config.store {
        StoreKind::Embedded => {
            let (dir, cache) = (config.data_dir.clone(), config.store_cache_bytes);
            let store =
                tokio::task::spawn_blocking(move || EmbeddedStore::open_with_cache(&dir, cache))
                    .await
                    .context("opening the store panicked")?
                    .with_context(|| {
                        format!("opening the task store in {}", config.data_dir.display())
                    })?;
            Ok((Arc::new(store), Arc::new(LocalLimiter::new())))
        }
        StoreKind::Redis(url) => {
            let redis = RedisConfig {
                tls_ca: config
                    .tls
                    .redis_ca
                    .as_deref()
                    .map(tls::read_ca)
                    .transpose()?,
                ..RedisConfig::default()
            };
            // `url` shows without its password; the store's errors never carry it.
            let store = RedisStore::connect_with(url.expose(), redis)
                .await
                .with_context(|| format!("connecting to the Redis task store at {url}"))?;
            let limiter = store.rate_limiter();
            Ok((Arc::new(store), Arc::new(limiter)))
        }
    }
}

/// Runs a node with the built-in kinds until `shutdown` resolves, then stops it
/// gracefully.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    Node::new().run(config, shutdown).await
}
