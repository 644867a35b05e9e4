//! The node's root supervisor.
//!
//! ```text
//! NodeSupervisor
//! ├── WorkerPool ──┬── Worker 1
//! │                ├── ...
//! │                └── Worker N
//! ├── Dispatcher
//! ├── HealthMonitor
//! ├── Failover     (renews this node's lease; claims a peer's tasks on store evidence)
//! ├── Autoscaler
//! ├── HttpIngress  (owns the axum server)
//! ├── PeerEndpoint (clustered nodes: joins the endpoint process group)
//! └── Heartbeat    (clustered nodes: joins the heartbeat group; the failure detector)
//! ```
//! Beside the tree, a clustered node runs ractor_cluster's NodeServer and the dialer
//! (`taskmesh_cluster::bootstrap`), started after the tree and stopped after it.
//! A child that fails or stops unexpectedly is restarted after a backoff that doubles
//! with each restart in a row (50 ms up to 10 s, reset once the child has run for a
//! minute). Accepted tasks survive any restart: their state is in the store, and a
//! restarted pool re-queues every unfinished task it finds there. Workers are supervised
//! by their pool, not here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use taskmesh_actors::autoscaler::{Autoscaler, AutoscalerArgs, AutoscalerConfig};
use taskmesh_actors::context::NodeContext;
use taskmesh_actors::dispatcher::{
    Dispatcher, DispatcherArgs, DispatcherConfig, DispatcherMessage,
};
use taskmesh_actors::endpoint::PeerEndpoint;
use taskmesh_actors::failover::{Failover, FailoverArgs, FailoverConfig, FailoverMessage};
use taskmesh_actors::health::{HealthArgs, HealthConfig, HealthMessage, HealthMonitor};
use taskmesh_actors::heartbeat::{HeartbeatActor, HeartbeatArgs, HeartbeatConfig};
use taskmesh_actors::ingress::{HttpIngress, HttpIngressArgs, IngressLimits, IngressState};
use taskmesh_actors::task::now_ms;
use taskmesh_actors::worker_pool::{PoolMessage, WorkerPool, WorkerPoolArgs, WorkerPoolConfig};

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
    const ALL: [Child; 8] = [
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
    fn clustered_only(self) -> bool {
        matches!(self, Child::PeerEndpoint | Child::Heartbeat)
    }

    fn name(self) -> &'static str {
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

/// Everything the root needs to (re)start its children.
pub struct SupervisorArgs {
    /// Shared node handles.
    pub ctx: NodeContext,
    /// Pool settings.
    pub pool: WorkerPoolConfig,
    /// Dispatcher settings.
    pub dispatcher: DispatcherConfig,
    /// Autoscaler settings.
    pub autoscaler: AutoscalerConfig,
    /// HealthMonitor settings.
    pub health: HealthConfig,
    /// Failover settings.
    pub failover: FailoverConfig,
    /// Heartbeat settings (clustered nodes).
    pub heartbeat: HeartbeatConfig,
    /// HTTP limits.
    pub limits: Arc<IngressLimits>,
    /// The bound HTTP listener.
    pub listener: Arc<std::net::TcpListener>,
    /// How long finished records are kept.
    pub result_ttl: Duration,
}

/// Messages of the root supervisor.
pub enum SupervisorMessage {
    /// Start (or restart) one child.
    Start(Child),
    /// Timer: delete expired finished tasks.
    Purge,
    /// Graceful shutdown: readiness off, no queued task started, HTTP open for `drain`
    /// then closed, running tasks finish within `grace`, stop everything; reply when
    /// done.
    Shutdown {
        /// How long running tasks may take.
        grace: Duration,
        /// How long the HTTP listener stays open with readiness at 503.
        drain: Duration,
        /// Answered when the node has stopped.
        reply: RpcReplyPort<()>,
    },
}

// Local only: the cluster feature of ractor needs the impl spelled out.
impl ractor::Message for SupervisorMessage {}

/// The root supervisor actor.
pub struct NodeSupervisor;

struct Restarts {
    in_a_row: u32,
    started: Instant,
}

/// The root's state.
pub struct SupervisorState {
    args: SupervisorArgs,
    children: HashMap<ActorId, Child>,
    cells: HashMap<Child, ActorCell>,
    restarts: HashMap<Child, Restarts>,
    failing: std::collections::BTreeSet<Child>,
    shutting_down: bool,
}

const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Restarts in a row (each within a minute of the last) after which a child counts as
/// crash-looping and the node reports not ready.
const CRASH_LOOP: u32 = 5;

/// How long a restarted child must run before its restarts stop counting.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

impl SupervisorState {
    async fn start(
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
                    state: IngressState {
                        ctx,
                        limits: self.args.limits.clone(),
                    },
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

    fn child_died(&mut self, id: ActorId, reason: &str, myself: &ActorRef<SupervisorMessage>) {
        let Some(child) = self.children.remove(&id) else {
            return;
        };
        self.cells.remove(&child);
        if self.shutting_down {
            return;
        }
        let m = &self.args.ctx.metrics;
        m.actor_restarts.with_label_values(&[child.name()]).inc();
        let r = self.restarts.entry(child).or_insert(Restarts {
            in_a_row: 0,
            started: Instant::now(),
        });
        if r.started.elapsed() > HEALTHY_AFTER {
            r.in_a_row = 0;
        }
        let delay = restart_delay(r.in_a_row);
        r.in_a_row = r.in_a_row.saturating_add(1);
        r.started = Instant::now() + delay;
        if r.in_a_row >= CRASH_LOOP && self.failing.insert(child) {
            tracing::error!(
                actor = child.name(),
                restarts = r.in_a_row,
                "actor keeps failing; the node reports not ready until it runs for a minute"
            );
            self.report_supervision();
        }
        tracing::error!(
            actor = child.name(),
            reason,
            ?delay,
            "actor died; restarting"
        );
        myself.send_after(delay, move || SupervisorMessage::Start(child));
    }

    /// Tells the HealthMonitor which children are crash-looping (none: `None`).
    fn report_supervision(&self) {
        let verdict = (!self.failing.is_empty()).then(|| {
            let names: Vec<&str> = self.failing.iter().map(|c| c.name()).collect();
            format!("crash-looping: {}", names.join(", "))
        });
        let health = &self.args.ctx.names.health;
        if let Some(h) = ActorRef::<HealthMessage>::where_is(health.clone()) {
            let _ = h.cast(HealthMessage::Supervision(verdict));
        }
    }

    /// Children that have now run for a minute since their last restart are healthy.
    fn forgive(&mut self) {
        let before = self.failing.len();
        let restarts = &self.restarts;
        self.failing.retain(|child| {
            restarts
                .get(child)
                .is_none_or(|r| r.started.elapsed() < HEALTHY_AFTER)
        });
        if self.failing.len() != before {
            self.report_supervision();
        }
    }

    /// The drain order: readiness off and no queued task started from now on (running
    /// ones get `grace`, counted from now); the HTTP listener stays open for `drain` so
    /// probes see `503 draining` and in-flight requests finish; then HTTP closes, the
    /// pool's running tasks finish (or the grace ends), and the rest stops.
    async fn shutdown(&mut self, grace: Duration, drain: Duration) {
        self.shutting_down = true;
        let names = self.args.ctx.names.clone();
        if let Some(h) = ActorRef::<HealthMessage>::where_is(names.health.clone()) {
            let _ = h.cast(HealthMessage::SetDraining);
        }
        // It keeps renewing the lease while the pool drains, and claims nothing more.
        if let Some(f) = ActorRef::<FailoverMessage>::where_is(names.failover.clone()) {
            let _ = f.cast(FailoverMessage::SetDraining);
        }
        if let Some(d) = ActorRef::<DispatcherMessage>::where_is(names.dispatcher.clone()) {
            let _ = d.cast(DispatcherMessage::Leave);
        }
        // The pool stops starting queued tasks now, not once HTTP has closed: those stay
        // queued in the store for another node or the restart.
        let pool_drained = ActorRef::<PoolMessage>::where_is(names.pool.clone()).map(|pool| {
            let grace_ms = grace.as_millis().min(u64::MAX as u128) as u64;
            tokio::spawn(async move { ractor::call_t!(pool, PoolMessage::Drain, grace_ms) })
        });
        self.stop_child(Child::Autoscaler).await;
        if !drain.is_zero() {
            tracing::info!(
                drain_ms = drain.as_millis() as u64,
                "draining: readiness answers 503; the HTTP port closes after the drain period"
            );
            tokio::time::sleep(drain).await;
        }
        // The endpoint stays until the pool has drained: peers claim this node's tasks
        // when it goes, and the attempts still finishing here must not run twice.
        self.stop_child(Child::HttpIngress).await;
        let drained = match pool_drained {
            Some(call) => matches!(call.await, Ok(Ok(()))),
            None => true,
        };
        if !drained {
            tracing::warn!(
                ?grace,
                "running tasks did not finish within the grace period; they are \
                 re-run after restart"
            );
        }
        // Heartbeats stop with the endpoint: peers know this node is leaving (`Leaving`)
        // and claim nothing for its silence.
        for child in [
            Child::Heartbeat,
            Child::PeerEndpoint,
            Child::WorkerPool,
            Child::Dispatcher,
            Child::HealthMonitor,
            Child::Failover,
        ] {
            self.stop_child(child).await;
        }
    }

    async fn stop_child(&mut self, child: Child) {
        if let Some(cell) = self.cells.remove(&child) {
            self.children.remove(&cell.get_id());
            let _ = cell
                .stop_and_wait(
                    Some("node shutting down".into()),
                    Some(Duration::from_secs(10)),
                )
                .await;
        }
    }
}

/// 50 ms doubling per restart in a row, at most 10 s.
fn restart_delay(in_a_row: u32) -> Duration {
    Duration::from_millis(50)
        .saturating_mul(1 << in_a_row.min(8))
        .min(Duration::from_secs(10))
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            args,
            children: HashMap::new(),
            cells: HashMap::new(),
            restarts: HashMap::new(),
            failing: std::collections::BTreeSet::new(),
            shutting_down: false,
        };
        let clustered = state.args.ctx.cluster.is_some();
        for child in Child::ALL {
            if !child.clustered_only() || clustered {
                state.start(child, &myself).await?;
            }
        }
        myself.send_interval(PURGE_INTERVAL, || SupervisorMessage::Purge);
        let _ = myself.cast(SupervisorMessage::Purge);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMessage::Start(child) if !state.shutting_down => {
                if let Err(e) = state.start(child, &myself).await {
                    tracing::error!(actor = child.name(), error = %e, "restart failed; retrying");
                    myself.send_after(Duration::from_secs(1), move || {
                        SupervisorMessage::Start(child)
                    });
                    return Ok(());
                }
                tracing::info!(actor = child.name(), "actor restarted");
                if child == Child::HealthMonitor {
                    state.report_supervision();
                }
                if child == Child::Dispatcher
                    && let Some(pool) =
                        ActorRef::<PoolMessage>::where_is(state.args.ctx.names.pool.clone())
                {
                    let _ = pool.cast(PoolMessage::Rescan);
                }
            }
            SupervisorMessage::Start(_) => {}
            SupervisorMessage::Purge => {
                state.forgive();
                let store = state.args.ctx.store.clone();
                let ttl_ms = state.args.result_ttl.as_millis() as u64;
                tokio::spawn(async move {
                    match store.purge_finished(now_ms().saturating_sub(ttl_ms)).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(tasks = n, "purged expired finished tasks"),
                        Err(e) => tracing::warn!(error = %e, "purging finished tasks failed"),
                    }
                });
            }
            SupervisorMessage::Shutdown {
                grace,
                drain,
                reply,
            } => {
                state.shutdown(grace, drain).await;
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                state.child_died(cell.get_id(), &err.to_string(), &myself);
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let reason = reason.unwrap_or_else(|| "stopped".into());
                state.child_died(cell.get_id(), &reason, &myself);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delay_doubles_and_caps() {
        assert_eq!(restart_delay(0), Duration::from_millis(50));
        assert_eq!(restart_delay(1), Duration::from_millis(100));
        assert_eq!(restart_delay(20), Duration::from_secs(10));
    }
}
