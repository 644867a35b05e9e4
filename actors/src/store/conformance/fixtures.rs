//! Builders and checked calls shared by the cases.

use taskmesh_kernels::task::{Priority, TaskId, TaskSpec, TaskStatus};

use crate::store::{Created, TaskStore, Transition};
use crate::task::{Fence, Finish, Millis, NewTask, TaskRecord};

pub(crate) fn spec(kind: &str, key: Option<&str>) -> TaskSpec {
    TaskSpec {
        kind: kind.to_owned(),
        params: "{}".to_owned(),
        priority: Priority::Normal,
        timeout_ms: None,
        max_retries: 0,
        idempotency_key: key.map(str::to_owned),
        class: None,
        request_id: None,
        submitted_by: None,
    }
}

pub(crate) fn task(kind: &str, key: Option<&str>) -> NewTask {
    NewTask {
        id: TaskId::generate(),
        spec: spec(kind, key).into(),
        created_at_ms: 1_000,
        node: None,
    }
}

/// A successful finish at `at` (started 1 ms before) on node `a`; used by the
/// implementation-specific tests of each store.
#[cfg(test)]
pub(crate) fn succeeded(at: Millis) -> Finish {
    Finish {
        status: TaskStatus::Succeeded,
        result: Some("42".to_owned()),
        error: None,
        node: Some("a".to_owned()),
        lease: 0,
        attempts: 1,
        started_at_ms: Some(at - 1),
        finished_at_ms: at,
    }
}

/// The check each store private to one node runs for `recoverable`: it answers every
/// unfinished task, whichever node the caller names and whichever node holds the task.
#[cfg(test)]
pub(crate) async fn private_store_recovers_every_unfinished_task(store: &dyn TaskStore) {
    let on = |node: Option<&str>| NewTask {
        node: node.map(str::to_owned),
        ..task("echo", None)
    };
    let tasks = vec![on(Some("a")), on(Some("b")), on(None), on(Some("a"))];
    store.create(tasks.clone()).await.expect("create");
    store
        .start(&tasks[1].id, crate::task::Fence::new("b", 0), 1, 5)
        .await
        .expect("start");
    store
        .finish(&tasks[3].id, succeeded(6))
        .await
        .expect("finish");
    let expected: Vec<TaskId> = tasks[..3].iter().map(|t| t.id).collect();
    for node in ["a", "b", "c", "z"] {
        let recoverable = store.recoverable(node).await.expect("recoverable");
        assert_eq!(ids(&recoverable), expected, "recoverable({node:?})");
    }
}

/// The check each store private to one node runs for `expired_holders`: never a node,
/// even one that holds tasks and never renewed a lease, or whose lease ran out.
#[cfg(test)]
pub(crate) async fn private_store_never_expires_a_holder(store: &dyn TaskStore) {
    let held = NewTask {
        node: Some("a".to_owned()),
        ..task("echo", None)
    };
    store.create(vec![held]).await.expect("create");
    store.renew_lease("b", 1).await.expect("renew");
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(50);
    while std::time::Instant::now() < deadline {
        assert_eq!(
            store.expired_holders().await.expect("expired"),
            [] as [String; 0]
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Creates `creates` single tasks from `callers` concurrent tasks, one task per call, and
/// returns how long that took: the group-commit / pipelining measurement each store's
/// ignored throughput test reports.
#[cfg(test)]
pub(crate) async fn concurrent_single_creates(
    store: std::sync::Arc<dyn TaskStore>,
    callers: usize,
    creates: usize,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let store = std::sync::Arc::clone(&store);
        let share = creates / callers + usize::from(caller < creates % callers);
        tasks.spawn(async move {
            for _ in 0..share {
                store
                    .create(vec![task("echo", None)])
                    .await
                    .expect("create");
            }
        });
    }
    tasks.join_all().await;
    started.elapsed()
}

/// A key no other case (nor an earlier run against a shared backend) uses.
pub(super) fn unique_key() -> String {
    format!("key-{}", TaskId::generate())
}

pub(crate) fn finish(status: TaskStatus, finished_at_ms: Millis) -> Finish {
    Finish {
        status,
        result: None,
        error: None,
        node: None,
        lease: 0,
        attempts: 0,
        started_at_ms: None,
        finished_at_ms,
    }
}

/// A task placed on `node` at creation.
pub(super) fn on(node: &str) -> NewTask {
    NewTask {
        node: Some(node.to_owned()),
        ..task("echo", None)
    }
}

/// The answer to a write refused because `node` holds the task (or holds it under
/// another token).
pub(super) fn not_holder(node: &str) -> Transition {
    Transition::NotHolder(Some(node.to_owned()))
}

/// A finish at `at` reported by `fence.node` under the token `fence.lease`.
pub(super) fn finish_with(fence: Fence<'_>, status: TaskStatus, at: Millis) -> Finish {
    Finish {
        node: Some(fence.node.to_owned()),
        lease: fence.lease,
        attempts: 1,
        started_at_ms: Some(at - 1),
        ..finish(status, at)
    }
}

pub(super) async fn create_one(store: &dyn TaskStore, task: NewTask) -> Created {
    let mut created = store.create(vec![task]).await.expect("create");
    assert_eq!(created.len(), 1, "create answers once per task");
    created.remove(0)
}

pub(super) async fn get(store: &dyn TaskStore, id: &TaskId) -> TaskRecord {
    store
        .get(id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("task {id} should exist"))
}

pub(super) fn ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.id).collect()
}
