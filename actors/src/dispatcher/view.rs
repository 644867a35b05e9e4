//! The cluster as `GET /v1/cluster` shows it.

use std::time::Instant;

use serde::Serialize;
use taskmesh_cluster::breaker::CircuitState;

use super::peers::PeerState;
use super::state::DispatcherState;
use crate::handoff::PoolLoad;
use crate::task::now_ms;

/// A pool's load, as shown to users.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
        let f = &load.figures;
        Self {
            queued: f.queued.iter().sum::<usize>() + f.delayed,
            running: f.busy,
            workers: f.workers,
            capacity: f.capacity,
        }
    }
}

/// One node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    #[schema(value_type = String)]
    pub circuit: &'static str,
    /// Its pool's load, if a report arrived.
    pub load: Option<LoadView>,
    /// Resource labels.
    pub labels: Vec<String>,
    /// The task kinds it can run, as it advertised them (sorted), external ones included.
    pub kinds: Vec<String>,
    /// Its external kinds that no HTTP worker serves now: their tasks wait there (as
    /// last reported; empty before a report).
    pub unserved: Vec<String>,
    /// When it was last heard from, in Unix milliseconds.
    pub last_heard_ms: u64,
}

/// This node and every peer it knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// This node.
    pub node: NodeView,
    /// Every known peer, sorted by id.
    pub peers: Vec<NodeView>,
}

impl DispatcherState {
    pub(super) fn cluster_view(&self, now: Instant) -> ClusterView {
        self.refresh_gauges();
        let info = self.ctx.cluster.as_deref();
        let local = self.ctx.local_load.load(&self.ctx.node_id);
        let local = local.as_ref();
        let node = NodeView {
            id: self.ctx.node_id.to_string(),
            address: info.map(|i| i.cluster_address.clone()),
            http_address: info.map(|i| i.http_address.clone()),
            state: PeerState::Up,
            circuit: CircuitState::Closed.as_str(),
            labels: local.map(|l| l.labels.clone()).unwrap_or_default(),
            kinds: self.ctx.local_load.kinds().to_vec(),
            unserved: self.ctx.local_load.unserved().to_vec(),
            load: local.map(LoadView::from),
            last_heard_ms: now_ms(),
        };
        let mut peers: Vec<NodeView> = self
            .peers
            .peers
            .iter()
            .map(|(id, p)| NodeView {
                id: id.clone(),
                address: p.info.as_ref().map(|i| i.cluster_address.clone()),
                http_address: p.info.as_ref().map(|i| i.http_address.clone()),
                state: p.state(),
                circuit: p.breaker.state(now).as_str(),
                load: self.pools.get(id).map(|e| LoadView::from(&e.last)),
                labels: p
                    .info
                    .as_ref()
                    .map(|i| i.labels.clone())
                    .unwrap_or_default(),
                kinds: p.kinds.to_vec(),
                unserved: self
                    .pools
                    .get(id)
                    .map(|e| e.last.unserved.clone())
                    .unwrap_or_default(),
                last_heard_ms: p.last_heard_ms,
            })
            .collect();
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        ClusterView { node, peers }
    }
}
