//! Cancel: a task is looked for in the local pool first, then asked of every live peer.

use ractor::{ActorCell, ActorRef, RpcReplyPort};
use taskmesh_cluster::wire::CancelFound;
use taskmesh_kernels::task::TaskId;

use super::remote;
use super::state::DispatcherState;
use crate::handoff::CancelOutcome;
use crate::worker_pool::PoolMessage;

/// What the peers' answers add up to: a running copy signalled anywhere wins (its
/// worker records the cancel), then a dequeued one (the caller records it).
pub(super) fn outcome(found: &[CancelFound]) -> CancelOutcome {
    if found.contains(&CancelFound::Signalled) {
        CancelOutcome::Signalled
    } else if found.contains(&CancelFound::Dequeued) {
        CancelOutcome::Removed
    } else {
        CancelOutcome::NotHere
    }
}

impl DispatcherState {
    pub(super) fn cancel(&self, id: TaskId, reply: RpcReplyPort<CancelOutcome>) {
        let pool = ActorRef::<PoolMessage>::where_is(self.ctx.names.pool.clone());
        let peers: Vec<ActorCell> = self
            .peers
            .peers
            .values()
            .filter(|p| p.introduced && !p.down)
            .filter_map(|p| p.endpoint.clone())
            .collect();
        let timeout = self.config.ack_timeout;
        // Answer from a task of its own so a slow pool or peer never stalls admission.
        tokio::spawn(async move {
            let local = match pool {
                Some(pool) => ractor::call_t!(pool, PoolMessage::Cancel, 2000, id)
                    .unwrap_or(CancelOutcome::NotHere),
                None => CancelOutcome::NotHere,
            };
            if local != CancelOutcome::NotHere {
                let _ = reply.send(local);
                return;
            }
            let mut asks = tokio::task::JoinSet::new();
            for cell in peers {
                asks.spawn(async move { remote::cancel(&cell, id, timeout).await });
            }
            let found: Vec<CancelFound> = asks.join_all().await;
            let _ = reply.send(outcome(&found));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_copy_anywhere_wins_then_a_queued_one() {
        use CancelFound::{Dequeued, NotHere, Signalled};
        assert_eq!(outcome(&[]), CancelOutcome::NotHere);
        assert_eq!(outcome(&[NotHere, NotHere]), CancelOutcome::NotHere);
        assert_eq!(outcome(&[NotHere, Dequeued]), CancelOutcome::Removed);
        assert_eq!(outcome(&[Dequeued, Signalled]), CancelOutcome::Signalled);
    }
}
