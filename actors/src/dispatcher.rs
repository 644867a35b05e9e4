//! The Dispatcher: admission control and placement.
//!
//! A submission is admitted before it is stored (so a 503 never leaves a stored task
//! behind) and placed after: [`DispatcherMessage::Admit`] reserves room on the chosen
//! pools, the ingress writes the tasks durably, then [`DispatcherMessage::Place`] hands
//! them over (or releases the room of tasks that were not created). The decision itself
//! is [`policy::place_all`], a pure function over a view of every pool; today the view
//! holds the local pool, with the cluster it holds one per node.

use std::collections::HashMap;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use taskmesh_cluster::protocol::TaskId;

use crate::context::NodeContext;
use crate::worker_pool::{CancelOutcome, Job, PoolLoad, PoolMessage};

pub mod policy;

use policy::{PlaceError, PoolView};

/// Room reserved for a submission: one target node per task, in order.
#[derive(Debug)]
pub struct Reservation {
    targets: Vec<String>,
}

impl Reservation {
    /// How many tasks the reservation covers.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether it covers no task.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// Messages of the Dispatcher.
pub enum DispatcherMessage {
    /// Reserve room for tasks with these resource classes (all or nothing).
    Admit {
        /// One entry per task: its optional resource class.
        classes: Vec<Option<String>>,
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
    /// A pool's load report.
    PoolLoad(PoolLoad),
    /// Cancel a task wherever it is held.
    Cancel(TaskId, RpcReplyPort<CancelOutcome>),
    /// The dispatcher's view of every pool.
    GetView(RpcReplyPort<Vec<PoolView>>),
}

/// The Dispatcher actor.
pub struct Dispatcher;

struct PoolEntry {
    last: PoolLoad,
    /// Tasks sent to the pool's current incarnation.
    sent_total: u64,
    /// Tasks admitted for the pool and not yet placed or released.
    reserved: usize,
}

impl PoolEntry {
    fn view(&self, local_node: &str) -> PoolView {
        let unseen = self.sent_total.saturating_sub(self.last.received_total) as usize;
        PoolView {
            node: self.last.node.clone(),
            local: self.last.node == local_node,
            labels: self.last.labels.clone(),
            capacity: self.last.capacity,
            queued: self.last.queued.iter().sum::<usize>() + unseen + self.reserved,
            running: self.last.busy,
            workers: self.last.workers,
            available: !self.last.draining && self.last.workers > 0,
        }
    }
}

/// The dispatcher's state.
pub struct DispatcherState {
    ctx: NodeContext,
    pools: HashMap<String, PoolEntry>,
}

impl DispatcherState {
    fn views(&self) -> (Vec<String>, Vec<PoolView>) {
        let mut nodes: Vec<&String> = self.pools.keys().collect();
        nodes.sort();
        let views = nodes
            .iter()
            .map(|n| self.pools[*n].view(&self.ctx.node_id))
            .collect();
        (nodes.into_iter().cloned().collect(), views)
    }

    fn admit(&mut self, classes: &[Option<String>]) -> Result<Reservation, PlaceError> {
        let (nodes, views) = self.views();
        let classes: Vec<Option<&str>> = classes.iter().map(Option::as_deref).collect();
        let placed = policy::place_all(&views, &classes)?;
        let targets: Vec<String> = placed.into_iter().map(|i| nodes[i].clone()).collect();
        for node in &targets {
            if let Some(entry) = self.pools.get_mut(node) {
                entry.reserved += 1;
            }
        }
        Ok(Reservation { targets })
    }

    fn place(&mut self, reservation: Reservation, jobs: Vec<Option<Job>>) {
        let mut batches: HashMap<String, Vec<Job>> = HashMap::new();
        for (node, job) in reservation.targets.into_iter().zip(jobs) {
            if let Some(entry) = self.pools.get_mut(&node) {
                entry.reserved = entry.reserved.saturating_sub(1);
                if job.is_some() {
                    entry.sent_total += 1;
                }
            }
            if let Some(job) = job {
                batches.entry(node).or_default().push(job);
            }
        }
        for (node, jobs) in batches {
            self.send(&node, jobs);
        }
    }

    fn send(&self, node: &str, jobs: Vec<Job>) {
        // Only the local pool exists until the cluster lands.
        debug_assert_eq!(node, &*self.ctx.node_id);
        match ActorRef::<PoolMessage>::where_is(self.ctx.names.pool.clone()) {
            Some(pool) if pool.cast(PoolMessage::Enqueue(jobs)).is_ok() => {}
            _ => tracing::warn!(
                "local pool unavailable; the tasks stay queued in the store and are \
                 recovered when it restarts"
            ),
        }
    }

    fn record_load(&mut self, load: PoolLoad) {
        match self.pools.get_mut(&load.node) {
            Some(entry) if entry.last.incarnation == load.incarnation => entry.last = load,
            _ => {
                // A new pool (or a restarted one): it has seen nothing we sent before.
                let entry = PoolEntry {
                    sent_total: load.received_total,
                    reserved: 0,
                    last: load,
                };
                self.pools.insert(entry.last.node.clone(), entry);
            }
        }
    }
}

impl Actor for Dispatcher {
    type Msg = DispatcherMessage;
    type State = DispatcherState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        ctx: NodeContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        // Ask for a load report now rather than waiting for the pool's next tick.
        if let Some(pool) = ActorRef::<PoolMessage>::where_is(ctx.names.pool.clone()) {
            let _ = pool.cast(PoolMessage::ReportLoad);
        }
        Ok(DispatcherState {
            ctx,
            pools: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            DispatcherMessage::Admit { classes, reply } => {
                let admitted = state.admit(&classes);
                if let Err(ractor::MessagingErr::SendErr(Ok(reservation))) = reply.send(admitted) {
                    // The caller gave up waiting: give the room back.
                    let jobs = (0..reservation.len()).map(|_| None).collect();
                    state.place(reservation, jobs);
                }
            }
            DispatcherMessage::Place { reservation, jobs } => state.place(reservation, jobs),
            DispatcherMessage::PoolLoad(load) => state.record_load(load),
            DispatcherMessage::Cancel(id, reply) => {
                let pool = ActorRef::<PoolMessage>::where_is(state.ctx.names.pool.clone());
                let Some(pool) = pool else {
                    let _ = reply.send(CancelOutcome::NotHere);
                    return Ok(());
                };
                // Answer from a task of its own so a slow pool never stalls admission.
                tokio::spawn(async move {
                    let outcome = ractor::call_t!(pool, PoolMessage::Cancel, 2000, id)
                        .unwrap_or(CancelOutcome::NotHere);
                    let _ = reply.send(outcome);
                });
            }
            DispatcherMessage::GetView(reply) => {
                let _ = reply.send(state.views().1);
            }
        }
        Ok(())
    }
}
