//! [`MemoryStore`]: the task store in a mutex, for unit tests of other modules.
//!
//! It keeps records as encoded bytes and decodes them on every read, as the durable stores
//! do, so a type that does not round-trip fails here too. It follows the same rules (the
//! shared `rules` module) and passes the same conformance suite.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::TaskId;

use crate::auth::key::KeyRecord;
use crate::store::leases::LocalLeases;
use crate::store::rules::{self, Change};
use crate::store::{Created, LeaseInfo, ListFilter, StoreError, TaskStore, Transition, codec};
use crate::task::{Fence, Finish, Millis, NewTask, TaskRecord};

/// An in-memory [`TaskStore`]. Nothing survives a drop.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    leases: LocalLeases,
}

#[derive(Debug, Default)]
struct Inner {
    /// Encoded records by id; ids sort by creation time.
    tasks: BTreeMap<TaskId, Vec<u8>>,
    /// Idempotency key → the first task created with it.
    keys: HashMap<String, TaskId>,
    /// API keys by id.
    api_keys: BTreeMap<String, KeyRecord>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }

    fn change(&self, id: &TaskId, change: Change) -> Result<Transition, StoreError> {
        let mut inner = self.lock()?;
        let Some(bytes) = inner.tasks.get(id) else {
            return Ok(Transition::NotFound);
        };
        let mut record = codec::decode(&id.text(), bytes)?;
        let outcome = rules::apply(&mut record, change);
        if outcome == Transition::Applied {
            inner.tasks.insert(*id, codec::encode(&record)?);
        }
        Ok(outcome)
    }

    /// `claim` and `reassign`: moves those of `ids` that `rules::transfer` allows, in
    /// order, deciding all of them before writing any (so a corrupt record writes
    /// nothing). Duplicate ids move once.
    fn transfer(
        inner: &mut Inner,
        ids: &[TaskId],
        from: &str,
        to: &str,
        error: &str,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut moved = Vec::new();
        let mut seen = HashSet::new();
        for id in ids {
            let Some(bytes) = inner.tasks.get(id).filter(|_| seen.insert(id)) else {
                continue;
            };
            let mut record = codec::decode(&id.text(), bytes)?;
            if rules::transfer(&mut record, from, to, error) {
                moved.push(record);
            }
        }
        for record in &moved {
            inner.tasks.insert(record.id, codec::encode(record)?);
        }
        Ok(moved)
    }

    /// Decodes every record, oldest first.
    fn records(inner: &Inner) -> impl DoubleEndedIterator<Item = Result<TaskRecord, StoreError>> {
        inner
            .tasks
            .iter()
            .map(|(id, bytes)| codec::decode(&id.text(), bytes))
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn create(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>, StoreError> {
        let mut inner = self.lock()?;
        let mut created = Vec::with_capacity(tasks.len());
        for task in tasks {
            let key = task.spec.idempotency_key.clone();
            if let Some(first) = key.as_ref().and_then(|k| inner.keys.get(k)) {
                created.push(Created::Existing(*first));
                continue;
            }
            if inner.tasks.contains_key(&task.id) {
                created.push(Created::Existing(task.id));
                continue;
            }
            let record = TaskRecord::queued(task);
            inner.tasks.insert(record.id, codec::encode(&record)?);
            if let Some(key) = key {
                inner.keys.insert(key, record.id);
            }
            created.push(Created::New(record.id));
        }
        Ok(created)
    }

    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let inner = self.lock()?;
        inner
            .tasks
            .get(id)
            .map(|bytes| codec::decode(&id.text(), bytes))
            .transpose()
    }

    async fn start(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        started_at_ms: Millis,
    ) -> Result<Transition, StoreError> {
        self.change(id, Change::start(fence, attempts, started_at_ms))
    }

    async fn requeue(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        error: Option<String>,
    ) -> Result<Transition, StoreError> {
        self.change(id, Change::requeue(fence, attempts, error))
    }

    async fn progress(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        progress: Progress,
    ) -> Result<Transition, StoreError> {
        self.change(id, Change::progress(fence, progress))
    }

    async fn finish(&self, id: &TaskId, finish: Finish) -> Result<Transition, StoreError> {
        self.change(id, Change::Finish(finish))
    }

    async fn claim(&self, from: &str, to: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let mut inner = self.lock()?;
        let ids: Vec<TaskId> = inner.tasks.keys().cloned().collect();
        let moved = Self::transfer(&mut inner, &ids, from, to, &rules::claimed_error(from))?;
        Ok(moved)
    }

    async fn reassign(
        &self,
        ids: &[TaskId],
        from: &str,
        to: &str,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut inner = self.lock()?;
        Self::transfer(&mut inner, ids, from, to, &rules::reassigned_error(from))
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
        let inner = self.lock()?;
        let mut found = Vec::new();
        for record in Self::records(&inner)
            .rev()
            .take(rules::list_scan_budget(filter.limit))
        {
            if found.len() >= filter.limit {
                break;
            }
            let record = record?;
            if rules::matches(filter, &record) {
                found.push(record);
            }
        }
        Ok(found)
    }

    async fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let inner = self.lock()?;
        let mut found = Vec::new();
        for record in Self::records(&inner) {
            let record = record?;
            if !record.status.is_terminal() {
                found.push(record);
            }
        }
        Ok(found)
    }

    /// Every unfinished task: this store belongs to one node.
    async fn recoverable(&self, _node: &str) -> Result<Vec<TaskRecord>, StoreError> {
        self.unfinished().await
    }

    async fn purge_finished(&self, finished_before: Millis) -> Result<usize, StoreError> {
        let mut inner = self.lock()?;
        let mut doomed = Vec::new();
        for record in Self::records(&inner) {
            let record = record?;
            if rules::purgeable(&record, finished_before) {
                doomed.push(record);
            }
        }
        for record in &doomed {
            inner.tasks.remove(&record.id);
            if let Some(key) = &record.spec.idempotency_key
                && inner.keys.get(key) == Some(&record.id)
            {
                inner.keys.remove(key);
            }
        }
        Ok(doomed.len())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.lock().map(drop)
    }

    async fn put_key(&self, key: KeyRecord) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        if inner.api_keys.contains_key(&key.id) {
            return Ok(false);
        }
        inner.api_keys.insert(key.id.clone(), key);
        Ok(true)
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        Ok(self.lock()?.api_keys.get(id).cloned())
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut keys: Vec<KeyRecord> = self.lock()?.api_keys.values().cloned().collect();
        crate::store::sort_keys(&mut keys);
        Ok(keys)
    }

    async fn revoke_key(&self, id: &str, at_ms: Millis) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        let Some(key) = inner.api_keys.get_mut(id) else {
            return Ok(false);
        };
        key.revoked_at_ms.get_or_insert(at_ms);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        conformance::run_all(async || MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn recovers_every_unfinished_task_whatever_the_node() {
        conformance::fixtures::private_store_recovers_every_unfinished_task(&MemoryStore::new())
            .await;
    }

    #[tokio::test]
    async fn never_names_an_expired_holder() {
        conformance::fixtures::private_store_never_expires_a_holder(&MemoryStore::new()).await;
    }
}
