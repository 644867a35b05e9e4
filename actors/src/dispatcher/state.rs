//! The dispatcher's state: the node's handles, the pools it places on and its peers.
//! What each message does to it lives with the decision it serves:
//!
//! - [`super::admission`]: room on each pool, admitting and placing submissions, and
//!   the load reports that feed it (decided by [`super::policy`]);
//! - [`super::handover`]: getting placed tasks to their pool, and moving the tasks that
//!   must move (refused, claimed from a lost node);
//! - [`super::membership`]: introductions, liveness verdicts, joins and leaves of peers
//!   (the table itself is [`super::peers`]);
//! - [`super::cancel`]: a cancel fanned out to the pool and every peer;
//! - [`super::view`]: the cluster as `GET /v1/cluster` shows it.

use std::collections::HashMap;

use ractor::{ActorCell, ActorRef};
use taskmesh_cluster::breaker::CircuitState;

use super::admission::PoolEntry;
use super::peers::PeerTable;
use super::{DispatcherConfig, DispatcherMessage};
use crate::context::{ENDPOINT_ROLE, NodeContext, node_of};
use crate::failover::FailoverMessage;
use crate::task::now_ms;

/// The node id of a peer's endpoint, from its registered name `{node_id}/endpoint`.
pub(super) fn endpoint_node(cell: &ActorCell) -> Option<String> {
    node_of(&cell.get_name()?, ENDPOINT_ROLE)
}

/// The dispatcher's state.
pub struct DispatcherState {
    pub(super) ctx: NodeContext,
    pub(super) config: DispatcherConfig,
    pub(super) myself: ActorRef<DispatcherMessage>,
    /// Every peer's pool, by node (the local pool is read from `ctx.local_load`).
    pub(super) pools: HashMap<String, PoolEntry>,
    pub(super) peers: PeerTable,
}

impl DispatcherState {
    pub(super) fn new(
        ctx: NodeContext,
        config: DispatcherConfig,
        myself: ActorRef<DispatcherMessage>,
    ) -> Self {
        Self {
            ctx,
            peers: PeerTable::new(config.peers),
            config,
            myself,
            pools: HashMap::new(),
        }
    }

    pub(super) fn is_local(&self, node: &str) -> bool {
        node == &*self.ctx.node_id
    }

    pub(super) fn circuit_changed(&self, node: &str, to: CircuitState) {
        let m = &self.ctx.metrics;
        m.circuit_transitions
            .with_label_values(&[node, to.as_str()])
            .inc();
        let level = match to {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        };
        m.circuit_state.with_label_values(&[node]).set(level);
        tracing::info!(peer = node, circuit = to.as_str(), "circuit state changed");
    }

    pub(super) fn tick(&mut self) {
        for node in self.peers.forget_long_down(now_ms()) {
            tracing::info!(peer = %node, after_secs = self.config.peers.forget_after.as_secs(),
                "peer down too long; forgotten (it comes back as new if it returns)");
            self.pools.remove(&node);
        }
        self.report_down();
        self.refresh_gauges();
    }

    /// Hands the peers held down, and why, to the Failover actor, which claims their
    /// tasks once the store shows they stopped ([`crate::failover`]).
    pub(super) fn report_down(&self) {
        let failover = ActorRef::<FailoverMessage>::where_is(self.ctx.names.failover.clone());
        if let Some(failover) = failover {
            let _ = failover.cast(FailoverMessage::Down(self.peers.down_set()));
        }
    }

    pub(super) fn refresh_gauges(&self) {
        for (state, count) in self.peers.counts() {
            let g = &self.ctx.metrics.peers;
            g.with_label_values(&[state.as_str()]).set(count as i64);
        }
    }
}
