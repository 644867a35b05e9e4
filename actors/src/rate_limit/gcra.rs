//! GCRA (the generic cell rate algorithm): the one decision every limiter makes. Pure:
//! the clock and the stored state are parameters.
//!
//! A bucket's whole state is its *theoretical arrival time* (TAT, in microseconds): the
//! time at which the bucket would be full again. A request of cost `n` at `now`:
//! - starts from `tat = max(stored tat, now)` (a missing or past TAT is a full bucket);
//! - would move the TAT to `new_tat = tat + n × interval`;
//! - is allowed when `new_tat - burst × interval <= now`, and then the TAT is stored;
//!   refused otherwise, and nothing is stored (a refusal costs nothing).
//!
//! So a full bucket takes `burst` requests at once, then one per `interval`; over any
//! window of `w` seconds a client gets at most `burst + w × rate` requests. A cost above
//! `burst` can never be allowed ([`Limit::fits`]).
//!
//! Microseconds, not milliseconds, so rates above 1 000/s keep their precision; the Redis
//! script ([`super::redis`]) does the same sums on Lua doubles, exact up to 2^53 µs
//! (about 285 years since the epoch).

use std::time::Duration;

/// A limit as GCRA sees it: the interval between two requests at the sustained rate, and
/// the burst a full bucket allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Microseconds between two requests at the sustained rate (at least 1).
    pub interval_us: u64,
    /// Requests a full bucket allows at once (at least 1).
    pub burst: u32,
}

impl Limit {
    /// `per_sec` requests a second, `burst` at once.
    pub fn per_sec(per_sec: u32, burst: u32) -> Self {
        Self {
            interval_us: (1_000_000 / u64::from(per_sec.max(1))).max(1),
            burst: burst.max(1),
        }
    }

    /// One request every `every`, `burst` at once (for slow limits, and for tests that
    /// must not depend on how fast they run).
    pub fn every(every: Duration, burst: u32) -> Self {
        Self {
            interval_us: u64::try_from(every.as_micros()).unwrap_or(u64::MAX).max(1),
            burst: burst.max(1),
        }
    }

    /// How long an empty bucket takes to fill: `burst × interval`.
    pub fn tolerance_us(self) -> u64 {
        u64::from(self.burst).saturating_mul(self.interval_us)
    }

    /// Whether a request of `cost` can ever be allowed (`cost <= burst`).
    pub fn fits(self, cost: u32) -> bool {
        cost <= self.burst
    }
}

/// The outcome of one request against one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The TAT to store when allowed (unchanged otherwise).
    pub new_tat_us: u64,
    /// Requests of cost 1 the bucket would still allow now (after this one, if allowed).
    pub remaining: u32,
    /// When refused: how long until this request would be allowed. 0 when allowed.
    pub retry_after_us: u64,
    /// How long until the bucket is full again.
    pub reset_us: u64,
}

impl Decision {
    /// [`Decision::retry_after_us`] in whole seconds, rounded up, at least 1 (for
    /// `Retry-After`, which counts seconds; 0 would invite an immediate retry).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_us.div_ceil(1_000_000).max(1)
    }

    /// [`Decision::reset_us`] in whole seconds, rounded up.
    pub fn reset_secs(&self) -> u64 {
        self.reset_us.div_ceil(1_000_000)
    }
}

/// Decides a request of `cost` at `now_us` against a bucket whose stored TAT is `tat_us`
/// (`None`: never used, or expired).
pub fn decide(tat_us: Option<u64>, now_us: u64, limit: Limit, cost: u32) -> Decision {
    let interval = limit.interval_us.max(1);
    let tolerance = limit.tolerance_us();
    let tat = tat_us.unwrap_or(now_us).max(now_us);
    let new_tat = tat.saturating_add(u64::from(cost).saturating_mul(interval));
    let allow_at = new_tat.saturating_sub(tolerance);
    let allowed = allow_at <= now_us;
    let level = if allowed { new_tat } else { tat };
    // What is left of the tolerance once `level` is spent, in whole requests.
    let left = (now_us.saturating_add(tolerance)).saturating_sub(level) / interval;
    Decision {
        allowed,
        new_tat_us: if allowed { new_tat } else { tat },
        remaining: u32::try_from(left).unwrap_or(u32::MAX),
        retry_after_us: if allowed { 0 } else { allow_at - now_us },
        reset_us: level - now_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    /// Applies `cost` at `now` to a bucket held in `tat`, as a limiter would.
    fn take(tat: &mut Option<u64>, now: u64, limit: Limit, cost: u32) -> Decision {
        let d = decide(*tat, now, limit, cost);
        if d.allowed {
            *tat = Some(d.new_tat_us);
        }
        d
    }

    #[test]
    fn a_full_bucket_allows_the_burst_at_once_then_refuses() {
        let limit = Limit::per_sec(10, 20);
        let mut tat = None;
        let now = 1_000 * SEC;
        for i in 0..20 {
            let d = take(&mut tat, now, limit, 1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 19 - i);
        }
        let refused = take(&mut tat, now, limit, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after_us, SEC / 10, "one interval");
        assert_eq!(refused.retry_after_secs(), 1);
        assert_eq!(refused.reset_us, 2 * SEC, "20 requests at 10/s");
        assert_eq!(refused.reset_secs(), 2);
    }

    #[test]
    fn a_refusal_costs_nothing_and_the_bucket_refills_at_the_rate() {
        let limit = Limit::per_sec(10, 5);
        let mut tat = None;
        let t0 = 50 * SEC;
        for _ in 0..5 {
            assert!(take(&mut tat, t0, limit, 1).allowed);
        }
        let before = tat;
        for _ in 0..100 {
            assert!(!take(&mut tat, t0, limit, 1).allowed);
        }
        assert_eq!(tat, before, "refusals store nothing");
        assert!(!take(&mut tat, t0 + SEC / 10 - 1, limit, 1).allowed);
        assert!(
            take(&mut tat, t0 + SEC / 10, limit, 1).allowed,
            "one interval later"
        );
        assert!(!take(&mut tat, t0 + SEC / 10, limit, 1).allowed);
    }

    #[test]
    fn over_a_window_at_most_burst_plus_rate_times_window_pass() {
        // A client asking every millisecond for 10 s against 10/s, burst 20.
        let limit = Limit::per_sec(10, 20);
        let mut tat = None;
        let t0 = 7 * SEC;
        let allowed = (0..10_000u64)
            .filter(|ms| take(&mut tat, t0 + ms * 1_000, limit, 1).allowed)
            .count();
        assert_eq!(
            allowed,
            20 + 10 * 10 - 1,
            "burst + rate × (window − one interval)"
        );
    }

    #[test]
    fn a_cost_takes_that_many_requests_and_one_over_the_burst_never_fits() {
        let limit = Limit::per_sec(1, 10);
        let mut tat = None;
        let now = 3 * SEC;
        let d = take(&mut tat, now, limit, 7);
        assert!(d.allowed);
        assert_eq!(d.remaining, 3);
        let over = take(&mut tat, now, limit, 4);
        assert!(!over.allowed, "4 > the 3 left");
        assert_eq!(over.retry_after_us, SEC, "one more request's worth");
        assert!(
            take(&mut tat, now, limit, 3).allowed,
            "the refusal took nothing"
        );
        assert!(limit.fits(10));
        assert!(!limit.fits(11));
        let never = decide(None, now, limit, 11);
        assert!(
            !never.allowed,
            "a full bucket cannot take more than the burst"
        );
    }

    #[test]
    fn a_stale_tat_is_a_full_bucket() {
        let limit = Limit::per_sec(2, 4);
        let now = 100 * SEC;
        assert_eq!(decide(Some(1), now, limit, 1), decide(None, now, limit, 1));
        let d = decide(None, now, limit, 1);
        assert_eq!(d.new_tat_us, now + SEC / 2);
        assert_eq!(d.reset_us, SEC / 2);
        assert_eq!(d.remaining, 3);
    }

    #[test]
    fn limits_are_built_from_rates_and_periods() {
        assert_eq!(Limit::per_sec(10, 20).interval_us, 100_000);
        assert_eq!(Limit::per_sec(3, 1).interval_us, 333_333);
        assert_eq!(Limit::per_sec(0, 0), Limit::per_sec(1, 1), "clamped to 1");
        assert_eq!(Limit::per_sec(5_000_000, 1).interval_us, 1, "at least 1 µs");
        let hourly = Limit::every(Duration::from_secs(3600), 2);
        assert_eq!(hourly.interval_us, 3_600 * SEC);
        assert_eq!(hourly.tolerance_us(), 7_200 * SEC);
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let limit = Limit {
            interval_us: u64::MAX / 2,
            burst: u32::MAX,
        };
        let d = decide(Some(u64::MAX - 1), u64::MAX - 10, limit, u32::MAX);
        assert!(d.allowed || d.retry_after_us > 0);
    }
}
