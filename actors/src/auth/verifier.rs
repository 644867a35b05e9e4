//! [`Authenticator`]: turns an `Authorization` header into the caller's key record.
//!
//! Keys live in the task store, so on a cluster every node sees the same keys. Each node
//! caches what it read (a key's record, or that there is no such key) for at most
//! [`CACHE_TTL`], so a key created or revoked on any node works or stops working on every
//! node within that time, and a burst of requests costs one store read per key and
//! second. The cache holds at most [`CACHE_MAX`] entries (it is cleared when full, so a
//! flood of made-up key ids cannot grow it).
//!
//! When the store cannot be read, a key read from it within the last [`STALE_IF_ERROR`]
//! keeps its last known state (and the store is asked again a [`CACHE_TTL`] later), so a
//! store outage does not turn every request into a `503` before its handler runs; the
//! handlers then answer what the outage means for them (`503 store_unavailable`,
//! `outcome_unknown`). A key never read, or read longer ago, answers `503`. The price: a
//! revoke that reached the store just before an outage may be missed by a node that read
//! the key earlier, for at most [`STALE_IF_ERROR`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, Method};

use super::key::{self, ApiKey, KeyRecord};
use super::scope::{self, Need};
use crate::rate_limit::RateLimits;
use crate::store::{StoreError, TaskStore};
use crate::task::now_ms;

/// How long a key read from the store is trusted before it is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// The most key ids cached at once.
pub const CACHE_MAX: usize = 10_000;

/// How long after its last successful read a cached key still answers while the store
/// cannot be read (see the module docs).
pub const STALE_IF_ERROR: Duration = Duration::from_secs(30);

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// A missing, malformed, unknown, revoked or expired key, or a wrong secret: one
    /// answer for all (401).
    #[error("unauthorized")]
    Unauthorized,
    /// The store could not be read: the key could not be checked (503).
    #[error("the key could not be checked: {0}")]
    Store(#[from] StoreError),
}

#[derive(Clone, Debug)]
struct Cached {
    /// When the entry was last read from the store, or last kept through a store error.
    read_at: Instant,
    /// When the entry was last read from the store.
    confirmed_at: Instant,
    record: Option<KeyRecord>,
}

impl Cached {
    /// Whether the entry answers at `now` without asking the store.
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.read_at) < CACHE_TTL
    }

    /// Whether the entry may answer at `now` when the store cannot be read.
    fn usable_on_error(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.confirmed_at) < STALE_IF_ERROR
    }
}

/// Checks keys against the task store. One per node, shared by every request.
pub struct Authenticator {
    store: Arc<dyn TaskStore>,
    cache: Mutex<HashMap<String, Cached>>,
    limits: Option<RateLimits>,
    protect_metrics: bool,
}

impl Authenticator {
    /// Checks keys against `store`.
    pub fn new(store: Arc<dyn TaskStore>) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
            limits: None,
            protect_metrics: false,
        }
    }

    /// With `true`, `GET /metrics` needs a key with `read` (`--metrics-auth on`);
    /// otherwise it is open like the health probes.
    pub fn protect_metrics(mut self, protect: bool) -> Self {
        self.protect_metrics = protect;
        self
    }

    /// What a request with `method` on `path` needs on this node: the table of
    /// [`scope::need`], with `/metrics` needing `read` when protected.
    pub fn need(&self, method: &Method, path: &str) -> Need {
        match scope::need(method, path) {
            Need::Open if self.protect_metrics && path.trim_matches('/') == "metrics" => Need::Read,
            need => need,
        }
    }

    /// Also enforces `limits` on the requests it authenticates (`crate::rate_limit`).
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// The rate limits enforced, if any.
    pub fn rate_limits(&self) -> Option<&RateLimits> {
        self.limits.as_ref()
    }

    /// The store keys live in.
    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.store
    }

    /// The record of the key in `header` (`Bearer tm_…`, the scheme in any case) if that
    /// key is valid now.
    pub async fn authenticate(&self, header: Option<&HeaderValue>) -> Result<KeyRecord, Denied> {
        let key = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key)
            .and_then(|k| k.trim().parse::<ApiKey>().ok())
            .ok_or(Denied::Unauthorized)?;
        let record = self.record(key.id()).await?;
        key::verify(&key, record.as_ref(), now_ms())
            .cloned()
            .ok_or(Denied::Unauthorized)
    }

    /// Forgets what is cached about `id` (after this node revoked or created it).
    pub fn forget(&self, id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(id);
        }
    }

    async fn record(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let now = Instant::now();
        if let Ok(cache) = self.cache.lock()
            && let Some(hit) = cache.get(id).filter(|c| c.fresh(now))
        {
            return Ok(hit.record.clone());
        }
        let record = match self.store.get_key(id).await {
            Ok(record) => record,
            Err(e) => return self.last_known(id, e),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                id.to_owned(),
                Cached {
                    read_at: now,
                    confirmed_at: now,
                    record: record.clone(),
                },
            );
        }
        Ok(record)
    }

    /// The store failed to read key `id`: its last known state if read recently enough
    /// (kept for one more [`CACHE_TTL`]), else the error.
    fn last_known(&self, id: &str, error: StoreError) -> Result<Option<KeyRecord>, StoreError> {
        let now = Instant::now();
        let Ok(mut cache) = self.cache.lock() else {
            return Err(error);
        };
        match cache.get_mut(id).filter(|c| c.usable_on_error(now)) {
            Some(entry) => {
                entry.read_at = now;
                tracing::debug!(key_id = %id, %error, "key store unreadable: using the key as last read");
                Ok(entry.record.clone())
            }
            None => Err(error),
        }
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scope::Scope;
    use crate::store::memory::MemoryStore;

    fn bearer(key: &ApiKey) -> HeaderValue {
        HeaderValue::try_from(format!("Bearer {}", key.expose())).expect("header")
    }

    #[tokio::test]
    async fn only_a_stored_live_key_with_its_secret_passes() {
        let store = Arc::new(MemoryStore::new());
        let auth = Authenticator::new(store.clone());
        let key = ApiKey::generate();
        let record = KeyRecord::new(&key, "ci", vec![Scope::Submit], now_ms(), None);
        store.put_key(record.clone()).await.expect("put");

        assert_eq!(
            auth.authenticate(Some(&bearer(&key))).await.ok(),
            Some(record)
        );
        let unknown = ApiKey::generate();
        let wrong_secret: ApiKey = format!("tm_{}_{}", key.id(), "0".repeat(32))
            .parse()
            .expect("well-formed");
        for header in [
            None,
            Some(HeaderValue::from_static("Bearer garbage")),
            Some(HeaderValue::from_static("Basic dXNlcjpwYXNz")),
            Some(bearer(&unknown)),
            Some(bearer(&wrong_secret)),
        ] {
            assert!(
                matches!(
                    auth.authenticate(header.as_ref()).await,
                    Err(Denied::Unauthorized)
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn an_entry_is_fresh_for_the_ttl_and_usable_on_error_for_longer() {
        let t0 = Instant::now();
        let entry = Cached {
            read_at: t0,
            confirmed_at: t0,
            record: None,
        };
        assert!(entry.fresh(t0));
        assert!(!entry.fresh(t0 + CACHE_TTL));
        assert!(entry.usable_on_error(t0 + CACHE_TTL));
        assert!(entry.usable_on_error(t0 + STALE_IF_ERROR - Duration::from_millis(1)));
        assert!(!entry.usable_on_error(t0 + STALE_IF_ERROR));
        // Kept through an error: fresh again for a TTL, but no longer usable on error
        // past its last confirmation's window.
        let kept = Cached {
            read_at: t0 + Duration::from_secs(20),
            ..entry
        };
        assert!(kept.fresh(t0 + Duration::from_secs(20)));
        assert!(!kept.usable_on_error(t0 + STALE_IF_ERROR));
    }

    #[tokio::test]
    async fn a_key_read_before_the_store_fails_keeps_working_an_unknown_one_does_not() {
        use crate::store::intercept::{Intercept, Intercepted};
        use std::sync::atomic::{AtomicBool, Ordering};

        struct Outage(AtomicBool);
        #[async_trait::async_trait]
        impl Intercept for Outage {
            async fn get_key(
                &self,
                inner: &MemoryStore,
                id: &str,
            ) -> Result<Option<KeyRecord>, StoreError> {
                if self.0.load(Ordering::SeqCst) {
                    return Err(StoreError::Backend("down".into()));
                }
                inner.get_key(id).await
            }
        }
        let store = Arc::new(Intercepted::new(Outage(AtomicBool::new(false))));
        let auth = Authenticator::new(store.clone());
        let key = ApiKey::generate();
        let record = KeyRecord::new(&key, "ci", vec![Scope::Read], now_ms(), None);
        store.inner.put_key(record.clone()).await.expect("put");
        assert!(auth.authenticate(Some(&bearer(&key))).await.is_ok());

        store.intercept.0.store(true, Ordering::SeqCst);
        // Past the TTL the store is asked again; it fails, and the last read answers.
        let late = auth.last_known(key.id(), StoreError::Backend("down".into()));
        assert_eq!(late.ok(), Some(Some(record)));
        let unknown = ApiKey::generate();
        assert!(matches!(
            auth.authenticate(Some(&bearer(&unknown))).await,
            Err(Denied::Store(_))
        ));
    }

    #[test]
    fn metrics_need_read_only_when_protected() {
        let store: Arc<dyn TaskStore> = Arc::new(MemoryStore::new());
        let open = Authenticator::new(Arc::clone(&store));
        assert_eq!(open.need(&Method::GET, "/metrics"), Need::Open);
        let closed = Authenticator::new(store).protect_metrics(true);
        assert_eq!(closed.need(&Method::GET, "/metrics"), Need::Read);
        assert_eq!(closed.need(&Method::GET, "/health"), Need::Open);
        assert_eq!(closed.need(&Method::GET, "/health/ready"), Need::Open);
        assert_eq!(closed.need(&Method::POST, "/v1/tasks"), Need::Submit);
    }

    #[tokio::test]
    async fn a_revoke_elsewhere_takes_effect_within_the_cache_ttl() {
        let store = Arc::new(MemoryStore::new());
        let auth = Authenticator::new(store.clone());
        let key = ApiKey::generate();
        let record = KeyRecord::new(&key, "ci", vec![Scope::Read], now_ms(), None);
        store.put_key(record).await.expect("put");
        assert!(auth.authenticate(Some(&bearer(&key))).await.is_ok());

        store.revoke_key(key.id(), now_ms()).await.expect("revoke");
        let deadline = Instant::now() + CACHE_TTL + Duration::from_millis(500);
        loop {
            if auth.authenticate(Some(&bearer(&key))).await.is_err() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still accepted past the cache TTL"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
