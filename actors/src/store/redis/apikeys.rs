//! API keys in the Redis store: a hash per key (`{p}apikey:{id}`, a field per part of the
//! [`KeyRecord`]; a key's own rate limit is `rate_per_sec` and `rate_burst`) and the set of key ids (`{p}apikeys`). Writes are one small Lua script
//! each (insert-if-absent, revoke-if-present), so they are atomic; key calls are rare and
//! go straight to the connection, not through the batcher.

use std::collections::HashMap;

use redis::Value;

use super::RedisStore;
use crate::auth::key::KeyRecord;
use crate::auth::scope::Scope;
use crate::rate_limit::RateLimit;
use crate::store::StoreError;
use crate::task::Millis;

/// KEYS: the key's hash, the id set. ARGV: the id, then field/value pairs.
const PUT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
";

/// KEYS: the key's hash. ARGV: the revocation time. Keeps a first revocation's time.
const REVOKE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'revoked_at_ms', ARGV[1])
return 1
";

fn fields(key: &KeyRecord) -> Vec<(&'static str, String)> {
    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
    let mut fields = vec![
        ("name", key.name.clone()),
        ("scopes", scopes.join(",")),
        ("secret_hash", key.secret_hash.clone()),
        ("created_at_ms", key.created_at_ms.to_string()),
    ];
    if let Some(at) = key.expires_at_ms {
        fields.push(("expires_at_ms", at.to_string()));
    }
    if let Some(at) = key.revoked_at_ms {
        fields.push(("revoked_at_ms", at.to_string()));
    }
    if let Some(limit) = key.rate_limit {
        fields.push(("rate_per_sec", limit.per_sec.to_string()));
        fields.push(("rate_burst", limit.burst.to_string()));
    }
    fields
}

fn decode(id: &str, mut hash: HashMap<String, String>) -> Result<Option<KeyRecord>, StoreError> {
    if hash.is_empty() {
        return Ok(None);
    }
    let corrupt = |reason: String| StoreError::Corrupt {
        id: format!("api key {id}"),
        reason,
    };
    let mut take = |field: &str| hash.remove(field);
    let number = |field: &str, value: Option<String>| -> Result<Option<Millis>, StoreError> {
        value
            .map(|v| {
                v.parse()
                    .map_err(|_| corrupt(format!("`{field}` is not a number")))
            })
            .transpose()
    };
    let required =
        |field: &str, value: Option<String>| value.ok_or_else(|| corrupt(format!("no `{field}`")));
    let scopes = required("scopes", take("scopes"))?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Scope>().map_err(|e| corrupt(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let created_at_ms = number("created_at_ms", take("created_at_ms"))?
        .ok_or_else(|| corrupt("no `created_at_ms`".into()))?;
    let rate_limit = match (
        number("rate_per_sec", take("rate_per_sec"))?,
        number("rate_burst", take("rate_burst"))?,
    ) {
        (None, None) => None,
        (Some(per_sec), Some(burst)) => Some(
            u32::try_from(per_sec)
                .ok()
                .zip(u32::try_from(burst).ok())
                .and_then(|(r, b)| RateLimit::new(r, b).ok())
                .ok_or_else(|| corrupt("the rate limit is out of range".into()))?,
        ),
        _ => return Err(corrupt("half a rate limit".into())),
    };
    Ok(Some(KeyRecord {
        id: id.to_owned(),
        name: required("name", take("name"))?,
        scopes,
        secret_hash: required("secret_hash", take("secret_hash"))?,
        created_at_ms,
        expires_at_ms: number("expires_at_ms", take("expires_at_ms"))?,
        revoked_at_ms: number("revoked_at_ms", take("revoked_at_ms"))?,
        rate_limit,
    }))
}

impl RedisStore {
    /// `TaskStore::put_key`.
    pub(super) async fn insert_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(PUT)
            .arg(2)
            .arg(self.keys.api_key(&key.id))
            .arg(self.keys.api_keys())
            .arg(&key.id);
        for (field, value) in fields(key) {
            cmd.arg(field).arg(value);
        }
        let written: i64 = self.query(&cmd).await?;
        Ok(written == 1)
    }

    /// `TaskStore::get_key`.
    pub(super) async fn read_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        let hash: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(self.keys.api_key(id)))
            .await?;
        decode(id, hash)
    }

    /// `TaskStore::list_keys`: the id set, then every hash in one pipeline. An id whose
    /// hash is gone is skipped.
    pub(super) async fn read_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let ids: Vec<String> = self
            .query(redis::cmd("SMEMBERS").arg(self.keys.api_keys()))
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.keys.api_key(id));
        }
        let replies: Vec<Value> = self.query_pipe(&pipe).await?;
        let mut keys = Vec::with_capacity(ids.len());
        for (id, reply) in ids.iter().zip(replies) {
            let hash: HashMap<String, String> =
                redis::from_redis_value(reply).map_err(|e| StoreError::Corrupt {
                    id: format!("api key {id}"),
                    reason: e.to_string(),
                })?;
            keys.extend(decode(id, hash)?);
        }
        crate::store::sort_keys(&mut keys);
        Ok(keys)
    }

    /// `TaskStore::revoke_key`.
    pub(super) async fn mark_revoked(&self, id: &str, at_ms: Millis) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(REVOKE).arg(1).arg(self.keys.api_key(id)).arg(at_ms);
        let found: i64 = self.query(&cmd).await?;
        Ok(found == 1)
    }
}
