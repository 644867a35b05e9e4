//! Cases for `create` and `get`: round trips, idempotency, concurrency.

use std::sync::Arc;

use taskmesh_kernels::task::{Priority, TaskId, TaskSpec, TaskStatus};
use tokio::task::JoinSet;

use super::fixtures::{create_one, get, task, unique_key};
use crate::store::{Created, ListFilter, TaskStore, Transition};
use crate::task::{Fence, NewTask, TaskRecord};

/// A created task reads back as exactly its queued record, every field included.
pub async fn create_then_get_round_trips_every_field(store: Arc<dyn TaskStore>) {
    let task = NewTask {
        id: TaskId::generate(),
        spec: TaskSpec {
            kind: "monte_carlo_option".into(),
            params: r#"{"paths":[1,2,3],"name":"ünïcode"}"#.into(),
            priority: Priority::High,
            timeout_ms: Some(1_500),
            max_retries: 3,
            idempotency_key: Some(unique_key()),
            class: Some("gpu".into()),
            request_id: Some("req-1".into()),
            submitted_by: Some("abcdef012345".into()),
        }
        .into(),
        created_at_ms: 1_700_000_000_123,
        node: Some("n".to_owned()),
    };
    let created = create_one(&*store, task.clone()).await;
    assert_eq!(created, Created::New(task.id));
    let record = get(&*store, &task.id).await;
    assert_eq!(
        record.node.as_deref(),
        Some("n"),
        "the holding node is kept"
    );
    assert_eq!(record, TaskRecord::queued(task));
}

/// An id that was never created reads as `None`, not as an error.
pub async fn get_of_an_unknown_id_is_none(store: Arc<dyn TaskStore>) {
    assert_eq!(store.get(&TaskId::generate()).await.expect("get"), None);
}

/// A second create with a taken key answers the first task's id and writes nothing.
pub async fn idempotency_key_returns_the_first_task_across_calls(store: Arc<dyn TaskStore>) {
    let key = unique_key();
    let first = task("echo", Some(&key));
    let second = task("other", Some(&key));
    assert_eq!(
        create_one(&*store, first.clone()).await,
        Created::New(first.id)
    );
    assert_eq!(
        create_one(&*store, second.clone()).await,
        Created::Existing(first.id)
    );
    assert_eq!(store.get(&second.id).await.expect("get"), None);
    assert_eq!(get(&*store, &first.id).await.spec.kind, "echo");
}

/// Within one call, a key repeated later in the batch names the earlier task.
pub async fn idempotency_key_repeated_in_one_call_returns_the_first_task(
    store: Arc<dyn TaskStore>,
) {
    let key = unique_key();
    let a = task("echo", Some(&key));
    let b = task("echo", Some(&key));
    let c = task("echo", None);
    let created = store
        .create(vec![a.clone(), b.clone(), c.clone()])
        .await
        .expect("create");
    assert_eq!(
        created,
        vec![
            Created::New(a.id),
            Created::Existing(a.id),
            Created::New(c.id),
        ]
    );
    assert_eq!(store.get(&b.id).await.expect("get"), None);
}

/// Different keys, and no key at all, never collapse tasks together.
pub async fn distinct_keys_and_missing_keys_create_distinct_tasks(store: Arc<dyn TaskStore>) {
    let a = task("echo", Some(&unique_key()));
    let b = task("echo", Some(&unique_key()));
    let created = store
        .create(vec![a.clone(), b.clone()])
        .await
        .expect("create");
    assert_eq!(created, vec![Created::New(a.id), Created::New(b.id)]);
    for _ in 0..2 {
        let unkeyed = task("echo", None);
        assert_eq!(
            create_one(&*store, unkeyed.clone()).await,
            Created::New(unkeyed.id)
        );
    }
}

/// Re-sending a task with an id that exists answers `Existing` and keeps its progress.
pub async fn creating_an_existing_id_does_not_overwrite_it(store: Arc<dyn TaskStore>) {
    let t = task("echo", None);
    create_one(&*store, t.clone()).await;
    let started = store
        .start(&t.id, Fence::new("n1", 0), 1, 10)
        .await
        .expect("start");
    assert_eq!(started, Transition::Applied);
    assert_eq!(
        create_one(&*store, t.clone()).await,
        Created::Existing(t.id)
    );
    assert_eq!(get(&*store, &t.id).await.status, TaskStatus::Running);
}

/// Many callers at once (the group-commit path) all get their own task, durably.
pub async fn concurrent_creates_are_all_durable_and_readable(store: Arc<dyn TaskStore>) {
    const CALLERS: usize = 500;
    let mut callers = JoinSet::new();
    for i in 0..CALLERS {
        let store = Arc::clone(&store);
        let key = (i % 2 == 0).then(unique_key);
        callers.spawn(async move {
            let t = task("echo", key.as_deref());
            (create_one(&*store, t.clone()).await, t.id)
        });
    }
    let mut created = Vec::with_capacity(CALLERS);
    while let Some(joined) = callers.join_next().await {
        let (answer, id) = joined.expect("caller panicked");
        assert_eq!(answer, Created::New(id));
        created.push(id);
    }
    for id in &created {
        assert_eq!(get(&*store, id).await.status, TaskStatus::Queued);
    }
    assert_eq!(store.unfinished().await.expect("unfinished").len(), CALLERS);
    let filter = ListFilter {
        limit: 2 * CALLERS,
        ..ListFilter::default()
    };
    assert_eq!(store.list(&filter).await.expect("list").len(), CALLERS);
}

/// Racing creates with one key make exactly one task, and every caller learns its id.
pub async fn concurrent_creates_with_one_key_make_one_task(store: Arc<dyn TaskStore>) {
    const CALLERS: usize = 50;
    let key = unique_key();
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let store = Arc::clone(&store);
        let t = task("echo", Some(&key));
        callers.spawn(async move { create_one(&*store, t).await });
    }
    let mut answers = Vec::with_capacity(CALLERS);
    while let Some(joined) = callers.join_next().await {
        answers.push(joined.expect("caller panicked"));
    }
    let new: Vec<_> = answers
        .iter()
        .filter(|c| matches!(c, Created::New(_)))
        .collect();
    assert_eq!(new.len(), 1, "exactly one caller creates: {answers:?}");
    let winner = *new[0].id();
    assert!(answers.iter().all(|c| *c.id() == winner));
    assert!(store.get(&winner).await.expect("get").is_some());
    assert_eq!(store.unfinished().await.expect("unfinished").len(), 1);
}
