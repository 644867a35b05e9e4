//! [`RedisStore`]: the task store on Redis, for clusters of nodes sharing one store.
//!
//! # Keys
//! Every key starts with a prefix (`taskmesh:` by default, see [`RedisConfig::prefix`]):
//! a hash per task, an idempotency-key string per key, sorted sets of unfinished, recent
//! and finished ids, a set per owner node, a lease key per live node and the set of
//! holders. The schema is in `redis/keys.rs`, the
//! hash's fields in `redis/record.rs`, and both are described in `docs/store.md`.
//!
//! # Writes: Lua scripts, batched
//! Every write is one Lua script (`redis/scripts/*.lua`), so it is atomic: `create`
//! checks idempotency keys and ids and writes all of a call's tasks; `start`, `requeue`
//! and `finish` check the current status in Redis (the first terminal write wins) and
//! update the indexes in the same script. Every call that is one command (`create`,
//! `get`, the transitions, each purge batch, `ping`) goes through the batcher
//! (`redis/batcher.rs`), a tokio task that sends everything queued as one pipeline, so
//! concurrent callers share round trips ([`RedisStore::pipeline_stats`]). The scripts
//! need Redis (or Valkey) 7.0 or later.
//!
//! # Durability
//! A write returns once Redis has acknowledged it: it is in Redis's memory and its AOF
//! buffer. With `appendfsync everysec` (the shipped `compose/redis.conf`) a crash of the
//! Redis process or host can lose up to the last second of acknowledged writes;
//! `appendfsync always` closes that window at the cost of an fsync per write batch.
//!
//! # Failures
//! The connection is a [`ConnectionManager`], which reconnects by itself. No call waits
//! longer than [`RedisConfig::timeout`] for Redis: past it, the call answers
//! [`StoreError::Backend`] (a write's outcome is then unknown; creates and transitions are
//! safe to retry). A refused connection answers [`StoreError::Unreachable`]: nothing was
//! sent, so nothing was written. The same store works again once Redis is back.
//!
//! # Expiry
//! Records get no Redis TTL: finished tasks are removed only by
//! [`TaskStore::purge_finished`], which the node calls with its result TTL, so the indexes
//! never point at expired records. Readers still skip an indexed record that has vanished.
//!
//! # Testing
//! [`testing::RedisServer`] runs a real `redis-server` on a free loopback port for tests
//! (built for this crate's tests and with the `testsuite` feature).

mod apikeys;
mod batcher;
mod holders;
mod keys;
mod read;
mod record;
mod scripts;
#[cfg(any(test, feature = "testsuite"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, FromRedisValue, Pipeline, Value};
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::{TaskId, TaskStatus};
use tokio::sync::{mpsc, oneshot};

use self::batcher::{Batcher, Counters, Op};
use self::keys::Keys;
use self::record::{FIELDS, Patch};
use self::scripts::{Moving, Scripts};
use crate::auth::key::KeyRecord;
use crate::store::rules::{self, Change};
use crate::store::{Created, LeaseInfo, ListFilter, StoreError, TaskStore, Transition};
use crate::task::{Fence, Finish, Millis, NewTask, TaskRecord};

/// How many tasks one `purge_finished` script deletes at most, so a large purge does not
/// block Redis (which runs one script at a time) for long.
const PURGE_BATCH: usize = 1_000;

/// How the store talks to Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// Prefix of every key. Stores with different prefixes share a Redis without seeing
    /// each other. On Redis Cluster, use a hash tag such as `{taskmesh}:`.
    pub prefix: String,
    /// The longest any call waits for Redis, connecting included.
    pub timeout: Duration,
    /// The most operations one pipeline carries.
    pub max_batch: usize,
    /// How many operations may wait for the batcher before callers wait to queue.
    pub queue_capacity: usize,
    /// For a `rediss://` URL: the CA certificate(s), PEM, that Redis's certificate is
    /// checked against; `None` checks it against the system's roots.
    pub tls_ca: Option<Vec<u8>>,
}

impl RedisConfig {
    /// The default prefix.
    pub const DEFAULT_PREFIX: &'static str = "taskmesh:";
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            timeout: Duration::from_secs(5),
            max_batch: 1_024,
            queue_capacity: 16_384,
            tls_ca: None,
        }
    }
}

/// Totals of the batcher since the store connected: how well calls share round trips.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Pipelines sent (round trips), resends after `NOSCRIPT` included.
    pub pipelines: u64,
    /// Operations those pipelines carried.
    pub ops: u64,
    /// Round trips that failed or timed out; their callers got [`StoreError::Backend`].
    pub failed_pipelines: u64,
    /// The most operations one pipeline carried.
    pub largest_pipeline: u64,
    /// Times Redis had lost the scripts (`NOSCRIPT`) and they were loaded again.
    pub script_loads: u64,
}

/// The Redis-backed [`TaskStore`]. Share it behind an `Arc`; it needs a tokio runtime.
pub struct RedisStore {
    conn: ConnectionManager,
    keys: Keys,
    scripts: Arc<Scripts>,
    ops: mpsc::Sender<Op>,
    counters: Arc<Counters>,
    timeout: Duration,
}

impl RedisStore {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379/0`) with the default
    /// [`RedisConfig`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisConfig::default()).await
    }

    /// Connects with the default config but every key under `prefix`.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let config = RedisConfig {
            prefix: prefix.to_owned(),
            ..RedisConfig::default()
        };
        Self::connect_with(url, config).await
    }

    /// Connects, loads the scripts and starts the batcher. Fails with
    /// [`StoreError::Backend`] if Redis does not answer within `config.timeout`.
    ///
    /// `url` is `redis://` or, over TLS, `rediss://`, with `user:password@` for an ACL
    /// user. No error of this store carries the password.
    pub async fn connect_with(url: &str, config: RedisConfig) -> Result<Self, StoreError> {
        let scrub = |e: StoreError| scrub_password(e, url);
        Self::connect_inner(url, config).await.map_err(scrub)
    }

    async fn connect_inner(url: &str, config: RedisConfig) -> Result<Self, StoreError> {
        let bad_url = |e: redis::RedisError| StoreError::Backend(format!("bad redis url: {e}"));
        let client = match &config.tls_ca {
            None => redis::Client::open(url).map_err(bad_url)?,
            Some(ca) => {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                };
                redis::Client::build_with_tls(url, certificates).map_err(bad_url)?
            }
        };
        // Few quick retries: while Redis is down, calls fail within a few hundred
        // milliseconds instead of queueing behind a long backoff, and every later call
        // starts a fresh reconnect, so the store recovers as soon as Redis is back.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout.min(Duration::from_secs(1))))
            .set_response_timeout(Some(config.timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2);
        let timeout = config.timeout;
        let connecting = ConnectionManager::new_with_config(client, manager);
        let mut conn = within(timeout, connecting).await?;
        let scripts = Arc::new(Scripts::new());
        within(timeout, scripts.load().exec_async(&mut conn)).await?;

        let counters = Arc::new(Counters::default());
        let (ops, queue) = mpsc::channel(config.queue_capacity.max(1));
        let batcher = Batcher {
            conn: conn.clone(),
            scripts: Arc::clone(&scripts),
            counters: Arc::clone(&counters),
            timeout,
            max_batch: config.max_batch.max(1),
        };
        tokio::spawn(batcher.run(queue));
        Ok(Self {
            conn,
            keys: Keys::new(&config.prefix),
            scripts,
            ops,
            counters,
            timeout,
        })
    }

    /// The batcher's totals so far.
    pub fn pipeline_stats(&self) -> PipelineStats {
        self.counters.snapshot()
    }

    /// The prefix of every key of this store.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// A rate limiter keeping its buckets in this store's Redis, under its prefix
    /// (`{p}rate:{bucket}`), on the same connection.
    pub fn rate_limiter(&self) -> crate::rate_limit::redis::RedisLimiter {
        crate::rate_limit::redis::RedisLimiter::new(
            self.conn.clone(),
            self.keys.prefix(),
            self.timeout,
        )
    }

    /// The non-terminal tasks `node` holds, oldest first, read from the node's owner set
    /// rather than by scanning the keyspace. A task joins the set when it is created with
    /// `node` as its [`NewTask::node`] (or, created without one, when `node` starts it),
    /// stays through `requeue` (its retry waits on that node), moves only by
    /// [`TaskStore::claim`] or [`TaskStore::reassign`], and leaves when it finishes.
    pub async fn owned_by(&self, node: &str) -> Result<Vec<TaskRecord>, StoreError> {
        self.scan_owner(node).await
    }

    /// Queues `cmd` for the batcher and waits for its slot of the pipeline's reply.
    async fn call(&self, cmd: Cmd) -> Result<Value, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.ops
            .send(Op { cmd, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn change(&self, id: &TaskId, change: Change) -> Result<Transition, StoreError> {
        let cmd = self
            .scripts
            .change(&self.keys, &id.text(), Patch::of(change));
        let reply = self.call(cmd).await?;
        let bad = |what: String| StoreError::Backend(format!("change script answered {what}"));
        // The second value is a status, or the holder for code 3 ('' for none).
        let (code, value): (i64, String) =
            redis::from_redis_value(reply).map_err(|e| bad(e.to_string()))?;
        let status = || {
            value
                .parse::<TaskStatus>()
                .map_err(|_| bad(format!("status {value:?}")))
        };
        match code {
            0 => Ok(Transition::NotFound),
            1 => Ok(Transition::Applied),
            2 => Ok(Transition::Rejected(status()?)),
            3 => Ok(Transition::NotHolder(Some(value).filter(|h| !h.is_empty()))),
            other => Err(bad(format!("code {other}"))),
        }
    }

    /// One command straight on the connection (not batched), within the timeout.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        within(self.timeout, cmd.query_async(&mut self.conn.clone())).await
    }

    /// One pipeline straight on the connection (not batched), within the timeout.
    async fn query_pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        within(self.timeout, pipe.query_async(&mut self.conn.clone())).await
    }
}

/// `e` with the password of `url` (if it has one) replaced by `***` wherever it shows:
/// Redis errors name hosts and users, never passwords as far as we know, but an error
/// of a client library is no place to trust with a secret.
fn scrub_password(e: StoreError, url: &str) -> StoreError {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo.split_once(':').map_or(userinfo, |(_, p)| p))
        .filter(|p| !p.is_empty());
    let Some(password) = password else {
        return e;
    };
    let hide = |text: String| text.replace(password, "***");
    match e {
        StoreError::Backend(text) => StoreError::Backend(hide(text)),
        StoreError::Unreachable(text) => StoreError::Unreachable(hide(text)),
        other => other,
    }
}

/// Awaits a Redis request for at most `timeout`.
async fn within<T>(
    timeout: Duration,
    request: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(request_failed(&e)),
        Err(_) => Err(StoreError::Backend(format!(
            "redis did not answer within {timeout:?}"
        ))),
    }
}

/// A failed request as a store error: a refused connection means the request was never
/// sent ([`StoreError::Unreachable`]); anything else may have reached Redis.
fn request_failed(e: &redis::RedisError) -> StoreError {
    if e.is_connection_refusal() {
        StoreError::Unreachable(format!("redis refused the connection: {e}"))
    } else {
        StoreError::Backend(format!("redis request failed: {e}"))
    }
}

#[async_trait]
impl TaskStore for RedisStore {
    async fn create(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let count = tasks.len();
        let reply = self.call(self.scripts.create(&self.keys, tasks)?).await?;
        let created = scripts::created(reply)?;
        if created.len() != count {
            return Err(StoreError::Backend(format!(
                "create script answered {} of {count} tasks",
                created.len()
            )));
        }
        Ok(created)
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.task(&id.text())).arg(&FIELDS[..]);
        read::decode_reply(id, self.call(cmd).await?)
    }

    async fn start(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        started_at_ms: Millis,
    ) -> Result<Transition, StoreError> {
        self.change(id, Change::start(fence, attempts, started_at_ms))
            .await
    }

    async fn requeue(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        error: Option<String>,
    ) -> Result<Transition, StoreError> {
        self.change(id, Change::requeue(fence, attempts, error))
            .await
    }

    async fn progress(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        progress: Progress,
    ) -> Result<Transition, StoreError> {
        self.change(id, Change::progress(fence, progress)).await
    }

    async fn finish(&self, id: &TaskId, finish: Finish) -> Result<Transition, StoreError> {
        self.change(id, Change::Finish(finish)).await
    }

    async fn claim(&self, from: &str, to: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let error = rules::claimed_error(from);
        self.transfer(Moving::All, from, to, &error).await
    }

    async fn reassign(
        &self,
        ids: &[TaskId],
        from: &str,
        to: &str,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let error = rules::reassigned_error(from);
        self.transfer(Moving::Only(ids), from, to, &error).await
    }

    async fn renew_lease(&self, node: &str, ttl_ms: u64) -> Result<(), StoreError> {
        self.renew(node, ttl_ms).await
    }

    async fn lease(&self, node: &str) -> Result<Option<LeaseInfo>, StoreError> {
        self.read_lease(node).await
    }

    async fn expired_holders(&self) -> Result<Vec<String>, StoreError> {
        self.expired().await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.scan_list(filter).await
    }

    async fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.scan_unfinished().await
    }

    /// Only the tasks `node` holds: other nodes share this store.
    async fn recoverable(&self, node: &str) -> Result<Vec<TaskRecord>, StoreError> {
        self.owned_by(node).await
    }

    async fn purge_finished(&self, finished_before: Millis) -> Result<usize, StoreError> {
        let mut purged = 0;
        loop {
            let cmd = self.scripts.purge(&self.keys, finished_before, PURGE_BATCH);
            let reply = self.call(cmd).await?;
            let batch: usize = redis::from_redis_value(reply)
                .map_err(|e| StoreError::Backend(format!("purge script answered {e}")))?;
            purged += batch;
            if batch < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let reply = self.call(redis::cmd("PING")).await?;
        match redis::from_redis_value::<String>(reply) {
            Ok(pong) if pong == "PONG" => Ok(()),
            other => Err(StoreError::Backend(format!("PING answered {other:?}"))),
        }
    }

    async fn put_key(&self, key: KeyRecord) -> Result<bool, StoreError> {
        self.insert_key(&key).await
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.read_key(id).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.read_keys().await
    }

    async fn revoke_key(&self, id: &str, at_ms: Millis) -> Result<bool, StoreError> {
        self.mark_revoked(id, at_ms).await
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .field("timeout", &self.timeout)
            .field("stats", &self.pipeline_stats())
            .finish_non_exhaustive()
    }
}
