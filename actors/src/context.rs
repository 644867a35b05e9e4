//! What every actor of one node shares: immutable handles, cheap to clone.

use std::sync::Arc;

use taskmesh_cluster::wire::NodeInfo;
use taskmesh_kernels::Registry;

use crate::handoff::LocalLoad;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::TaskStore;

/// Registered names of one node's actors. Prefixed with the node id so several nodes
/// can live in one process (tests) without clashing in ractor's global registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorNames {
    /// The Dispatcher.
    pub dispatcher: String,
    /// The local WorkerPool.
    pub pool: String,
    /// The HealthMonitor.
    pub health: String,
    /// The Failover actor (the lease and claims).
    pub failover: String,
    /// The Autoscaler.
    pub autoscaler: String,
    /// The HttpIngress.
    pub ingress: String,
    /// The PeerEndpoint (clustered nodes only).
    pub endpoint: String,
    /// The Heartbeat actor (clustered nodes only).
    pub heartbeat: String,
}

/// The role part of the endpoint's name: peers find a node's id by stripping it.
pub const ENDPOINT_ROLE: &str = "endpoint";

/// The role part of the heartbeat actor's name, likewise.
pub const HEARTBEAT_ROLE: &str = "heartbeat";

/// The node id in an actor name `{node_id}/{role}`.
pub fn node_of(name: &str, role: &str) -> Option<String> {
    let node = name.strip_suffix(role)?.strip_suffix('/')?;
    (!node.is_empty()).then(|| node.to_owned())
}

impl ActorNames {
    /// The names used by node `node_id`.
    pub fn for_node(node_id: &str) -> Self {
        let name = |role: &str| format!("{node_id}/{role}");
        Self {
            dispatcher: name("dispatcher"),
            pool: name("worker-pool"),
            health: name("health-monitor"),
            failover: name("failover"),
            autoscaler: name("autoscaler"),
            ingress: name("http-ingress"),
            endpoint: name(ENDPOINT_ROLE),
            heartbeat: name(HEARTBEAT_ROLE),
        }
    }
}

/// Handles shared by all actors of a node.
#[derive(Clone)]
pub struct NodeContext {
    /// This node's unique id, kept across restarts (`--node-id`, default `<hostname>-<HTTP port>`).
    pub node_id: Arc<str>,
    /// Durable task state.
    pub store: Arc<dyn TaskStore>,
    /// The task kinds this node can run.
    pub kernels: Registry,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// Wakes long-polling readers.
    pub notifier: Arc<Notifier>,
    /// Names of the node's actors.
    pub names: Arc<ActorNames>,
    /// How this node introduces itself to peers; `None` when it runs alone.
    pub cluster: Option<Arc<NodeInfo>>,
    /// The local pool's live load, shared by the pool, the dispatcher and the ingress.
    pub local_load: Arc<LocalLoad>,
}
