//! The cluster as `GET /v1/cluster` shows it.

use serde::Serialize;

use super::peers::PeerState;
use crate::handoff::PoolLoad;

/// A pool's load, as shown to users.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadView {
    /// Tasks waiting (every priority, and retries in backoff).
    pub queued: usize,
    /// Tasks running.
    pub running: usize,
    /// Live workers.
    pub workers: usize,
    /// Queue capacity.
    pub capacity: usize,
}

impl From<&PoolLoad> for LoadView {
    fn from(load: &PoolLoad) -> Self {
        Self {
            queued: load.queued.iter().sum::<usize>() + load.delayed,
            running: load.busy,
            workers: load.workers,
            capacity: load.capacity,
        }
    }
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// The node id.
    pub id: String,
    /// The cluster address it was dialled on (as it advertises it); `None` when alone.
    pub address: Option<String>,
    /// Its HTTP API.
    pub http_address: Option<String>,
    /// Membership state (this node is always `up`).
    pub state: PeerState,
    /// Circuit state of its breaker (`closed` for this node).
    pub circuit: &'static str,
    /// Its pool's load, if a report arrived.
    pub load: Option<LoadView>,
    /// Resource labels.
    pub labels: Vec<String>,
    /// When it was last heard from, in Unix milliseconds.
    pub last_heard_ms: u64,
}

/// This node and every peer it knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    /// This node.
    pub node: NodeView,
    /// Every known peer, sorted by id.
    pub peers: Vec<NodeView>,
}
