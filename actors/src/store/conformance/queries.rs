//! Cases for `list`, `unfinished`, `recoverable`, `purge_finished` and `ping`.

use std::sync::Arc;

use taskmesh_kernels::task::TaskStatus;

use super::fixtures::{create_one, finish, ids, task, unique_key};
use crate::store::{Created, ListFilter, TaskStore, Transition};
use crate::task::{Fence, NewTask};

/// `list` answers newest first, applies status and kind together, and stops at `limit`.
pub async fn list_is_newest_first_filtered_and_limited(store: Arc<dyn TaskStore>) {
    let kinds = ["a", "b", "a", "b", "a"];
    let tasks: Vec<NewTask> = kinds.iter().map(|k| task(k, None)).collect();
    store.create(tasks.clone()).await.expect("create");
    let id = |i: usize| tasks[i].id;
    store
        .start(&id(2), Fence::new("n", 0), 1, 5)
        .await
        .expect("start");
    store
        .finish(&id(3), finish(TaskStatus::Succeeded, 6))
        .await
        .expect("finish");

    let list = async |status: Option<TaskStatus>, kind: Option<&str>, limit: usize| {
        let filter = ListFilter {
            status,
            kind: kind.map(str::to_owned),
            limit,
            ..ListFilter::default()
        };
        ids(&store.list(&filter).await.expect("list"))
    };
    assert_eq!(list(None, None, 100).await, [4, 3, 2, 1, 0].map(id));
    assert_eq!(
        list(Some(TaskStatus::Queued), None, 100).await,
        [4, 1, 0].map(id)
    );
    assert_eq!(list(None, Some("a"), 100).await, [4, 2, 0].map(id));
    let running_a = list(Some(TaskStatus::Running), Some("a"), 100).await;
    assert_eq!(running_a, [id(2)]);
    assert_eq!(list(None, None, 2).await, [4, 3].map(id));
    assert_eq!(list(None, Some("a"), 1).await, [id(4)]);
    assert_eq!(list(None, None, 0).await, []);
    assert_eq!(list(None, Some("missing"), 100).await, []);
}

/// `list` with `submitted_by` answers only the tasks that key submitted (a record without
/// a submitter, written with `--auth off` or before the field existed, matches none).
pub async fn list_filters_by_submitter(store: Arc<dyn TaskStore>) {
    let by = |key: Option<&str>| {
        let mut t = task("echo", None);
        let mut spec = (*t.spec).clone();
        spec.submitted_by = key.map(str::to_owned);
        t.spec = spec.into();
        t
    };
    let tasks = vec![
        by(Some("aaaa")),
        by(Some("bbbb")),
        by(None),
        by(Some("aaaa")),
    ];
    store.create(tasks.clone()).await.expect("create");
    let id = |i: usize| tasks[i].id;
    let list = async |submitted_by: Option<&str>, kind: Option<&str>| {
        let filter = ListFilter {
            kind: kind.map(str::to_owned),
            submitted_by: submitted_by.map(str::to_owned),
            limit: 100,
            ..ListFilter::default()
        };
        ids(&store.list(&filter).await.expect("list"))
    };
    assert_eq!(list(Some("aaaa"), None).await, [3, 0].map(id));
    assert_eq!(list(Some("bbbb"), Some("echo")).await, [id(1)]);
    assert_eq!(list(Some("bbbb"), Some("other")).await, []);
    assert_eq!(list(Some("cccc"), None).await, []);
    assert_eq!(list(None, None).await, [3, 2, 1, 0].map(id));
    let read = store.get(&id(1)).await.expect("get").expect("stored");
    assert_eq!(read.spec.submitted_by.as_deref(), Some("bbbb"));
}

/// `unfinished` answers exactly the queued and running tasks, oldest first.
pub async fn unfinished_is_oldest_first_and_drops_terminal_tasks(store: Arc<dyn TaskStore>) {
    let tasks: Vec<NewTask> = (0..4).map(|_| task("echo", None)).collect();
    store.create(tasks.clone()).await.expect("create");
    let id = |i: usize| tasks[i].id;
    store
        .start(&id(1), Fence::new("n", 0), 1, 5)
        .await
        .expect("start");
    store
        .finish(&id(2), finish(TaskStatus::Succeeded, 6))
        .await
        .expect("finish");

    let unfinished = store.unfinished().await.expect("unfinished");
    assert_eq!(ids(&unfinished), [0, 1, 3].map(id));
    let statuses: Vec<_> = unfinished.iter().map(|r| r.status).collect();
    use TaskStatus::{Queued, Running};
    assert_eq!(statuses, [Queued, Running, Queued]);

    store
        .finish(&id(0), finish(TaskStatus::Cancelled, 7))
        .await
        .expect("cancel");
    store
        .requeue(&id(1), Fence::new("n", 0), 1, None)
        .await
        .expect("requeue");
    let unfinished = store.unfinished().await.expect("unfinished");
    assert_eq!(ids(&unfinished), [1, 3].map(id));
    assert_eq!(unfinished[0].status, Queued);
}

/// `recoverable(node)` of a node that holds every task of the store (each created on it,
/// some started by it) is exactly its unfinished tasks, oldest first: the answer private
/// and shared stores agree on. (A private store answers every unfinished task for any
/// node; a shared one only the node's. Each store's own tests check that part.)
pub async fn recoverable_is_the_holding_nodes_unfinished_tasks_oldest_first(
    store: Arc<dyn TaskStore>,
) {
    let on_n = |kind| NewTask {
        node: Some("n".to_owned()),
        ..task(kind, None)
    };
    let tasks: Vec<NewTask> = (0..4).map(|_| on_n("echo")).collect();
    store.create(tasks.clone()).await.expect("create");
    let id = |i: usize| tasks[i].id;
    store
        .start(&id(1), Fence::new("n", 0), 1, 5)
        .await
        .expect("start");
    store
        .finish(&id(2), finish(TaskStatus::Succeeded, 6))
        .await
        .expect("finish");

    let recoverable = store.recoverable("n").await.expect("recoverable");
    assert_eq!(ids(&recoverable), [0, 1, 3].map(id));
    let statuses: Vec<_> = recoverable.iter().map(|r| r.status).collect();
    use TaskStatus::{Queued, Running};
    assert_eq!(statuses, [Queued, Running, Queued]);
    assert_eq!(
        recoverable,
        store.unfinished().await.expect("unfinished"),
        "the node holds every unfinished task"
    );

    store
        .requeue(&id(1), Fence::new("n", 0), 1, None)
        .await
        .expect("requeue");
    store
        .finish(&id(3), finish(TaskStatus::Cancelled, 7))
        .await
        .expect("cancel");
    let recoverable = store.recoverable("n").await.expect("recoverable");
    assert_eq!(ids(&recoverable), [0, 1].map(id), "a requeued task stays");
    assert_eq!(recoverable[1].status, Queued);
}

/// `purge_finished` deletes terminal tasks finished strictly before the cut-off, with
/// their idempotency keys, and nothing else.
pub async fn purge_removes_only_old_finished_tasks_and_frees_their_keys(store: Arc<dyn TaskStore>) {
    let old_key = unique_key();
    let old = task("echo", Some(&old_key));
    let edge = task("echo", Some(&unique_key()));
    let young = task("echo", None);
    let running = task("echo", None);
    let queued = task("echo", None);
    let all = [&old, &edge, &young, &running, &queued].map(|t| t.clone());
    store.create(all.to_vec()).await.expect("create");
    for (t, at) in [(&old, 100), (&edge, 500), (&young, 900)] {
        let done = store
            .finish(&t.id, finish(TaskStatus::Succeeded, at))
            .await
            .expect("finish");
        assert_eq!(done, Transition::Applied);
    }
    store
        .start(&running.id, Fence::new("n", 0), 1, 5)
        .await
        .expect("start");

    assert_eq!(store.purge_finished(500).await.expect("purge"), 1);
    assert_eq!(store.get(&old.id).await.expect("get"), None);
    for kept in [&edge, &young, &running, &queued] {
        assert!(store.get(&kept.id).await.expect("get").is_some());
    }
    let reuse = task("echo", Some(&old_key));
    assert_eq!(
        create_one(&*store, reuse.clone()).await,
        Created::New(reuse.id)
    );
    assert_eq!(store.purge_finished(500).await.expect("purge again"), 0);
    assert_eq!(store.purge_finished(1_000).await.expect("purge all"), 2);
    assert_eq!(store.unfinished().await.expect("unfinished").len(), 3);
}

/// A healthy store answers `ping`.
pub async fn ping_succeeds(store: Arc<dyn TaskStore>) {
    store.ping().await.expect("ping");
}
