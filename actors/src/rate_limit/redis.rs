//! [`RedisLimiter`]: buckets in Redis, shared by every node of a cluster, so a key's limit
//! holds for the whole cluster however a client spreads its requests.
//!
//! One Lua script per request ([`SCRIPT`]) does the GCRA of [`super::gcra`] atomically
//! on the server: it reads the time with `TIME` (one clock for every node, so node clocks
//! may drift), reads the bucket's TAT, and stores the new TAT only when the request is
//! allowed, with a `PEXPIRE` at the moment the bucket is full again (a missing key is a
//! full bucket, so nothing idle stays in Redis). The script answers the TAT it read and
//! the time; the node recomputes the same [`gcra::decide`] from them for the headers
//! (remaining, reset), and takes `allowed` from the script.
//!
//! Keys: `{p}rate:{bucket}` (a string: the TAT in microseconds), under the task store's
//! prefix, so on Redis Cluster the store's hash tag puts them in its slot as well
//! (`docs/store.md`). One round trip per request; the script needs Redis 7 (effects
//! replication, so `TIME` before a write is allowed; the store needs 7 already).

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use super::gcra::{self, Decision, Limit};
use super::{RateError, RateLimiter};

/// KEYS: the bucket. ARGV: interval (µs), burst, cost. Answers `{allowed, tat, now}`:
/// `tat` is the stored TAT before this request (-1 for none), `now` Redis's time, both
/// in microseconds. Numbers are written with `%.0f`: Lua's `tostring` would print
/// `1.7e+15`.
pub const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
local tat = now
local seen = -1
if stored then
  seen = tonumber(stored)
  if seen > now then tat = seen end
end
local new_tat = tat + cost * interval
if new_tat - burst * interval > now then
  return {0, string.format('%.0f', seen), string.format('%.0f', now)}
end
local ttl = math.floor((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
return {1, string.format('%.0f', seen), string.format('%.0f', now)}
";

/// Buckets in Redis (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
    timeout: Duration,
}

impl RedisLimiter {
    /// Buckets under `{key_prefix}rate:` on `conn`; no call waits longer than `timeout`.
    pub fn new(conn: ConnectionManager, key_prefix: &str, timeout: Duration) -> Self {
        Self {
            conn,
            prefix: format!("{key_prefix}rate:"),
            script: Script::new(SCRIPT),
            timeout,
        }
    }

    /// The Redis key of `bucket`.
    pub fn key(&self, bucket: &str) -> String {
        format!("{}{bucket}", self.prefix)
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn take(&self, bucket: &str, limit: Limit, cost: u32) -> Result<Decision, RateError> {
        let mut invocation = self.script.key(self.key(bucket));
        invocation.arg(limit.interval_us).arg(limit.burst).arg(cost);
        let mut conn = self.conn.clone();
        let reply = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<(i64, String, String)>(&mut conn),
        )
        .await
        .map_err(|_| RateError::Backend(format!("redis did not answer within {:?}", self.timeout)))?
        .map_err(|e| RateError::Backend(e.to_string()))?;
        let (allowed, seen, now) = reply;
        let number = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| RateError::Backend(format!("the rate script answered {s:?}")))
        };
        let (seen, now) = (number(&seen)?, number(&now)?);
        let now = u64::try_from(now)
            .map_err(|_| RateError::Backend(format!("redis time {now} is before 1970")))?;
        let mut decision = gcra::decide(u64::try_from(seen).ok(), now, limit, cost);
        // The script decided; its sums are the same, this only guards the headers.
        decision.allowed = allowed == 1;
        if !decision.allowed && decision.retry_after_us == 0 {
            decision.retry_after_us = limit.interval_us;
        }
        Ok(decision)
    }
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}
