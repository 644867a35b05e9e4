//! The messages nodes send each other, and how they cross the wire.
//!
//! Every node runs one endpoint actor whose message type is [`PeerMessage`]; it joins the
//! process group [`ENDPOINT_GROUP`], so each node finds every peer's endpoint through
//! `ractor::pg`. A message is either a one-way [`Notice`] or a [`Request`] that gets
//! one [`Reply`] within the caller's timeout.
//!
//! The payloads are MessagePack (rmp-serde, with field names), so a field added later is
//! ignored by older peers. Variant names of [`Notice`], [`Request`] and [`Reply`] and the
//! field names are a stable contract; changing one bumps
//! [`crate::protocol::PROTOCOL_VERSION`], which peers compare in [`Request::Hello`].
//!
//! Heartbeats travel apart from all of that: each node's heartbeat actor joins
//! [`HEARTBEAT_GROUP`] and takes [`HeartbeatMessage`]s, whose only remote variant is a
//! [`Heartbeat`]. A dedicated actor and group keep them out of the endpoint's mailbox,
//! where a burst of dispatches could delay them.
//!
//! A payload that does not decode is dropped (ractor_cluster gives no way to answer it),
//! counted in [`decode_failures`], and logged; a caller waiting for the reply then gets
//! its timeout, which every remote call sets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::RpcReplyPort;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use serde::{Deserialize, Serialize};

use taskmesh_kernels::task::{TaskId, TaskSpec};

/// The process group every node's endpoint joins.
pub const ENDPOINT_GROUP: &str = "taskmesh.endpoints";

/// The process group every node's heartbeat actor joins.
pub const HEARTBEAT_GROUP: &str = "taskmesh.heartbeats";

const NOTICE: &str = "notice";
const REQUEST: &str = "request";
const HEARTBEAT: &str = "heartbeat";

static DECODE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// How many messages from peers failed to decode since the process started.
pub fn decode_failures() -> u64 {
    DECODE_FAILURES.load(Ordering::Relaxed)
}

/// Who a node is, as it introduces itself to a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id (stable across restarts: `--node-id`, or the hostname).
    pub node_id: String,
    /// Random per process: a restarted node has a new one.
    pub generation: u64,
    /// The cluster address peers dial (`--advertise`).
    pub cluster_address: String,
    /// Where its HTTP API listens, as peers and clients reach it.
    pub http_address: String,
    /// Its resource labels (`--labels`).
    pub labels: Vec<String>,
    /// The task kinds it can run, sorted: placement sends a task only to a node that
    /// has its kind. They change only when the node starts, so they travel here and not
    /// in every [`LoadReport`]. Absent from older peers: none, so they get no work from
    /// newer nodes (a task never goes where it cannot run).
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// A node's introduction: sent in [`Request::Hello`] and answered with [`Reply::Welcome`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's [`crate::protocol::PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// The sender.
    pub node: NodeInfo,
}

/// A worker pool's load, broadcast a few times a second.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The node the pool runs on.
    pub node_id: String,
    /// Changes whenever the pool restarts.
    pub incarnation: u64,
    /// Tasks waiting, per priority (high, normal, low).
    pub queued: [u64; 3],
    /// Tasks waiting for a retry's backoff.
    pub delayed: u64,
    /// Workers running a task.
    pub busy: u64,
    /// Live workers.
    pub workers: u64,
    /// Queue capacity.
    pub capacity: u64,
    /// Tasks the pool received since its incarnation started.
    pub received_total: u64,
    /// Resource labels.
    pub labels: Vec<String>,
    /// Whether it takes no new work.
    pub draining: bool,
    /// Tasks on their way to the pool: admitted on the sender and not yet stored, or
    /// handed to the pool and not taken yet. Every node counts them against the pool's
    /// capacity, as the sender does (absent from older peers: 0).
    #[serde(default)]
    pub admitting: u64,
    /// Its external kinds (advertised in [`NodeInfo::kinds`]) that no HTTP worker serves
    /// now: placement sends their tasks there only when no node has a worker for them.
    /// Absent from older peers: none.
    #[serde(default)]
    pub unserved: Vec<String>,
}

/// One task handed to a peer's pool. The task's record is already durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchedTask {
    /// The task.
    pub id: TaskId,
    /// What to run (an `Arc` so the sender serializes the job's spec without copying
    /// it; on the wire it is a plain spec).
    pub spec: Arc<TaskSpec>,
    /// Attempts already made.
    pub attempts: u32,
    /// Read back from the store after a node was lost (an attempt may have died with
    /// it): the receiver records the next attempt as running before it runs.
    #[serde(default)]
    pub recovered: bool,
    /// The task's lease token in the store when it was sent (0 for a fresh task): every
    /// store write of the receiver's attempts carries it, and the store refuses them once
    /// the task has been claimed or reassigned again. Absent from older peers: 0.
    #[serde(default)]
    pub lease: u64,
}

/// One-way messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// The sender's pool load.
    Load(LoadReport),
    /// The sender is leaving the cluster (graceful shutdown).
    Leaving {
        /// Its node id.
        node_id: String,
    },
}

/// Messages that expect a [`Reply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Introduces the sender; answered with [`Reply::Welcome`] or [`Reply::Refused`].
    Hello(Hello),
    /// Hands tasks to the receiver's pool; answered with [`Reply::Accepted`] once they
    /// are in the pool's mailbox, or [`Reply::Refused`] when the pool is down.
    Dispatch {
        /// The sender's node id.
        from: String,
        /// The tasks.
        tasks: Vec<DispatchedTask>,
    },
    /// Cancels a task if the receiver's pool holds it.
    Cancel(TaskId),
}

/// What a peer found when asked to cancel a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelFound {
    /// It was queued there and is dropped.
    Dequeued,
    /// It is running there; its cancel token is set.
    Signalled,
    /// That node does not hold it.
    NotHere,
}

/// Answers to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The receiver's own introduction.
    Welcome(Hello),
    /// The receiver's pool holds this many of the dispatched tasks (all of them).
    Accepted {
        /// How many.
        count: u32,
    },
    /// The request was not carried out.
    Refused {
        /// Why, for logs and metrics.
        reason: String,
    },
    /// The outcome of a [`Request::Cancel`].
    Cancel(CancelFound),
}

/// The message type of a node's endpoint actor.
#[derive(Debug)]
pub enum PeerMessage {
    /// A one-way message.
    Notice(Notice),
    /// A request and the port its reply goes to.
    Request(Request, RpcReplyPort<Reply>),
}

/// Encodes a payload (named fields, so peers can add fields).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value)
}

/// Decodes a payload, counting a failure in [`decode_failures`].
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, BoxedDowncastErr> {
    rmp_serde::from_slice(bytes).map_err(|e| {
        DECODE_FAILURES.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, bytes = bytes.len(), "dropping a peer message that does not decode");
        BoxedDowncastErr
    })
}

fn encode_or_err<T: Serialize>(value: &T) -> Result<Vec<u8>, BoxedDowncastErr> {
    encode(value).map_err(|e| {
        tracing::error!(error = %e, "a message for a peer does not encode");
        BoxedDowncastErr
    })
}

/// A reply port whose replies are forwarded to `on_reply`, with `port`'s timeout.
fn forwarding_port<T: Send + 'static, U: Send + 'static>(
    timeout: Option<Duration>,
    on_reply: impl FnOnce(T) -> Option<U> + Send + 'static,
    port: RpcReplyPort<U>,
) -> RpcReplyPort<T> {
    let (tx, rx) = ractor::concurrency::oneshot();
    tokio::spawn(async move {
        let reply = match timeout {
            Some(t) => tokio::time::timeout(t, rx).await.ok().and_then(Result::ok),
            None => rx.await.ok(),
        };
        if let Some(converted) = reply.and_then(on_reply) {
            let _ = port.send(converted);
        }
    });
    match timeout {
        Some(t) => RpcReplyPort::from((tx, t)),
        None => RpcReplyPort::from(tx),
    }
}

impl ractor::Message for PeerMessage {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            PeerMessage::Notice(notice) => Ok(SerializedMessage::Cast {
                variant: NOTICE.to_owned(),
                args: encode_or_err(&notice)?,
                metadata: None,
            }),
            PeerMessage::Request(request, reply) => {
                let args = encode_or_err(&request)?;
                let timeout = reply.get_timeout();
                // The peer answers with bytes; decode them into the caller's port.
                let bytes_port =
                    forwarding_port(timeout, |bytes: Vec<u8>| decode(&bytes).ok(), reply);
                Ok(SerializedMessage::Call {
                    variant: REQUEST.to_owned(),
                    args,
                    reply: bytes_port,
                    metadata: None,
                })
            }
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match message {
            SerializedMessage::Cast { variant, args, .. } if variant == NOTICE => {
                Ok(PeerMessage::Notice(decode(&args)?))
            }
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } if variant == REQUEST => {
                let request = decode(&args)?;
                let timeout = reply.get_timeout();
                // Our answer goes back to the peer as bytes.
                let typed = forwarding_port(timeout, |r: Reply| encode(&r).ok(), reply);
                Ok(PeerMessage::Request(request, typed))
            }
            other => {
                DECODE_FAILURES.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = ?other, "dropping a peer message of an unknown variant");
                Err(BoxedDowncastErr)
            }
        }
    }
}

/// A liveness signal, sent by every node's heartbeat actor to every peer's on a fixed
/// period (`--heartbeat-interval-ms`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender's node id.
    pub from: String,
    /// Counts up from 0 with each heartbeat the sender's actor sends (to all peers);
    /// starts again when that actor restarts. For logs and debugging.
    pub seq: u64,
}

/// The message type of a node's heartbeat actor.
#[derive(Debug)]
pub enum HeartbeatMessage {
    /// A peer's heartbeat: the one variant that crosses the wire.
    Beat(Heartbeat),
    /// The actor's own timer: send heartbeats and judge the peers. Never leaves the node.
    Tick,
}

impl ractor::Message for HeartbeatMessage {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            HeartbeatMessage::Beat(beat) => Ok(SerializedMessage::Cast {
                variant: HEARTBEAT.to_owned(),
                args: encode_or_err(&beat)?,
                metadata: None,
            }),
            HeartbeatMessage::Tick => {
                tracing::error!("a heartbeat actor's tick was sent to a peer");
                Err(BoxedDowncastErr)
            }
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match message {
            SerializedMessage::Cast { variant, args, .. } if variant == HEARTBEAT => {
                Ok(HeartbeatMessage::Beat(decode(&args)?))
            }
            other => {
                DECODE_FAILURES.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = ?other, "dropping a heartbeat of an unknown variant");
                Err(BoxedDowncastErr)
            }
        }
    }
}

#[cfg(test)]
mod tests;
