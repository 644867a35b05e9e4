use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::conformance;
use super::local::LocalLimiter;
use super::*;
use crate::store::redis::RedisStore;
use crate::store::redis::testing::RedisServer;

const SEC: u64 = 1_000_000;

/// A clock tests move by hand.
fn manual_clock(start: u64) -> (Arc<AtomicU64>, Clock) {
    let now = Arc::new(AtomicU64::new(start));
    let read = Arc::clone(&now);
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

#[tokio::test]
async fn the_local_limiter_passes_the_conformance_suite() {
    conformance::run_all(async || LocalLimiter::new()).await;
}

#[tokio::test]
async fn the_redis_limiter_passes_the_conformance_suite() {
    let server = RedisServer::start().expect("redis-server (apt-get install redis-server)");
    let cases = AtomicUsize::new(0);
    conformance::run_all(async || {
        let n = cases.fetch_add(1, Ordering::Relaxed);
        let store = RedisStore::connect_with_prefix(&server.url(), &format!("case{n}:"))
            .await
            .expect("connect");
        store.rate_limiter()
    })
    .await;
}

#[tokio::test]
async fn redis_buckets_live_under_the_store_prefix_and_expire_once_full() {
    let server = RedisServer::start().expect("redis-server");
    let store = RedisStore::connect_with_prefix(&server.url(), "{tm}:")
        .await
        .expect("connect");
    let limiter = store.rate_limiter();
    assert_eq!(limiter.key("key:abc"), "{tm}:rate:key:abc");
    let limit = Limit::every(std::time::Duration::from_secs(10), 3);
    assert!(
        limiter
            .take("key:abc", limit, 2)
            .await
            .expect("take")
            .allowed
    );
    let client = ::redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg("{tm}:rate:key:abc")
        .query_async(&mut conn)
        .await
        .expect("pttl");
    assert!(
        ttl > 10_000 && ttl <= 20_001,
        "expires when full again (two intervals): {ttl}"
    );
    assert!(
        !limiter
            .take("key:abc", limit, 2)
            .await
            .expect("take")
            .allowed
    );
    let refused_ttl: i64 = ::redis::cmd("PTTL")
        .arg("{tm}:rate:key:abc")
        .query_async(&mut conn)
        .await
        .expect("pttl");
    assert!(refused_ttl <= ttl, "a refusal writes nothing");
}

#[tokio::test]
async fn the_local_limiter_keeps_at_most_its_capacity() {
    let (now, clock) = manual_clock(1_000 * SEC);
    let limiter = LocalLimiter::with(8, clock);
    let limit = Limit::per_sec(1, 5);
    for i in 0..100 {
        assert!(
            limiter
                .take(&format!("c{i}"), limit, 1)
                .await
                .expect("take")
                .allowed
        );
        assert!(limiter.len() <= 8, "{} buckets", limiter.len());
    }
    // Once every bucket is full again, the next new one sweeps them all.
    now.fetch_add(10 * SEC, Ordering::SeqCst);
    let busy = limiter.take("busy", limit, 5).await.expect("take");
    assert!(busy.allowed);
    assert!(limiter.len() <= 8);
    for i in 0..20 {
        limiter
            .take(&format!("n{i}"), limit, 1)
            .await
            .expect("take");
        assert!(limiter.len() <= 8);
    }
    assert!(
        !limiter.take("busy", limit, 1).await.expect("take").allowed,
        "the spent bucket is the last to be dropped"
    );
}

#[tokio::test]
async fn the_local_limiter_refills_on_its_clock() {
    let (now, clock) = manual_clock(5 * SEC);
    let limiter = LocalLimiter::with(10, clock);
    let limit = Limit::per_sec(2, 1);
    assert!(limiter.take("x", limit, 1).await.expect("take").allowed);
    assert!(!limiter.take("x", limit, 1).await.expect("take").allowed);
    now.fetch_add(SEC / 2, Ordering::SeqCst);
    assert!(limiter.take("x", limit, 1).await.expect("take").allowed);
}

#[test]
fn rate_limits_parse_with_a_default_burst_and_refuse_bad_values() {
    assert_eq!("10/20".parse(), Ok(RateLimit::new(10, 20).expect("valid")));
    assert_eq!("50".parse(), Ok(RateLimit::new(50, 100).expect("valid")));
    assert_eq!(" 5 / 1 ".parse(), Ok(RateLimit::new(5, 1).expect("valid")));
    for bad in ["", "0", "10/0", "x/2", "10/", "2000000", "-1/3", "1/2/3"] {
        assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
    }
    assert_eq!(RateLimit::new(10, 20).expect("valid").to_string(), "10/20");
    assert_eq!(RateLimit::new(10, 20).expect("valid").window_secs(), 2);
    assert_eq!(RateLimit::new(100, 1).expect("valid").window_secs(), 1);
}

#[test]
fn a_rate_limit_is_json_with_exactly_its_two_fields() {
    let limit: RateLimit = serde_json::from_str(r#"{"per_sec": 50, "burst": 100}"#).expect("valid");
    assert_eq!(limit, RateLimit::new(50, 100).expect("valid"));
    assert!(serde_json::from_str::<RateLimit>(r#"{"per_sec": 5}"#).is_err());
    assert!(serde_json::from_str::<RateLimit>(r#"{"per_sec": 5, "burst": 5, "x": 1}"#).is_err());
}

#[test]
fn headers_follow_the_draft_structured_fields() {
    let limit = RateLimit::new(10, 20).expect("valid");
    let decision = gcra::decide(None, 0, limit.limit(), 20);
    let checked = Checked {
        scope: Scope::Key,
        limit,
        decision,
    };
    let [policy, state] = checked.headers();
    assert_eq!(policy.0, "ratelimit-policy");
    assert_eq!(policy.1, "\"key\";q=20;w=2");
    assert_eq!(state.0, "ratelimit");
    assert_eq!(state.1, "\"key\";r=0;t=2");
}

#[tokio::test]
async fn keys_use_their_own_limit_or_the_default_and_ips_theirs() {
    let (_, clock) = manual_clock(SEC);
    let limits = RateLimits {
        limiter: Arc::new(LocalLimiter::with(100, clock)),
        key_default: Some(RateLimit::new(1, 2).expect("valid")),
        ip: None,
        trusted_proxies: Vec::new(),
    };
    let own = Some(RateLimit::new(1, 5).expect("valid"));
    let first = limits
        .check_key("a", own, 1)
        .await
        .expect("limited")
        .expect("ok");
    assert_eq!(first.decision.remaining, 4, "its own burst");
    let default = limits
        .check_key("b", None, 2)
        .await
        .expect("limited")
        .expect("ok");
    assert_eq!(default.decision.remaining, 0, "the default burst");
    assert!(
        limits
            .check_ip("1.2.3.4".parse().expect("ip"))
            .await
            .is_none()
    );
    let unlimited = RateLimits {
        key_default: None,
        ..limits
    };
    assert!(unlimited.check_key("c", None, 1).await.is_none());
}
