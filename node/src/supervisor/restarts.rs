//! The restart policy: a child that dies is restarted after a backoff that doubles with
//! each restart in a row, and one that keeps dying is reported to the HealthMonitor as
//! crash-looping (the node answers not ready) until it has run for a minute.

use std::time::{Duration, Instant};

use ractor::{ActorId, ActorRef};
use taskmesh_actors::health::HealthMessage;

use super::{SupervisorMessage, SupervisorState};

/// Restarts of one child in a row, and when its latest run started.
pub(super) struct Restarts {
    in_a_row: u32,
    started: Instant,
}

/// Restarts in a row (each within a minute of the last) after which a child counts as
/// crash-looping and the node reports not ready.
const CRASH_LOOP: u32 = 5;

/// How long a restarted child must run before its restarts stop counting.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

impl SupervisorState {
    pub(super) fn child_died(
        &mut self,
        id: ActorId,
        reason: &str,
        myself: &ActorRef<SupervisorMessage>,
    ) {
        let Some(child) = self.children.remove(&id) else {
            return;
        };
        self.cells.remove(&child);
        if self.shutting_down {
            return;
        }
        let m = &self.args.ctx.metrics;
        m.actor_restarts.with_label_values(&[child.name()]).inc();
        let r = self.restarts.entry(child).or_insert(Restarts {
            in_a_row: 0,
            started: Instant::now(),
        });
        if r.started.elapsed() > HEALTHY_AFTER {
            r.in_a_row = 0;
        }
        let delay = restart_delay(r.in_a_row);
        r.in_a_row = r.in_a_row.saturating_add(1);
        r.started = Instant::now() + delay;
        if r.in_a_row >= CRASH_LOOP && self.failing.insert(child) {
            tracing::error!(
                actor = child.name(),
                restarts = r.in_a_row,
                "actor keeps failing; the node reports not ready until it runs for a minute"
            );
            self.report_supervision();
        }
        tracing::error!(
            actor = child.name(),
            reason,
            ?delay,
            "actor died; restarting"
        );
        myself.send_after(delay, move || SupervisorMessage::Start(child));
    }

    /// Tells the HealthMonitor which children are crash-looping (none: `None`).
    pub(super) fn report_supervision(&self) {
        let verdict = (!self.failing.is_empty()).then(|| {
            let names: Vec<&str> = self.failing.iter().map(|c| c.name()).collect();
            format!("crash-looping: {}", names.join(", "))
        });
        let health = &self.args.ctx.names.health;
        if let Some(h) = ActorRef::<HealthMessage>::where_is(health.clone()) {
            let _ = h.cast(HealthMessage::Supervision(verdict));
        }
    }

    /// Children that have now run for a minute since their last restart are healthy.
    pub(super) fn forgive(&mut self) {
        let before = self.failing.len();
        let restarts = &self.restarts;
        self.failing.retain(|child| {
            restarts
                .get(child)
                .is_none_or(|r| r.started.elapsed() < HEALTHY_AFTER)
        });
        if self.failing.len() != before {
            self.report_supervision();
        }
    }
}

/// 50 ms doubling per restart in a row, at most 10 s.
fn restart_delay(in_a_row: u32) -> Duration {
    Duration::from_millis(50)
        .saturating_mul(1 << in_a_row.min(8))
        .min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delay_doubles_and_caps() {
        assert_eq!(restart_delay(0), Duration::from_millis(50));
        assert_eq!(restart_delay(1), Duration::from_millis(100));
        assert_eq!(restart_delay(20), Duration::from_secs(10));
    }
}
