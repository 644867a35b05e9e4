//! Which log lines pass when one event repeats: a fixed window lets `burst` lines through
//! per `period` and holds the rest back as a count, so a flood (refused connections,
//! garbage cluster sessions) writes a summary instead of a line per event. The ingress's
//! refusal summaries and the node's limit on ractor's log lines both decide with it.

use std::time::{Duration, Instant};

/// A fixed window of `burst` lines per `period`, with the clock passed in.
#[derive(Debug)]
pub struct LogWindow {
    period: Duration,
    burst: u32,
    start: Option<Instant>,
    passed: u32,
    held: u64,
}

impl LogWindow {
    /// A window letting `burst` lines pass per `period`.
    pub const fn new(period: Duration, burst: u32) -> Self {
        Self {
            period,
            burst,
            start: None,
            passed: 0,
            held: 0,
        }
    }

    /// Whether one more line may pass at `now`; one that may not is counted as held.
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.start {
            Some(start) if now.duration_since(start) < self.period => {}
            _ => {
                self.start = Some(now);
                self.passed = 0;
            }
        }
        if self.passed < self.burst {
            self.passed += 1;
            true
        } else {
            self.held += 1;
            false
        }
    }

    /// The lines held back since the last call, for a summary line.
    pub fn take_held(&mut self) -> u64 {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_per_window_and_the_rest_is_counted_until_taken() {
        let period = Duration::from_secs(10);
        let mut w = LogWindow::new(period, 20);
        let t0 = Instant::now();
        let passed = (0..100)
            .filter(|i| w.admit(t0 + Duration::from_millis(*i)))
            .count();
        assert_eq!(passed, 20);
        assert_eq!(w.take_held(), 80);
        assert_eq!(w.take_held(), 0, "taking the count resets it");
        assert!(!w.admit(t0 + period - Duration::from_millis(1)));
        assert!(
            w.admit(t0 + period + Duration::from_millis(1)),
            "a new window"
        );
        assert_eq!(w.take_held(), 1);
    }
}
