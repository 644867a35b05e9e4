//! Which children the root runs, and how each one is spawned (and respawned after a
//! failure) with its config from [`SupervisorArgs`](super::SupervisorArgs).

use ractor::{Actor, ActorProcessingErr, ActorRef};
use taskmesh_actors::autoscaler::{Autoscaler, AutoscalerArgs};
use taskmesh_actors::dispatcher::{Dispatcher, DispatcherArgs};
use taskmesh_actors::endpoint::PeerEndpoint;
use taskmesh_actors::failover::{Failover, FailoverArgs};
use taskmesh_actors::health::{HealthArgs, HealthMonitor};
use taskmesh_actors::heartbeat::{HeartbeatActor, HeartbeatArgs};
use taskmesh_actors::ingress::{HttpIngress, HttpIngressArgs, IngressState};
use taskmesh_actors::worker_pool::{WorkerPool, WorkerPoolArgs};

use super::{SupervisorMessage, SupervisorState};

/// The children of the root, in start order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Child {
    /// The local WorkerPool.
    WorkerPool,
    /// The Dispatcher.
    Dispatcher,
    /// The HealthMonitor.
    HealthMonitor,
    /// The Failover actor.
    Failover,
    /// The Autoscaler.
    Autoscaler,
    /// The HttpIngress.
    HttpIngress,
    /// The PeerEndpoint (clustered nodes only).
    PeerEndpoint,
    /// The Heartbeat actor (clustered nodes only).
    Heartbeat,
}

impl Child {
    pub(super) const ALL: [Child; 8] = [
        Child::WorkerPool,
        Child::Dispatcher,
        Child::HealthMonitor,
        Child::Failover,
        Child::Autoscaler,
        Child::HttpIngress,
        Child::PeerEndpoint,
        Child::Heartbeat,
    ];

    /// Whether it runs only on a clustered node.
    pub(super) fn clustered_only(self) -> bool {
        matches!(self, Child::PeerEndpoint | Child::Heartbeat)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Child::WorkerPool => "worker_pool",
            Child::Dispatcher => "dispatcher",
            Child::HealthMonitor => "health_monitor",
            Child::Failover => "failover",
            Child::Autoscaler => "autoscaler",
            Child::HttpIngress => "http_ingress",
            Child::PeerEndpoint => "peer_endpoint",
            Child::Heartbeat => "heartbeat",
        }
    }
}

impl SupervisorState {
    /// Spawns `child` linked to the root and records it.
    pub(super) async fn start(
        &mut self,
        child: Child,
        myself: &ActorRef<SupervisorMessage>,
    ) -> Result<(), ActorProcessingErr> {
        let (ctx, names) = (self.args.ctx.clone(), self.args.ctx.names.clone());
        let sup = myself.get_cell();
        let cell = match child {
            Child::WorkerPool => {
                let args = WorkerPoolArgs {
                    ctx,
                    config: self.args.pool.clone(),
                };
                Actor::spawn_linked(Some(names.pool.clone()), WorkerPool, args, sup)
                    .await?
                    .0
                    .get_cell()
            }
            Child::Dispatcher => {
                let args = DispatcherArgs {
                    ctx,
                    config: self.args.dispatcher,
                };
                Actor::spawn_linked(Some(names.dispatcher.clone()), Dispatcher, args, sup)
                    .await?
                    .0
                    .get_cell()
            }
            Child::PeerEndpoint => {
                Actor::spawn_linked(Some(names.endpoint.clone()), PeerEndpoint, ctx, sup)
                    .await?
                    .0
                    .get_cell()
            }
            Child::Heartbeat => {
                let args = HeartbeatArgs {
                    ctx,
                    config: self.args.heartbeat.clone(),
                };
                Actor::spawn_linked(Some(names.heartbeat.clone()), HeartbeatActor, args, sup)
                    .await?
                    .0
                    .get_cell()
            }
            Child::HealthMonitor => {
                let args = HealthArgs {
                    ctx,
                    config: self.args.health,
                };
                Actor::spawn_linked(Some(names.health.clone()), HealthMonitor, args, sup)
                    .await?
                    .0
                    .get_cell()
            }
            Child::Failover => {
                let args = FailoverArgs {
                    ctx,
                    config: self.args.failover,
                };
                Actor::spawn_linked(Some(names.failover.clone()), Failover, args, sup)
                    .await?
                    .0
                    .get_cell()
            }
            Child::Autoscaler => {
                let args = AutoscalerArgs {
                    ctx,
                    config: self.args.autoscaler,
                };
                Actor::spawn_linked(Some(names.autoscaler.clone()), Autoscaler, args, sup)
                    .await?
                    .0
                    .get_cell()
            }
            Child::HttpIngress => {
                let args = HttpIngressArgs {
                    listener: self.args.listener.clone(),
                    tls: self.args.https.clone(),
                    state: IngressState::with_auth(
                        ctx,
                        self.args.limits.clone(),
                        self.args.auth.clone(),
                    ),
                };
                Actor::spawn_linked(Some(names.ingress.clone()), HttpIngress, args, sup)
                    .await?
                    .0
                    .get_cell()
            }
        };
        self.children.insert(cell.get_id(), child);
        self.cells.insert(child, cell);
        Ok(())
    }
}
