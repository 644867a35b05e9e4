//! [`EmbeddedStore`]: the single-node durable store, on [redb] with group commit.
//!
//! # Layout
//! One database file, `tasks.redb`, in the directory given to [`EmbeddedStore::open`],
//! with five tables (see `embedded/schema.rs`): `tasks` (id → MessagePack record),
//! `idempotency` (key → id), two indexes so neither `unfinished` nor
//! `purge_finished` scans every task: `unfinished` (ids of queued and running tasks) and
//! `finished` ((finished_at_ms, id) of terminal tasks), and `api_keys` (`embedded/keys.rs`).
//!
//! # Writes: group commit
//! A dedicated OS thread, the committer (`embedded/committer.rs`), owns every write
//! transaction. A write method sends its operation with a oneshot reply and awaits it;
//! the committer applies everything queued in one transaction, commits it durably
//! (fsync), and then answers each caller. So a write returns only once durable, and N
//! concurrent writers cost far fewer than N fsyncs ([`EmbeddedStore::commit_stats`]
//! shows the ratio). A future dropped while waiting does not undo its write.
//!
//! # Reads
//! Reads use redb read transactions (snapshots) and never wait for the committer:
//! `get` runs inline, `list` and `unfinished` on tokio's blocking pool.
//!
//! # Shutdown
//! [`EmbeddedStore::close`] stops taking writes (they answer [`StoreError::Closed`]);
//! dropping the store closes it and waits for the committer to finish its last batch.
//!
//! [redb]: https://docs.rs/redb/4

mod committer;
mod keys;
mod read;
mod schema;
#[cfg(test)]
mod tests;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase};
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::TaskId;
use tokio::sync::oneshot;

use self::committer::{Counters, MAX_QUEUED, Op, Queue, Reply, Transfer};
use crate::auth::key::KeyRecord;
use crate::store::leases::LocalLeases;
use crate::store::rules::{self, Change};
use crate::store::{Created, LeaseInfo, ListFilter, StoreError, TaskStore, Transition};
use crate::task::{Fence, Finish, Millis, NewTask, TaskRecord};

/// How many tasks one `purge_finished` transaction deletes at most; a large purge takes
/// several commits so other writers are not held up behind one huge transaction.
const PURGE_BATCH: usize = 1_000;

/// The redb-backed [`TaskStore`]. Share it behind an `Arc`.
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    commands: Queue,
    committer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    closed: AtomicBool,
    leases: LocalLeases,
}

/// Totals of the committer since the store was opened: how well group commit batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Write transactions committed.
    pub commits: u64,
    /// Operations (one per write-method call) those commits carried.
    pub ops: u64,
    /// Batches that failed and were answered with [`StoreError::Backend`].
    pub failed_batches: u64,
    /// The most operations one commit carried.
    pub largest_batch: u64,
}

impl EmbeddedStore {
    /// The database file's name inside the store's directory.
    pub const FILE_NAME: &'static str = "tasks.redb";

    /// redb's page cache when [`EmbeddedStore::open`] is used: bounds the node's memory.
    pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

    /// Opens the store in `dir` with a [`Self::DEFAULT_CACHE_BYTES`] cache.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, Self::DEFAULT_CACHE_BYTES)
    }

    /// Opens the store in `dir`, creating the directory and the database as needed, and
    /// starts the committer thread. redb keeps at most `cache_bytes` of pages in memory.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Backend(format!("cannot create store dir {}: {e}", dir.display()))
        })?;
        let path = dir.join(Self::FILE_NAME);
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(&path)?;
        let txn = db.begin_write()?;
        schema::create_tables(&txn)?;
        txn.commit()?;

        let db = Arc::new(db);
        let counters = Arc::new(Counters::default());
        let (commands, queue) = Queue::bounded(MAX_QUEUED);
        let committer = std::thread::Builder::new()
            .name("taskmesh-store-committer".into())
            .spawn({
                let (db, counters) = (Arc::clone(&db), Arc::clone(&counters));
                move || committer::run(&db, queue, &counters)
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the committer: {e}")))?;
        Ok(Self {
            db,
            path,
            commands,
            committer: Some(committer),
            counters,
            closed: AtomicBool::new(false),
            leases: LocalLeases::default(),
        })
    }

    /// Stops taking writes without blocking: writes already sent are still committed and
    /// answered, later ones answer [`StoreError::Closed`], and so does [`TaskStore::ping`].
    /// Reads keep working until the store is dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.commands.stop();
    }

    /// The committer's totals so far.
    pub fn commit_stats(&self) -> CommitStats {
        self.counters.snapshot()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one write to the committer and waits until it is committed.
    async fn write<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let (reply, answer) = oneshot::channel();
        self.commands.send(op(reply)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn change(&self, id: &TaskId, change: Change) -> Result<Transition, StoreError> {
        self.write(|reply| Op::Change(*id, change, reply)).await
    }

    /// Runs a read that may scan many records on tokio's blocking pool.
    async fn scan<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || read(&db))
            .await
            .map_err(|e| StoreError::Backend(format!("store read task failed: {e}")))?
    }
}

#[async_trait]
impl TaskStore for EmbeddedStore {
    async fn create(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|reply| Op::Create(tasks, reply)).await
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        read::get(&self.db, &id.text())
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
        if from == to {
            return Ok(Vec::new());
        }
        let transfer = Transfer {
            ids: None,
            from: from.to_owned(),
            to: to.to_owned(),
            error: rules::claimed_error(from),
        };
        self.write(|reply| Op::Transfer(transfer, reply)).await
    }

    async fn reassign(
        &self,
        ids: &[TaskId],
        from: &str,
        to: &str,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if from == to || ids.is_empty() {
            return Ok(Vec::new());
        }
        let transfer = Transfer {
            ids: Some(ids.to_vec()),
            from: from.to_owned(),
            to: to.to_owned(),
            error: rules::reassigned_error(from),
        };
        self.write(|reply| Op::Transfer(transfer, reply)).await
    }

    /// Counted in memory only: this store belongs to one node, so no peer reads it.
    async fn renew_lease(&self, node: &str, ttl_ms: u64) -> Result<(), StoreError> {
        self.leases.renew(node, ttl_ms, std::time::Instant::now())
    }

    async fn lease(&self, node: &str) -> Result<Option<LeaseInfo>, StoreError> {
        self.leases.get(node, std::time::Instant::now())
    }

    /// Always empty: this store belongs to one node, which never expires.
    async fn expired_holders(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<TaskRecord>, StoreError> {
        let filter = filter.clone();
        self.scan(move |db| read::list(db, &filter)).await
    }

    async fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.scan(read::unfinished).await
    }

    /// Every unfinished task: this store belongs to one node.
    async fn recoverable(&self, _node: &str) -> Result<Vec<TaskRecord>, StoreError> {
        self.unfinished().await
    }

    async fn purge_finished(&self, finished_before: Millis) -> Result<usize, StoreError> {
        let mut purged = 0;
        loop {
            let batch = self
                .write(|reply| Op::Purge(finished_before, PURGE_BATCH, reply))
                .await?;
            purged += batch;
            if batch < PURGE_BATCH {
                return Ok(purged);
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let committing = self.committer.as_ref().is_some_and(|c| !c.is_finished());
        if self.closed.load(Ordering::SeqCst) || !committing {
            return Err(StoreError::Closed);
        }
        self.db.begin_read()?;
        Ok(())
    }

    async fn put_key(&self, key: KeyRecord) -> Result<bool, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        self.scan(move |db| keys::put(db, &key)).await
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        keys::get(&self.db, id)
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.scan(keys::list).await
    }

    async fn revoke_key(&self, id: &str, at_ms: Millis) -> Result<bool, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        let id = id.to_owned();
        self.scan(move |db| keys::revoke(db, &id, at_ms)).await
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.close();
        if let Some(committer) = self.committer.take()
            && committer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "task store committer panicked");
        }
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .field("stats", &self.commit_stats())
            .finish_non_exhaustive()
    }
}
