//! Rate limits per API key and per client IP (GCRA), cluster-wide on Redis.
//!
//! Checked with `--auth on` by the auth middleware (`crate::auth::middleware`), after the
//! key is known: a request with a valid key is counted against that key's limit (its own
//! [`RateLimit`], else `--key-rate-limit`); a request without a valid key (the 401 path)
//! against its client IP's (`--ip-rate-limit`, the seed nginx's 10 r/s burst 20), so key
//! guessing and keyless floods are throttled. The open routes (`/health`,
//! `/health/ready`, `/metrics`) are never limited. A batch of N tasks costs N. Over the
//! limit: `429 rate_limited` with `Retry-After` and the `RateLimit-Policy` / `RateLimit`
//! headers ([`Checked::headers`]).
//!
//! # Layout
//! - [`gcra`]: the decision, pure (stored TAT, now, limit, cost → allowed, new TAT,
//!   remaining, retry-after, reset).
//! - [`RateLimiter`]: the I/O seam, `take(bucket, limit, cost)`, with two
//!   implementations run through one conformance suite: [`local::LocalLimiter`] (in
//!   memory, bounded; exact for one node) and [`redis::RedisLimiter`] (one Lua script
//!   with Redis's clock; shared by every node of a cluster on the Redis store).
//! - [`client_ip`]: the client of a request (peer, or `X-Forwarded-For` from trusted
//!   proxies only) and its bucket.
//! - [`RateLimits`]: the node's limits and limiter, as the middleware uses them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderValue;
use serde::{Deserialize, Serialize};

use self::client_ip::Cidr;
use self::gcra::{Decision, Limit};

pub mod client_ip;
#[cfg(any(test, feature = "testsuite"))]
pub mod conformance;
pub mod gcra;
pub mod local;
pub mod redis;

/// The largest rate or burst a limit may have.
pub const MAX_RATE: u32 = 1_000_000;

/// A rate limit as configured and shown: `per_sec` requests a second, `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub per_sec: u32,
    /// Requests a client that was idle may send at once.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub burst: u32,
}

/// A rate limit out of range, or not `<per_sec>[/<burst>]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a rate limit is <per_sec>[/<burst>], each from 1 to {MAX_RATE} (e.g. 10/20; the burst \
     is twice the rate when left out), got `{0}`"
)]
pub struct BadRateLimit(pub String);

impl RateLimit {
    /// The limit if both values are in range.
    pub fn new(per_sec: u32, burst: u32) -> Result<Self, BadRateLimit> {
        let ok = |v: u32| (1..=MAX_RATE).contains(&v);
        if ok(per_sec) && ok(burst) {
            Ok(Self { per_sec, burst })
        } else {
            Err(BadRateLimit(format!("{per_sec}/{burst}")))
        }
    }

    /// The limit as GCRA uses it.
    pub fn limit(self) -> Limit {
        Limit::per_sec(self.per_sec, self.burst)
    }

    /// Seconds an empty bucket takes to fill (the policy's window), at least 1.
    pub fn window_secs(self) -> u64 {
        u64::from(self.burst)
            .div_ceil(u64::from(self.per_sec.max(1)))
            .max(1)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.per_sec, self.burst)
    }
}

impl FromStr for RateLimit {
    type Err = BadRateLimit;

    fn from_str(s: &str) -> Result<Self, BadRateLimit> {
        let bad = || BadRateLimit(s.to_owned());
        let number = |v: &str| v.trim().parse::<u32>().map_err(|_| bad());
        let (per_sec, burst) = match s.split_once('/') {
            Some((rate, burst)) => (number(rate)?, number(burst)?),
            None => {
                let rate = number(s)?;
                (rate, rate.saturating_mul(2).min(MAX_RATE))
            }
        };
        Self::new(per_sec, burst).map_err(|_| bad())
    }
}

/// The time in microseconds since the epoch; injected so decisions can be tested.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    })
}

/// Why a limiter could not decide.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    /// The shared backend (Redis) failed or did not answer in time.
    #[error("rate limiter backend failed: {0}")]
    Backend(String),
    /// A thread panicked holding the buckets.
    #[error("rate limiter state poisoned")]
    Poisoned,
}

/// Buckets of GCRA state: the I/O seam of rate limiting.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts a request of `cost` against `bucket` under `limit`: stores the new state
    /// only when the request is allowed (a refusal costs nothing).
    async fn take(&self, bucket: &str, limit: Limit, cost: u32) -> Result<Decision, RateError>;
}

/// Which limit applies to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// An API key's.
    Key,
    /// A client IP's (requests without a valid key).
    Ip,
}

impl Scope {
    /// The name in the metric's `scope` label and the headers' policy name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Ip => "ip",
        }
    }
}

/// A request counted against a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Whose limit.
    pub scope: Scope,
    /// The limit.
    pub limit: RateLimit,
    /// What GCRA decided.
    pub decision: Decision,
}

impl Checked {
    /// The `RateLimit-Policy` and `RateLimit` fields of draft-ietf-httpapi-ratelimit-
    /// headers-11 (structured fields): the policy is named for the scope, its quota `q`
    /// is the burst and its window `w` the seconds an empty bucket takes to fill; `r`
    /// is what is left now and `t` the seconds until the bucket is full again:
    /// `RateLimit-Policy: "key";q=20;w=2` and `RateLimit: "key";r=0;t=2`.
    pub fn headers(&self) -> [(&'static str, HeaderValue); 2] {
        let name = self.scope.as_str();
        let policy = format!(
            "\"{name}\";q={};w={}",
            self.limit.burst,
            self.limit.window_secs()
        );
        let state = format!(
            "\"{name}\";r={};t={}",
            self.decision.remaining,
            self.decision.reset_secs()
        );
        // Digits, quotes, letters and `;=`: always a valid header value.
        let value = |s: String| HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static(""));
        [
            ("ratelimit-policy", value(policy)),
            ("ratelimit", value(state)),
        ]
    }
}

/// A node's rate limits and the limiter holding their buckets.
#[derive(Clone)]
pub struct RateLimits {
    /// Where the buckets live.
    pub limiter: Arc<dyn RateLimiter>,
    /// The limit of a key without its own; `None`: unlimited.
    pub key_default: Option<RateLimit>,
    /// The limit per client IP of requests without a valid key; `None`: unlimited.
    pub ip: Option<RateLimit>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
}

impl RateLimits {
    /// Counts `cost` against the key `key_id`, under its own limit or the default.
    /// `None` when the key is unlimited.
    pub async fn check_key(
        &self,
        key_id: &str,
        own: Option<RateLimit>,
        cost: u32,
    ) -> Option<Result<Checked, RateError>> {
        let limit = own.or(self.key_default)?;
        Some(
            self.check(Scope::Key, &format!("key:{key_id}"), limit, cost)
                .await,
        )
    }

    /// Counts one request without a valid key against the client `ip`. `None` when
    /// IPs are unlimited.
    pub async fn check_ip(&self, ip: IpAddr) -> Option<Result<Checked, RateError>> {
        let limit = self.ip?;
        Some(
            self.check(Scope::Ip, &client_ip::bucket(ip), limit, 1)
                .await,
        )
    }

    async fn check(
        &self,
        scope: Scope,
        bucket: &str,
        limit: RateLimit,
        cost: u32,
    ) -> Result<Checked, RateError> {
        let decision = self.limiter.take(bucket, limit.limit(), cost).await?;
        Ok(Checked {
            scope,
            limit,
            decision,
        })
    }
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits")
            .field("key_default", &self.key_default)
            .field("ip", &self.ip)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
