//! A rate limit on the log lines of ractor and ractor_cluster: they log several lines
//! per network connection (opened, closed, errors), so a flood of garbage connections
//! to the cluster port would otherwise flood the log. At most [`BURST`] of their events
//! pass per [`WINDOW`]; the rest are counted and summed up in one line per window.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use taskmesh_actors::log_limit::LogWindow;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The period of the limit and of the summary line.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Events of the limited targets that pass per window.
pub const BURST: u32 = 20;

/// Whether an event's target is limited.
fn limited(target: &str) -> bool {
    target == "ractor"
        || target.starts_with("ractor::")
        || target == "ractor_cluster"
        || target.starts_with("ractor_cluster::")
}

/// The layer: drops events of the limited targets past the limit, for every layer
/// (global filtering through `event_enabled`).
#[derive(Debug, Clone)]
pub struct LogLimit {
    window: Arc<Mutex<LogWindow>>,
}

impl LogLimit {
    /// A limit, and a thread that logs how many lines it dropped, once per window.
    pub fn start() -> Self {
        let limit = Self {
            window: Arc::new(Mutex::new(LogWindow::new(WINDOW, BURST))),
        };
        let window = Arc::clone(&limit.window);
        // A thread rather than a task: it works before and after the runtime.
        let summary = std::thread::Builder::new()
            .name("taskmesh-log-limit".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(WINDOW);
                    let n = lock(&window).take_held();
                    if n > 0 {
                        tracing::warn!(
                            dropped = n,
                            "dropped log lines of ractor/ractor_cluster in the last 10 s \
                             (at most {BURST} pass per 10 s; a flood of cluster connections?)"
                        );
                    }
                }
            });
        if let Err(e) = summary {
            eprintln!("cannot start the log summary thread: {e}");
        }
        limit
    }
}

impl<S: Subscriber> Layer<S> for LogLimit {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        if !limited(event.metadata().target()) {
            return true;
        }
        lock(&self.window).admit(Instant::now())
    }
}

fn lock(window: &Mutex<LogWindow>) -> std::sync::MutexGuard<'_, LogWindow> {
    window.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ractor_targets_are_limited() {
        assert!(limited("ractor_cluster::net::session"));
        assert!(limited("ractor::actor"));
        assert!(limited("ractor_cluster"));
        assert!(!limited("taskmesh_cluster::bootstrap"));
        assert!(!limited("ractorx"));
    }
}
