//! The cases every [`RateLimiter`] passes, run against [`super::local::LocalLimiter`] and
//! [`super::redis::RedisLimiter`] (on a real `redis-server`). Built for this crate's
//! tests and, for other crates, with the `testsuite` feature.
//!
//! The cases use a limit of one request an hour, so how fast they run never matters:
//! nothing refills while they run, and only the burst is spent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::RateLimiter;
use super::gcra::Limit;

/// A limit that does not refill while a test runs.
fn hourly(burst: u32) -> Limit {
    Limit::every(Duration::from_secs(3600), burst)
}

/// A full bucket allows the burst, counting `remaining` down, then refuses with a
/// retry-after of about one interval.
pub async fn the_burst_passes_then_requests_are_refused(limiter: Arc<dyn RateLimiter>) {
    let limit = hourly(5);
    for i in 0..5 {
        let d = limiter.take("a", limit, 1).await.expect("take");
        assert!(d.allowed, "request {i}");
        assert_eq!(d.remaining, 4 - i, "request {i}");
    }
    let refused = limiter.take("a", limit, 1).await.expect("take");
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    let hour = 3_600_000_000;
    assert!(
        refused.retry_after_us > hour - 60_000_000 && refused.retry_after_us <= hour,
        "about one interval: {refused:?}"
    );
    assert!(refused.reset_us > 4 * hour && refused.reset_us <= 5 * hour);
}

/// Buckets are independent: spending one leaves another full.
pub async fn buckets_are_independent(limiter: Arc<dyn RateLimiter>) {
    let limit = hourly(2);
    for _ in 0..2 {
        assert!(limiter.take("one", limit, 1).await.expect("take").allowed);
    }
    assert!(!limiter.take("one", limit, 1).await.expect("take").allowed);
    let other = limiter.take("two", limit, 1).await.expect("take");
    assert!(other.allowed);
    assert_eq!(other.remaining, 1);
}

/// A cost of N takes N; a refused cost takes nothing, so a smaller one still fits; a
/// cost above the burst is refused even from a full bucket.
pub async fn a_cost_takes_that_many_and_a_refusal_takes_none(limiter: Arc<dyn RateLimiter>) {
    let limit = hourly(10);
    let d = limiter.take("batch", limit, 7).await.expect("take");
    assert!(d.allowed);
    assert_eq!(d.remaining, 3);
    assert!(!limiter.take("batch", limit, 4).await.expect("take").allowed);
    let last = limiter.take("batch", limit, 3).await.expect("take");
    assert!(last.allowed, "the refusal took nothing");
    assert_eq!(last.remaining, 0);
    assert!(!limiter.take("full", limit, 11).await.expect("take").allowed);
    assert!(limiter.take("full", limit, 10).await.expect("take").allowed);
}

/// Concurrent takes of one bucket allow exactly the burst.
pub async fn concurrent_takes_allow_exactly_the_burst(limiter: Arc<dyn RateLimiter>) {
    let limit = hourly(25);
    let takes = (0..100).map(|_| {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.take("race", limit, 1).await.expect("take") })
    });
    let mut allowed = 0;
    for take in takes {
        if take.await.expect("joined").allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 25);
}

/// Once the retry-after has passed, the refused request is allowed.
pub async fn a_refused_request_passes_after_its_retry_after(limiter: Arc<dyn RateLimiter>) {
    let limit = Limit::every(Duration::from_millis(200), 1);
    assert!(limiter.take("wait", limit, 1).await.expect("take").allowed);
    let refused = limiter.take("wait", limit, 1).await.expect("take");
    assert!(!refused.allowed);
    assert!(refused.retry_after_us <= 200_000);
    // The next interval comes one retry-after later; poll until it does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !limiter.take("wait", limit, 1).await.expect("take").allowed {
        assert!(tokio::time::Instant::now() < deadline, "never refilled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One case: a fresh limiter in, assertions.
pub type Case = fn(Arc<dyn RateLimiter>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("the_burst_passes_then_requests_are_refused", |l| {
        Box::pin(the_burst_passes_then_requests_are_refused(l))
    }),
    ("buckets_are_independent", |l| {
        Box::pin(buckets_are_independent(l))
    }),
    ("a_cost_takes_that_many_and_a_refusal_takes_none", |l| {
        Box::pin(a_cost_takes_that_many_and_a_refusal_takes_none(l))
    }),
    ("concurrent_takes_allow_exactly_the_burst", |l| {
        Box::pin(concurrent_takes_allow_exactly_the_burst(l))
    }),
    ("a_refused_request_passes_after_its_retry_after", |l| {
        Box::pin(a_refused_request_passes_after_its_retry_after(l))
    }),
];

/// Runs every case on a fresh limiter from `make`.
pub async fn run_all<L: RateLimiter>(make: impl AsyncFn() -> L) {
    for (name, case) in CASES {
        eprintln!("rate limiter conformance: {name}");
        case(Arc::new(make().await)).await;
    }
}
