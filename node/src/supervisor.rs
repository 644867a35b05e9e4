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
//!
//! # Layout
//! - this module: the root actor, its messages and the shutdown's drain order.
//! - `children`: which children there are and how each is spawned.
//! - `restarts`: the restart backoff and the crash-loop verdict.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use taskmesh_actors::auth::Authenticator;
use taskmesh_actors::autoscaler::AutoscalerConfig;
use taskmesh_actors::context::NodeContext;
use taskmesh_actors::dispatcher::{DispatcherConfig, DispatcherMessage};
use taskmesh_actors::failover::{FailoverConfig, FailoverMessage};
use taskmesh_actors::health::{HealthConfig, HealthMessage};
use taskmesh_actors::heartbeat::HeartbeatConfig;
use taskmesh_actors::ingress::IngressLimits;
use taskmesh_actors::task::now_ms;
use taskmesh_actors::worker_pool::{PoolMessage, WorkerPoolConfig};

mod children;
mod restarts;

pub use children::Child;
use restarts::Restarts;

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
    /// Checks API keys (`--auth on`); `None` leaves the API open.
    pub auth: Option<Arc<Authenticator>>,
    /// The bound HTTP listener.
    pub listener: Arc<std::net::TcpListener>,
    /// HTTPS (`--tls-cert`); `None` for plain HTTP.
    pub https: Option<tokio_rustls::TlsAcceptor>,
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

impl SupervisorState {
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
