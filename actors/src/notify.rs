//! Wakes long-polling readers when a task reaches a terminal state.
//!
//! `GET /v1/tasks/{id}?wait_ms=N` registers interest, re-reads the store, and sleeps on
//! a oneshot until the pool records the task's completion — no store polling.

use std::collections::HashMap;
use std::sync::Mutex;

use taskmesh_kernels::task::TaskId;
use tokio::sync::oneshot;

/// Registry of readers waiting for tasks to finish.
#[derive(Debug, Default)]
pub struct Notifier {
    waiters: Mutex<HashMap<TaskId, Vec<oneshot::Sender<()>>>>,
}

impl Notifier {
    /// A receiver that resolves when [`Notifier::notify`] is called for `id`.
    pub fn subscribe(&self, id: &TaskId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let list = waiters.entry(*id).or_default();
        // Drop senders whose readers gave up (timed out) so the list stays bounded.
        list.retain(|s| !s.is_closed());
        list.push(tx);
        rx
    }

    /// Wakes every reader waiting on `id`.
    pub fn notify(&self, id: &TaskId) {
        let senders = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if waiters.is_empty() {
                return;
            }
            waiters.remove(id)
        };
        for tx in senders.into_iter().flatten() {
            let _ = tx.send(());
        }
    }

    /// Forgets readers that gave up on tasks that never finished (called periodically).
    pub fn prune(&self) {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.retain(|_, list| {
            list.retain(|s| !s.is_closed());
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notify_wakes_only_the_named_task() {
        let n = Notifier::default();
        let a = TaskId::generate();
        let b = TaskId::generate();
        let rx_a = n.subscribe(&a);
        let mut rx_b = n.subscribe(&b);
        n.notify(&a);
        assert!(rx_a.await.is_ok());
        assert!(rx_b.try_recv().is_err(), "b must still be waiting");
    }

    #[test]
    fn prune_drops_abandoned_waiters() {
        let n = Notifier::default();
        let id = TaskId::generate();
        drop(n.subscribe(&id));
        n.prune();
        assert!(n.waiters.lock().expect("lock").is_empty());
    }
}
