//! Retry decisions: pure functions of the attempt count and a random draw.

use std::time::Duration;

/// Exponential backoff with jitter, configured per node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub base: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Delay before retrying after `failed_attempts` failures (1 for the first), with
    /// "equal jitter": half the exponential delay plus a random share of the other half.
    /// `unit` is a uniform draw in `[0, 1)`.
    pub fn delay(&self, failed_attempts: u32, unit: f64) -> Duration {
        let exp = failed_attempts.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        let unit = unit.clamp(0.0, 1.0);
        raw / 2 + raw.mul_f64(unit / 2.0)
    }
}

/// Whether a task that has started `attempts` attempts may start another.
pub fn may_retry(attempts: u32, max_retries: u32) -> bool {
    attempts <= max_retries
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_double_and_are_capped() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(2, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(10, 1.0), Duration::from_millis(1000));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_millis(1000));
    }

    #[test]
    fn retries_stop_after_max_retries() {
        assert!(may_retry(1, 3));
        assert!(may_retry(3, 3));
        assert!(!may_retry(4, 3));
        assert!(!may_retry(1, 0));
    }

    proptest! {
        #[test]
        fn jitter_stays_within_half_and_full_delay(attempt in 1u32..40, unit in 0.0f64..1.0) {
            let b = Backoff::default();
            let d = b.delay(attempt, unit);
            let full = b.delay(attempt, 1.0);
            prop_assert!(d <= full && d >= full / 2 && d <= b.max);
        }
    }
}
