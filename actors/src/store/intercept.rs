//! A store for unit tests whose chosen calls misbehave: [`Intercepted`] passes every call
//! to a [`MemoryStore`] except `create`, `requeue` and `get_key`, which go through its
//! [`Intercept`] (by default, straight through too). A test overrides only the call it breaks.

use async_trait::async_trait;
use taskmesh_kernels::Progress;
use taskmesh_kernels::task::TaskId;

use super::memory::MemoryStore;
use super::{Created, LeaseInfo, ListFilter, StoreError, TaskStore, Transition};
use crate::auth::key::KeyRecord;
use crate::task::{Fence, Finish, Millis, NewTask, TaskRecord};

/// What an [`Intercepted`] store does on `create` and `requeue`, given the real store.
#[async_trait]
pub(crate) trait Intercept: Send + Sync + 'static {
    /// `create`; passed through unless overridden.
    async fn create(
        &self,
        inner: &MemoryStore,
        tasks: Vec<NewTask>,
    ) -> Result<Vec<Created>, StoreError> {
        inner.create(tasks).await
    }

    /// `get_key`; passed through unless overridden.
    async fn get_key(
        &self,
        inner: &MemoryStore,
        id: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        inner.get_key(id).await
    }

    /// `requeue`; passed through unless overridden.
    async fn requeue(
        &self,
        inner: &MemoryStore,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        error: Option<String>,
    ) -> Result<Transition, StoreError> {
        inner.requeue(id, fence, attempts, error).await
    }
}

/// A [`MemoryStore`] whose `create` and `requeue` go through `intercept`.
pub(crate) struct Intercepted<I> {
    /// The real store, for the test to read behind the interception.
    pub(crate) inner: MemoryStore,
    /// What misbehaves.
    pub(crate) intercept: I,
}

impl<I> Intercepted<I> {
    /// An empty store intercepted by `intercept`.
    pub(crate) fn new(intercept: I) -> Self {
        Self {
            inner: MemoryStore::new(),
            intercept,
        }
    }
}

#[async_trait]
impl<I: Intercept> TaskStore for Intercepted<I> {
    async fn create(&self, tasks: Vec<NewTask>) -> Result<Vec<Created>, StoreError> {
        self.intercept.create(&self.inner, tasks).await
    }
    async fn requeue(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        error: Option<String>,
    ) -> Result<Transition, StoreError> {
        let inner = &self.inner;
        self.intercept
            .requeue(inner, id, fence, attempts, error)
            .await
    }
    async fn get(&self, id: &TaskId) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get(id).await
    }
    async fn start(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        attempts: u32,
        at: Millis,
    ) -> Result<Transition, StoreError> {
        self.inner.start(id, fence, attempts, at).await
    }
    async fn progress(
        &self,
        id: &TaskId,
        fence: Fence<'_>,
        progress: Progress,
    ) -> Result<Transition, StoreError> {
        self.inner.progress(id, fence, progress).await
    }
    async fn finish(&self, id: &TaskId, finish: Finish) -> Result<Transition, StoreError> {
        self.inner.finish(id, finish).await
    }
    async fn claim(&self, from: &str, to: &str) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.claim(from, to).await
    }
    async fn reassign(
        &self,
        ids: &[TaskId],
        from: &str,
        to: &str,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.reassign(ids, from, to).await
    }
    async fn renew_lease(&self, node: &str, ttl_ms: u64) -> Result<(), StoreError> {
        self.inner.renew_lease(node, ttl_ms).await
    }
    async fn lease(&self, node: &str) -> Result<Option<LeaseInfo>, StoreError> {
        self.inner.lease(node).await
    }
    async fn expired_holders(&self) -> Result<Vec<String>, StoreError> {
        self.inner.expired_holders().await
    }
    async fn list(&self, filter: &ListFilter) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.list(filter).await
    }
    async fn unfinished(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.unfinished().await
    }
    async fn recoverable(&self, node: &str) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.recoverable(node).await
    }
    async fn purge_finished(&self, finished_before: Millis) -> Result<usize, StoreError> {
        self.inner.purge_finished(finished_before).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn put_key(&self, key: KeyRecord) -> Result<bool, StoreError> {
        self.inner.put_key(key).await
    }
    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.intercept.get_key(&self.inner, id).await
    }
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_keys().await
    }
    async fn revoke_key(&self, id: &str, at_ms: Millis) -> Result<bool, StoreError> {
        self.inner.revoke_key(id, at_ms).await
    }
}
