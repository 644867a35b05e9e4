//! Calls to peers' endpoints. Every call has a timeout: a peer that is slow, gone, or
//! sent a reply that did not decode looks the same to the caller, a failure.

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorCell, ActorRef};
use taskmesh_cluster::wire::{
    CancelFound, DispatchedTask, Hello, Notice, PeerMessage, Reply, Request,
};

/// Why a call to a peer failed, as a metric label and a log message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// `timeout`, `refused`, `disconnected` or `unexpected`.
    pub reason: &'static str,
    /// Details for the log.
    pub detail: String,
}

impl CallFailure {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

async fn call(cell: &ActorCell, request: Request, timeout: Duration) -> Result<Reply, CallFailure> {
    let sent = ractor::rpc::call(
        cell,
        |reply| PeerMessage::Request(request, reply),
        Some(timeout),
    )
    .await;
    match sent {
        Ok(CallResult::Success(Reply::Refused { reason })) => {
            Err(CallFailure::new("refused", reason))
        }
        Ok(CallResult::Success(reply)) => Ok(reply),
        Ok(CallResult::Timeout) => Err(CallFailure::new("timeout", "no answer in time")),
        Ok(CallResult::SenderError) => Err(CallFailure::new("disconnected", "reply port dropped")),
        Err(e) => Err(CallFailure::new("disconnected", e.to_string())),
    }
}

/// Introduces this node to a peer's endpoint; the answer is the peer's introduction.
pub async fn hello(cell: &ActorCell, ours: Hello, timeout: Duration) -> Result<Hello, CallFailure> {
    match call(cell, Request::Hello(ours), timeout).await? {
        Reply::Welcome(theirs) => Ok(theirs),
        other => Err(CallFailure::new("unexpected", format!("{other:?}"))),
    }
}

/// Hands tasks to a peer's pool; `Ok` once the peer holds them all.
pub async fn dispatch(
    cell: &ActorCell,
    from: String,
    tasks: Vec<DispatchedTask>,
    timeout: Duration,
) -> Result<(), CallFailure> {
    let expected = tasks.len() as u32;
    match call(cell, Request::Dispatch { from, tasks }, timeout).await? {
        Reply::Accepted { count } if count == expected => Ok(()),
        other => Err(CallFailure::new("unexpected", format!("{other:?}"))),
    }
}

/// Asks a peer to cancel a task it may hold.
pub async fn cancel(
    cell: &ActorCell,
    id: taskmesh_kernels::task::TaskId,
    timeout: Duration,
) -> CancelFound {
    match call(cell, Request::Cancel(id), timeout).await {
        Ok(Reply::Cancel(found)) => found,
        _ => CancelFound::NotHere,
    }
}

/// Sends a one-way notice; a failure only means the peer's session is gone.
pub fn notify(cell: &ActorCell, notice: Notice) {
    let endpoint: ActorRef<PeerMessage> = cell.clone().into();
    let _ = endpoint.cast(PeerMessage::Notice(notice));
}
