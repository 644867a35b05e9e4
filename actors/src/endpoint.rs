//! The PeerEndpoint: this node's face to its peers.
//!
//! It is the one actor whose messages cross the network ([`PeerMessage`], defined with
//! the rest of the wire protocol in `taskmesh_cluster::wire`). It joins the process group
//! [`ENDPOINT_GROUP`], which ractor_cluster mirrors to every peer, and turns what peers
//! send into local messages: dispatched tasks go to the WorkerPool, load reports and
//! introductions to the Dispatcher. Keeping the wire types here, out of the pool's and
//! dispatcher's own message enums, lets those carry local handles freely.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use taskmesh_cluster::protocol::PROTOCOL_VERSION;
use taskmesh_cluster::wire::{
    CancelFound, DispatchedTask, ENDPOINT_GROUP, Hello, Notice, PeerMessage, Reply, Request,
};

use crate::context::NodeContext;
use crate::dispatcher::DispatcherMessage;
use crate::handoff::{CancelOutcome, Job};
use crate::worker_pool::PoolMessage;

/// The PeerEndpoint actor.
pub struct PeerEndpoint;

/// The endpoint's state: the node's handles and its own introduction.
pub struct EndpointState {
    ctx: NodeContext,
    hello: Hello,
}

fn pool(ctx: &NodeContext) -> Option<ActorRef<PoolMessage>> {
    ActorRef::where_is(ctx.names.pool.clone())
}

fn dispatcher(ctx: &NodeContext) -> Option<ActorRef<DispatcherMessage>> {
    ActorRef::where_is(ctx.names.dispatcher.clone())
}

impl EndpointState {
    fn refuse(reason: &str) -> Reply {
        Reply::Refused {
            reason: reason.to_owned(),
        }
    }

    /// Answers a peer's request on `reply`; a cancel answers from a task of its own so a
    /// busy pool never stalls the endpoint.
    fn answer(&self, request: Request, reply: RpcReplyPort<Reply>) {
        let answer = match request {
            Request::Hello(hello) => self.hello(hello),
            Request::Dispatch { from, tasks } => {
                self.dispatch(from, tasks, reply);
                return;
            }
            Request::Cancel(id) => {
                let Some(pool) = pool(&self.ctx) else {
                    let _ = reply.send(Reply::Cancel(CancelFound::NotHere));
                    return;
                };
                tokio::spawn(async move {
                    let found = match ractor::call_t!(pool, PoolMessage::Cancel, 2000, id) {
                        Ok(CancelOutcome::Removed) => CancelFound::Dequeued,
                        Ok(CancelOutcome::Signalled) => CancelFound::Signalled,
                        _ => CancelFound::NotHere,
                    };
                    let _ = reply.send(Reply::Cancel(found));
                });
                return;
            }
        };
        let _ = reply.send(answer);
    }

    fn hello(&self, hello: Hello) -> Reply {
        if hello.protocol_version != PROTOCOL_VERSION {
            tracing::warn!(
                peer = %hello.node.node_id,
                theirs = hello.protocol_version,
                ours = PROTOCOL_VERSION,
                "refusing a peer speaking another protocol version"
            );
            return Self::refuse("protocol version mismatch");
        }
        if let Some(d) = dispatcher(&self.ctx) {
            let _ = d.cast(DispatcherMessage::PeerHello(hello));
        }
        Reply::Welcome(self.hello.clone())
    }

    /// Offers a peer's tasks to the pool, answering from a task of its own. The pool
    /// takes them only within its capacity and while not draining; a refusal sends them
    /// back to the peer, whose dispatcher places them elsewhere (they were accepted, so
    /// they are never dropped).
    fn dispatch(&self, from: String, tasks: Vec<DispatchedTask>, reply: RpcReplyPort<Reply>) {
        let count = tasks.len() as u32;
        let jobs: Vec<Job> = tasks
            .into_iter()
            .map(|t| {
                let mut job = Job::new(t.id, t.spec);
                job.attempts = t.attempts;
                job.recovered = t.recovered;
                job.lease = t.lease;
                job
            })
            .collect();
        let Some(pool) = pool(&self.ctx) else {
            let _ = reply.send(Self::refuse("worker pool unavailable"));
            return;
        };
        tokio::spawn(async move {
            // No timeout here: the peer's call has its own, and a pool that answers
            // after this side gave up would hold tasks the peer placed elsewhere.
            let answer = match ractor::call!(pool, PoolMessage::Offer, jobs) {
                Ok(Ok(())) => {
                    tracing::debug!(%from, count, "took tasks from a peer");
                    Reply::Accepted { count }
                }
                Ok(Err(refused)) => {
                    tracing::debug!(%from, count, reason = refused.as_str(), "refused tasks from a peer");
                    Self::refuse(refused.as_str())
                }
                Err(_) => Self::refuse("worker pool unavailable"),
            };
            let _ = reply.send(answer);
        });
    }
}

impl Actor for PeerEndpoint {
    type Msg = PeerMessage;
    type State = EndpointState;
    type Arguments = NodeContext;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        ctx: NodeContext,
    ) -> Result<Self::State, ActorProcessingErr> {
        let info = ctx
            .cluster
            .clone()
            .ok_or("the peer endpoint runs only on a clustered node")?;
        ractor::pg::join(ENDPOINT_GROUP.to_owned(), vec![myself.get_cell()]);
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            node: Arc::unwrap_or_clone(info),
        };
        Ok(EndpointState { ctx, hello })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PeerMessage::Notice(Notice::Load(report)) => {
                if let Some(d) = dispatcher(&state.ctx) {
                    let _ = d.cast(DispatcherMessage::PeerLoad(report));
                }
            }
            PeerMessage::Notice(Notice::Leaving { node_id }) => {
                if let Some(d) = dispatcher(&state.ctx) {
                    let _ = d.cast(DispatcherMessage::PeerLeaving(node_id));
                }
            }
            PeerMessage::Request(request, reply) => state.answer(request, reply),
        }
        Ok(())
    }
}
