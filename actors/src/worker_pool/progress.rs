//! Progress of a running attempt, from the kernel's thread to the store.
//!
//! The kernel's [`Context::progress`](taskmesh_kernels::Context::progress) lands in a
//! `watch` channel: replacing its value never blocks the kernel thread, and only the
//! latest report is kept. A tokio task writes it to the store ([`TaskStore::progress`],
//! fenced with the attempt's node and lease token) at most once per [`THROTTLE`], so a
//! chatty kernel costs at most four writes a second. The writer stops when the attempt
//! ends (its [`ProgressWriter`] is dropped), or when the store refuses a report: the task
//! finished, moved, or was queued again, and this attempt's reports no longer count.

use std::sync::Arc;
use std::time::Duration;

use taskmesh_kernels::task::TaskId;
use taskmesh_kernels::{Progress, ProgressSink};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::{TaskStore, Transition};
use crate::task::Fence;

/// The shortest time between two progress writes of one attempt.
pub const THROTTLE: Duration = Duration::from_millis(250);

/// The kernel's end of the channel.
struct LatestOnly(watch::Sender<Option<Progress>>);

impl ProgressSink for LatestOnly {
    fn report(&self, progress: Progress) {
        self.0.send_replace(Some(progress));
    }
}

/// The background writer of one attempt's progress; dropping it stops the writer.
#[derive(Debug)]
pub struct ProgressWriter(JoinHandle<()>);

impl Drop for ProgressWriter {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the writer for the attempt of task `id` that `node` runs under token `lease`;
/// answers the sink to give the kernel's context.
pub fn spawn(
    store: Arc<dyn TaskStore>,
    id: TaskId,
    node: Arc<str>,
    lease: u64,
) -> (Arc<dyn ProgressSink>, ProgressWriter) {
    let (tx, mut rx) = watch::channel(None);
    let writer = tokio::spawn(async move {
        // `changed` fails once the sink is dropped and its last value was seen.
        while rx.changed().await.is_ok() {
            let Some(progress) = rx.borrow_and_update().clone() else {
                continue;
            };
            match store
                .progress(&id, Fence::new(&node, lease), progress)
                .await
            {
                Ok(Transition::Applied) => {}
                Ok(_) => return,
                // A lost report is replaced by the next one.
                Err(e) => tracing::debug!(task_id = %id, error = %e, "progress write failed"),
            }
            tokio::time::sleep(THROTTLE).await;
        }
    });
    (Arc::new(LatestOnly(tx)), ProgressWriter(writer))
}

#[cfg(test)]
mod tests {
    use taskmesh_kernels::task::TaskStatus;

    use super::*;
    use crate::store::conformance::fixtures::task;
    use crate::store::memory::MemoryStore;

    fn report(fraction: f64) -> Progress {
        Progress::new(fraction, &format!("at {fraction}")).expect("finite")
    }

    async fn stored(store: &MemoryStore, id: &TaskId) -> Option<Progress> {
        store.get(id).await.expect("get").expect("exists").progress
    }

    /// Lets the writer run until it waits on the channel or its timer.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn writes_at_most_once_per_throttle_and_the_latest_report_wins() {
        let store = Arc::new(MemoryStore::new());
        let t = task("sleep", None);
        let id = t.id;
        store.create(vec![t]).await.expect("create");
        let (sink, _writer) = spawn(store.clone(), id, "n1".into(), 0);

        sink.report(report(0.1));
        settle().await;
        assert_eq!(stored(&store, &id).await, Some(report(0.1)));

        for fraction in [0.2, 0.3, 0.4] {
            sink.report(report(fraction));
        }
        settle().await;
        assert_eq!(
            stored(&store, &id).await,
            Some(report(0.1)),
            "nothing more within the throttle window"
        );
        tokio::time::advance(THROTTLE).await;
        settle().await;
        assert_eq!(
            stored(&store, &id).await,
            Some(report(0.4)),
            "the last wins"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_writer_stops_once_the_store_refuses_a_report() {
        let store = Arc::new(MemoryStore::new());
        let t = task("sleep", None);
        let id = t.id;
        store.create(vec![t]).await.expect("create");
        let done = crate::store::conformance::fixtures::finish(TaskStatus::Cancelled, 1);
        store.finish(&id, done).await.expect("finish");
        let (sink, writer) = spawn(store.clone(), id, "n1".into(), 0);
        sink.report(report(0.5));
        settle().await;
        assert!(writer.0.is_finished(), "a terminal task ends the writer");
        assert_eq!(stored(&store, &id).await, None);
    }
}
