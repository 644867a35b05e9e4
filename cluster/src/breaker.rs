//! A per-peer circuit breaker, like nginx's `max_fails=3 fail_timeout=30s`: pure, with
//! the clock passed in.
//!
//! ```text
//! Closed ──(max_fails consecutive failures)──▶ Open ──(open_for elapsed)──▶ HalfOpen
//!   ▲                                            ▲                            │
//!   └──────────────(probe succeeds)──────────────┼──────(probe fails)─────────┘
//! ```
//! Closed and half-open peers take work; a half-open peer takes one probe at a time.

use std::time::{Duration, Instant};

use serde::Serialize;

/// The breaker's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub max_fails: u32,
    /// How long an open circuit refuses work before a probe.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            max_fails: 3,
            open_for: Duration::from_secs(30),
        }
    }
}

/// The state, as shown in `GET /v1/cluster` and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Work flows.
    Closed,
    /// No work until the timeout.
    Open,
    /// One probe may go; its outcome decides.
    HalfOpen,
}

impl CircuitState {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// One peer's breaker.
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: CircuitState,
    failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: CircuitState::Closed,
            failures: 0,
            opened_at: None,
            probing: false,
        }
    }

    /// The state at `now` (an open circuit whose time is up reads as half-open).
    pub fn state(&self, now: Instant) -> CircuitState {
        match (self.state, self.opened_at) {
            (CircuitState::Open, Some(at)) if now.duration_since(at) >= self.config.open_for => {
                CircuitState::HalfOpen
            }
            (state, _) => state,
        }
    }

    /// Whether the peer may be given work at `now`.
    pub fn allows(&self, now: Instant) -> bool {
        match self.state(now) {
            CircuitState::Closed => true,
            CircuitState::HalfOpen => !self.probing,
            CircuitState::Open => false,
        }
    }

    /// Work is being sent at `now`; in half-open it is the probe. Returns the state
    /// change, if any.
    pub fn on_send(&mut self, now: Instant) -> Option<CircuitState> {
        let before = self.state;
        if self.state(now) == CircuitState::HalfOpen {
            self.state = CircuitState::HalfOpen;
            self.probing = true;
        }
        (self.state != before).then_some(self.state)
    }

    /// The peer acknowledged. Returns the state change, if any.
    pub fn on_success(&mut self) -> Option<CircuitState> {
        let before = self.state;
        self.state = CircuitState::Closed;
        self.failures = 0;
        self.opened_at = None;
        self.probing = false;
        (self.state != before).then_some(self.state)
    }

    /// The peer failed or did not answer in time. Returns the state change, if any.
    pub fn on_failure(&mut self, now: Instant) -> Option<CircuitState> {
        let before = self.state;
        self.failures = self.failures.saturating_add(1);
        let reopen = self.state == CircuitState::HalfOpen;
        if reopen || (self.state == CircuitState::Closed && self.failures >= self.config.max_fails)
        {
            self.state = CircuitState::Open;
            self.opened_at = Some(now);
        }
        self.probing = false;
        (self.state != before).then_some(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> (Breaker, Instant) {
        let config = BreakerConfig {
            max_fails: 3,
            open_for: Duration::from_secs(30),
        };
        (Breaker::new(config), Instant::now())
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (mut b, t0) = breaker();
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_success(), None, "a success resets the count");
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_failure(t0), None);
        assert!(b.allows(t0));
        assert_eq!(b.on_failure(t0), Some(CircuitState::Open));
        assert!(!b.allows(t0));
        assert!(!b.allows(t0 + Duration::from_secs(29)));
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let (mut b, t0) = breaker();
        for _ in 0..3 {
            b.on_failure(t0);
        }
        let later = t0 + Duration::from_secs(30);
        assert_eq!(b.state(later), CircuitState::HalfOpen);
        assert!(b.allows(later));
        assert_eq!(b.on_send(later), Some(CircuitState::HalfOpen));
        assert!(!b.allows(later), "only one probe at a time");
        assert_eq!(b.on_failure(later), Some(CircuitState::Open));
        assert!(!b.allows(later + Duration::from_secs(1)));
        let again = later + Duration::from_secs(30);
        assert!(b.allows(again));
        b.on_send(again);
        assert_eq!(b.on_success(), Some(CircuitState::Closed));
        assert!(b.allows(again));
        assert_eq!(b.state(again), CircuitState::Closed);
    }

    #[test]
    fn sending_while_closed_changes_nothing() {
        let (mut b, t0) = breaker();
        assert_eq!(b.on_send(t0), None);
        assert!(b.allows(t0));
    }
}
