//! The Dispatcher: admission control, placement across the cluster, and what this node
//! knows of its peers.
//!
//! A submission is admitted before it is stored (so a 503 never leaves a stored task
//! behind) and placed after: [`DispatcherMessage::Admit`] reserves room on the chosen
//! pools, the ingress writes the tasks durably (each owned by its target node), then
//! [`DispatcherMessage::Place`] hands them over (or releases the room of tasks that were
//! not created). The decision is [`policy::place_all`], a pure function over a view of
//! every pool: the local one and each peer's, refreshed by load reports a few times a
//! second. When the answer cannot depend on the peers — a node without a cluster, or a
//! local pool that keeps the tasks whatever the peers' load — the ingress decides
//! without a message ([`admit_here`]).
//!
//! A task placed on a peer goes to the peer's endpoint, which acknowledges once its pool
//! holds it. A missing acknowledgement counts against the peer's circuit breaker
//! ([`taskmesh_cluster::breaker`]); a refusal (full, draining) does not, since the peer
//! answered. Refused tasks are placed again without it,
//! unacknowledged ones stay with it (it may run them) until the store shows it gone.
//! Peers are found through the endpoint process group: when a peer's endpoint appears
//! the dispatcher introduces this node to it, and the peer is up once it answers. From
//! then on the Heartbeat actor's failure detector says whether it is up, suspect or
//! down ([`DispatcherMessage::PeerLiveness`]). A peer that is not up gets no new work at
//! once; the peers held down (and why) go to the Failover actor on every change and
//! tick, which claims their tasks only when the store shows they stopped renewing their
//! lease ([`crate::failover`]). A peer down for `--forget-peer-after-secs` is forgotten.

use std::time::{Duration, Instant};

use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use taskmesh_cluster::wire::{ENDPOINT_GROUP, Hello, LoadReport};
use taskmesh_kernels::task::TaskId;

use crate::context::NodeContext;
use crate::handoff::{CancelOutcome, Job};
use crate::task::TaskRecord;
use crate::worker_pool::PoolMessage;

mod admission;
mod cancel;
mod handover;
mod membership;
pub mod peers;
pub mod policy;
pub mod remote;
mod state;
pub mod view;

pub use admission::{Demand, Reservation, admit_here, place};
use peers::{PeerPulse, PeerSettings};
use policy::PlaceError;
use remote::CallFailure;
use state::DispatcherState;
use view::ClusterView;

/// How often the dispatcher refreshes its peer gauges, hands the peers it holds down to
/// the Failover actor and forgets peers down for too long.
const TICK: Duration = Duration::from_millis(250);

/// Settings of the dispatcher, fixed for its lifetime.
#[derive(Clone, Copy, Debug)]
pub struct DispatcherConfig {
    /// Peer suspicion and circuit breaking.
    pub peers: PeerSettings,
    /// How long a peer has to acknowledge dispatched tasks.
    pub ack_timeout: Duration,
    /// How long a peer has to answer an introduction.
    pub hello_timeout: Duration,
    /// How often the local load is reported to every peer.
    pub broadcast_interval: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            peers: PeerSettings::default(),
            ack_timeout: Duration::from_secs(2),
            hello_timeout: Duration::from_secs(2),
            broadcast_interval: Duration::from_millis(200),
        }
    }
}

/// What the dispatcher is started with.
pub struct DispatcherArgs {
    /// Shared node handles.
    pub ctx: NodeContext,
    /// Settings.
    pub config: DispatcherConfig,
}

/// Messages of the Dispatcher.
pub enum DispatcherMessage {
    /// Reserve room for tasks of these kinds and resource classes (all or nothing).
    Admit {
        /// One entry per task: its kind and optional resource class.
        demands: Vec<Demand>,
        /// Where they will go, or why they cannot be taken.
        reply: RpcReplyPort<Result<Reservation, PlaceError>>,
    },
    /// Hand over stored tasks under a reservation; `None` releases a task's room (it
    /// was a duplicate, or storing it failed).
    Place {
        /// What [`DispatcherMessage::Admit`] returned.
        reservation: Reservation,
        /// One entry per reserved task.
        jobs: Vec<Option<Job>>,
    },
    /// Timer: report the local pool's load to every peer.
    Broadcast,
    /// Cancel a task wherever it is held.
    Cancel(TaskId, RpcReplyPort<CancelOutcome>),
    /// This node and its peers, as `GET /v1/cluster` shows them.
    GetCluster(RpcReplyPort<ClusterView>),
    /// A peer introduced itself (through this node's endpoint).
    PeerHello(Hello),
    /// A peer's pool load (through this node's endpoint).
    PeerLoad(LoadReport),
    /// A peer is leaving the cluster.
    PeerLeaving(String),
    /// This node is leaving: tell every peer so it stops sending work at once.
    Leave,
    /// The Heartbeat actor's verdicts: peers whose liveness changed, or every peer
    /// now and then so a restarted dispatcher catches up.
    PeerLiveness(Vec<PeerPulse>),
    /// Timer: refresh the gauges, hand the down set to the Failover actor, forget peers
    /// long down.
    Tick,
    /// The answer to this node's introduction to a peer.
    Welcomed {
        /// The peer.
        node_id: String,
        /// Its introduction, or why it did not answer.
        answer: Result<Hello, CallFailure>,
    },
    /// Tasks this node claimed from a lost holder: placed like new ones.
    Reclaimed {
        /// The lost node.
        from: String,
        /// The claimed tasks, as they are now.
        records: Vec<TaskRecord>,
    },
    /// Tasks now held by `node` in the store: hand them over.
    Handover {
        /// The holder.
        node: String,
        /// The tasks.
        jobs: Vec<Job>,
    },
    /// Retry moving tasks between holders in the store (the last try failed).
    Transfer {
        /// Who holds them in the store.
        holder: String,
        /// Who should.
        target: String,
        /// The tasks.
        jobs: Vec<Job>,
    },
    /// How a dispatch to a peer ended.
    Dispatched {
        /// The peer.
        node_id: String,
        /// The tasks sent (placed again elsewhere if the peer refused them).
        jobs: Vec<Job>,
        /// When they were sent.
        sent_at: Instant,
        /// The peer's acknowledgement, or the failure.
        outcome: Result<(), CallFailure>,
    },
}

// Local only: the cluster feature of ractor needs the impl spelled out.
impl ractor::Message for DispatcherMessage {}

/// Claims every unfinished task held by the lost node `from` for this node and hands
/// them to the dispatcher (or, while it restarts, straight to the pool). Only
/// [`crate::failover`] calls it, on the store's evidence that `from` stopped. Returns
/// whether the claim was written.
pub async fn claim_from(ctx: &NodeContext, from: &str, why: &str) -> bool {
    match ctx.store.claim(from, &ctx.node_id).await {
        Ok(records) if records.is_empty() => true,
        Ok(records) => {
            tracing::warn!(
                peer = from,
                tasks = records.len(),
                why,
                "claimed a lost node's tasks"
            );
            ctx.metrics.reclaimed.inc_by(records.len() as u64);
            let dispatcher = ActorRef::<DispatcherMessage>::where_is(ctx.names.dispatcher.clone());
            let Some(dispatcher) = dispatcher else {
                run_here(ctx, records);
                return true;
            };
            let claimed = DispatcherMessage::Reclaimed {
                from: from.to_owned(),
                records,
            };
            if let Err(ractor::MessagingErr::SendErr(DispatcherMessage::Reclaimed {
                records,
                ..
            })) = dispatcher.cast(claimed)
            {
                run_here(ctx, records);
            }
            true
        }
        Err(e) => {
            tracing::warn!(peer = from, error = %e, "claiming a lost node's tasks failed");
            false
        }
    }
}

/// The dispatcher is restarting: this node holds the claimed tasks, so its pool runs them.
fn run_here(ctx: &NodeContext, records: Vec<TaskRecord>) {
    if let Some(pool) = ActorRef::<PoolMessage>::where_is(ctx.names.pool.clone()) {
        let _ = pool.cast(PoolMessage::Recovered(records));
    }
}

/// The Dispatcher actor.
pub struct Dispatcher;

impl Actor for Dispatcher {
    type Msg = DispatcherMessage;
    type State = DispatcherState;
    type Arguments = DispatcherArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: DispatcherArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let clustered = args.ctx.cluster.is_some();
        let broadcast = args.config.broadcast_interval;
        let mut state = DispatcherState::new(args.ctx, args.config, myself.clone());
        if clustered {
            myself.send_interval(TICK, || DispatcherMessage::Tick);
            myself.send_interval(broadcast, || DispatcherMessage::Broadcast);
            ractor::pg::monitor(ENDPOINT_GROUP.to_owned(), myself.get_cell());
            state.endpoints_joined(ractor::pg::get_members(&ENDPOINT_GROUP.to_owned()));
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor(ENDPOINT_GROUP.to_owned(), myself.get_id());
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            DispatcherMessage::Admit { demands, reply } => {
                let admitted = state.admit(&demands);
                if let Err(ractor::MessagingErr::SendErr(Ok(reservation))) = reply.send(admitted) {
                    // The caller gave up waiting: give the room back.
                    let jobs = (0..reservation.len()).map(|_| None).collect();
                    state.place(reservation, jobs);
                }
            }
            DispatcherMessage::Place { reservation, jobs } => state.place(reservation, jobs),
            DispatcherMessage::Broadcast => state.broadcast(),
            DispatcherMessage::Cancel(id, reply) => state.cancel(id, reply),
            DispatcherMessage::GetCluster(reply) => {
                let _ = reply.send(state.cluster_view(Instant::now()));
            }
            DispatcherMessage::PeerHello(hello) => state.peer_hello(hello),
            DispatcherMessage::PeerLoad(report) => state.peer_load(report),
            DispatcherMessage::PeerLeaving(node_id) => state.peer_leaving(&node_id),
            DispatcherMessage::Leave => state.leave(),
            DispatcherMessage::PeerLiveness(pulses) => state.peer_liveness(&pulses),
            DispatcherMessage::Tick => state.tick(),
            DispatcherMessage::Welcomed { node_id, answer } => state.welcomed(&node_id, answer),
            DispatcherMessage::Reclaimed { from, records } => state.reclaimed(&from, records),
            DispatcherMessage::Handover { node, jobs } => state.send(&node, jobs),
            DispatcherMessage::Transfer {
                holder,
                target,
                jobs,
            } => state.transfer(&holder, target, jobs),
            DispatcherMessage::Dispatched {
                node_id,
                jobs,
                sent_at,
                outcome,
            } => state.dispatched(&node_id, jobs, sent_at, outcome),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(change) = event {
            match change {
                GroupChangeMessage::Join(_, group, cells) if group == ENDPOINT_GROUP => {
                    state.endpoints_joined(cells);
                }
                GroupChangeMessage::Leave(_, group, cells) if group == ENDPOINT_GROUP => {
                    state.endpoints_left(cells);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
