//! The middleware's rate limiting through the real router (`oneshot`), on an in-memory
//! store: a key over its limit gets 429 with the headers, the probes are never limited,
//! keyless requests count against their peer's IP, and a failing limiter lets requests
//! through.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use taskmesh_kernels::{Registry, RegistryOptions};
use tower::ServiceExt;

use crate::auth::Authenticator;
use crate::auth::key::{ApiKey, KeyRecord};
use crate::auth::scope::Scope;
use crate::context::{ActorNames, NodeContext};
use crate::ingress::routes::router;
use crate::ingress::{IngressLimits, IngressState};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::rate_limit::gcra::{Decision, Limit};
use crate::rate_limit::local::LocalLimiter;
use crate::rate_limit::{RateError, RateLimit, RateLimiter, RateLimits};
use crate::store::TaskStore;
use crate::store::memory::MemoryStore;
use crate::task::now_ms;

/// A limiter whose backend is down.
struct Down;

#[async_trait]
impl RateLimiter for Down {
    async fn take(&self, _: &str, _: Limit, _: u32) -> Result<Decision, RateError> {
        Err(RateError::Backend("connection refused".into()))
    }
}

/// A node's state with auth on, `limiter`, keys limited to `key` and IPs to `ip`; and a
/// stored `read` key.
async fn node(
    limiter: Arc<dyn RateLimiter>,
    key: Option<RateLimit>,
    ip: Option<RateLimit>,
) -> (IngressState, String) {
    let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::new());
    let api_key = ApiKey::generate();
    let record = KeyRecord::new(&api_key, "reader", vec![Scope::Read], now_ms(), None);
    store.put_key(record).await.expect("put key");
    let limits = RateLimits {
        limiter,
        key_default: key,
        ip,
        trusted_proxies: Vec::new(),
    };
    let auth = Authenticator::new(Arc::clone(&store)).with_rate_limits(limits);
    let ctx = NodeContext {
        cluster: None,
        node_id: "here".into(),
        store,
        kernels: Registry::new(RegistryOptions { test_kernels: true }),
        metrics: Arc::new(Metrics::new().expect("metrics")),
        notifier: Arc::new(Notifier::default()),
        names: Arc::new(ActorNames::for_node("here")),
        local_load: Default::default(),
    };
    let state = IngressState::with_auth(
        ctx,
        Arc::new(IngressLimits::default()),
        Some(Arc::new(auth)),
    );
    (state, api_key.expose())
}

/// `GET path` from `peer`, with `key` if given.
fn get(path: &str, key: Option<&str>, peer: Option<SocketAddr>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let mut request = request.body(Body::empty()).expect("request");
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    request
}

/// A limiter whose clock stands still, so nothing refills however slowly a test runs.
fn frozen() -> Arc<dyn RateLimiter> {
    Arc::new(LocalLimiter::with(100, Arc::new(|| 1_000_000)))
}

fn limit(per_sec: u32, burst: u32) -> Option<RateLimit> {
    Some(RateLimit::new(per_sec, burst).expect("valid"))
}

#[tokio::test]
async fn a_key_over_its_limit_gets_429_and_the_probes_are_never_limited() {
    let (state, key) = node(frozen(), limit(1, 2), None).await;
    let app = router(state.clone());
    for remaining in ["1", "0"] {
        let answer = app
            .clone()
            .oneshot(get("/v1/tasks", Some(&key), None))
            .await
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::OK);
        let state = answer.headers()["ratelimit"].to_str().expect("text");
        assert!(
            state.starts_with(&format!("\"key\";r={remaining};")),
            "{state}"
        );
    }
    let refused = app
        .clone()
        .oneshot(get("/v1/tasks", Some(&key), None))
        .await
        .expect("answer");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["ratelimit-policy"], "\"key\";q=2;w=2");
    for _ in 0..20 {
        let probe = app
            .clone()
            .oneshot(get("/health", None, None))
            .await
            .expect("answer");
        assert_eq!(probe.status(), StatusCode::OK);
        assert!(!probe.headers().contains_key("ratelimit"));
    }
    let counted = state
        .ctx
        .metrics
        .rate_limited
        .with_label_values(&["key"])
        .get();
    assert_eq!(counted, 1);
}

#[tokio::test]
async fn keyless_requests_count_against_their_peers_ip() {
    let (state, key) = node(frozen(), None, limit(1, 2)).await;
    let app = router(state.clone());
    let peer = SocketAddr::from(([192, 0, 2, 1], 5000));
    let other = SocketAddr::from(([192, 0, 2, 2], 5000));
    for _ in 0..2 {
        let answer = app
            .clone()
            .oneshot(get("/v1/tasks", None, Some(peer)))
            .await
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(answer.headers()["ratelimit-policy"], "\"ip\";q=2;w=2");
    }
    let refused = app
        .clone()
        .oneshot(get("/v1/tasks", Some("tm_bad"), Some(peer)))
        .await
        .expect("answer");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let elsewhere = app
        .clone()
        .oneshot(get("/v1/tasks", None, Some(other)))
        .await
        .expect("answer");
    assert_eq!(
        elsewhere.status(),
        StatusCode::UNAUTHORIZED,
        "another address has its own bucket"
    );
    let keyed = app
        .clone()
        .oneshot(get("/v1/tasks", Some(&key), Some(peer)))
        .await
        .expect("answer");
    assert_eq!(
        keyed.status(),
        StatusCode::OK,
        "a valid key is not held to its address's limit"
    );
    assert!(
        !keyed.headers().contains_key("ratelimit"),
        "keys are unlimited here"
    );
    let counted = state
        .ctx
        .metrics
        .rate_limited
        .with_label_values(&["ip"])
        .get();
    assert_eq!(counted, 1);
}

#[tokio::test]
async fn a_failing_limiter_lets_requests_through() {
    let (state, key) = node(Arc::new(Down), limit(1, 1), limit(1, 1)).await;
    let app = router(state);
    let peer = Some(SocketAddr::from(([192, 0, 2, 1], 5000)));
    for _ in 0..3 {
        let keyed = app
            .clone()
            .oneshot(get("/v1/tasks", Some(&key), peer))
            .await
            .expect("answer");
        assert_eq!(keyed.status(), StatusCode::OK);
        assert!(!keyed.headers().contains_key("ratelimit"));
        let keyless = app
            .clone()
            .oneshot(get("/v1/tasks", None, peer))
            .await
            .expect("answer");
        assert_eq!(keyless.status(), StatusCode::UNAUTHORIZED);
    }
}
