//! Calls to peers' endpoints. Every call has a timeout: a peer that is slow, gone, or
//! sent a reply that did not decode looks the same to the caller, a failure.

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorCell, ActorRef};
use taskmesh_cluster::wire::{
    CancelFound, DispatchedTask, Hello, Notice, PeerMessage, Reply, Request,
};

use crate::handoff::Job;

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

/// The most task payload one dispatch message carries. ractor_cluster tears down a
/// whole session on a frame over 16 MiB, so larger dispatches are split well below it.
const MAX_FRAME_PAYLOAD: usize = 4 << 20;

/// Splits jobs into dispatch messages of at most [`MAX_FRAME_PAYLOAD`] bytes of payload
/// (a single task is bounded by the HTTP params limit).
pub(super) fn frames(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut out: Vec<Vec<Job>> = Vec::new();
    let mut size = 0;
    for job in jobs {
        let len = job.spec.params.len() + job.spec.kind.len() + 256;
        match out.last_mut() {
            Some(chunk) if size + len <= MAX_FRAME_PAYLOAD => chunk.push(job),
            _ => {
                out.push(vec![job]);
                size = 0;
            }
        }
        size += len;
    }
    out
}

#[cfg(test)]
mod tests;
