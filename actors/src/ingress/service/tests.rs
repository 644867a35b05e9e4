//! The ingress's store-facing decisions, against an in-memory store: a submission whose
//! store call failed is resolved before it is answered, and a long-poll on the holder
//! notices a task that moved away. Time is paused, so waits are exact and instant.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use taskmesh_cluster::wire::NodeInfo;
use taskmesh_kernels::task::{TaskId, TaskStatus};
use taskmesh_kernels::{Registry, RegistryOptions};

use super::{HOLDER_POLL, RESOLVE_WITHIN, resolved};
use crate::context::{ActorNames, NodeContext};
use crate::ingress::error::ApiError;
use crate::ingress::{IngressLimits, IngressState};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::conformance::fixtures::spec;
use crate::store::intercept::{Intercept, Intercepted};
use crate::store::memory::MemoryStore;
use crate::store::{Created, StoreError, TaskStore, Transition};
use crate::task::{Fence, Finish, NewTask};

const NODE: &str = "here";

fn state(store: Arc<dyn TaskStore>) -> IngressState {
    state_in(store, None)
}

/// A node's ingress, clustered when `cluster` is given.
fn state_in(store: Arc<dyn TaskStore>, cluster: Option<Arc<NodeInfo>>) -> IngressState {
    IngressState::new(
        NodeContext {
            cluster,
            node_id: NODE.into(),
            store,
            kernels: Registry::new(RegistryOptions { test_kernels: true }),
            metrics: Arc::new(Metrics::new().expect("metrics")),
            notifier: Arc::new(Notifier::default()),
            names: Arc::new(ActorNames::for_node(NODE)),
            local_load: Default::default(),
        },
        Arc::new(IngressLimits::default()),
    )
}

fn new_task(key: Option<&str>) -> NewTask {
    NewTask {
        id: TaskId::generate(),
        spec: spec("echo", key).into(),
        created_at_ms: 1,
        node: Some(NODE.into()),
    }
}

/// How the wrapped store's `create` misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// The first call writes, then fails as a timeout would; later calls work.
    LandsThenTimesOut,
    /// Every call is refused before it is sent: nothing written.
    Refused,
    /// Every call fails without writing, as if the store never answered.
    NeverAnswers,
}

/// `create` fails as told; everything else passes through.
struct Faulty {
    fault: Fault,
    creates: AtomicUsize,
}

impl Faulty {
    fn new(fault: Fault) -> Arc<Intercepted<Self>> {
        Arc::new(Intercepted::new(Self {
            fault,
            creates: AtomicUsize::new(0),
        }))
    }
}

#[async_trait]
impl Intercept for Faulty {
    async fn create(
        &self,
        inner: &MemoryStore,
        tasks: Vec<NewTask>,
    ) -> Result<Vec<Created>, StoreError> {
        let n = self.creates.fetch_add(1, Ordering::SeqCst);
        match self.fault {
            Fault::LandsThenTimesOut if n == 0 => {
                inner.create(tasks).await?;
                Err(StoreError::Backend("redis did not answer within 5s".into()))
            }
            Fault::LandsThenTimesOut => inner.create(tasks).await,
            Fault::Refused => Err(StoreError::Unreachable("Connection refused".into())),
            Fault::NeverAnswers => Err(StoreError::Backend("broken pipe".into())),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_create_that_landed_before_its_timeout_is_answered_as_new() {
    let store = Faulty::new(Fault::LandsThenTimesOut);
    let state = state(store.clone());
    let tasks = vec![new_task(Some("k1")), new_task(None)];
    let created = state.create_resolved(&tasks).await.expect("resolved");
    assert_eq!(
        created,
        vec![Created::New(tasks[0].id), Created::New(tasks[1].id)]
    );
    assert_eq!(
        store.intercept.creates.load(Ordering::SeqCst),
        2,
        "one retry"
    );
    for task in &tasks {
        let record = store.inner.get(&task.id).await.expect("get");
        assert!(record.is_some(), "stored once, under its own id");
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_create_is_store_unavailable_at_once() {
    let store = Faulty::new(Fault::Refused);
    let state = state(store.clone());
    let started = tokio::time::Instant::now();
    let answer = state.create_resolved(&[new_task(None)]).await;
    assert!(
        matches!(
            answer,
            Err(ApiError::Unavailable("store_unavailable", _, _))
        ),
        "{answer:?}"
    );
    assert_eq!(
        store.intercept.creates.load(Ordering::SeqCst),
        1,
        "nothing to resolve"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_create_never_confirmed_is_outcome_unknown_with_its_ids_after_the_bound() {
    let store = Faulty::new(Fault::NeverAnswers);
    let state = state(store.clone());
    let tasks = vec![new_task(None), new_task(None)];
    let started = tokio::time::Instant::now();
    let answer = state.create_resolved(&tasks).await;
    let Err(ApiError::OutcomeUnknown(ids)) = answer else {
        panic!("expected outcome_unknown, got {answer:?}");
    };
    let expected: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
    assert_eq!(ids, expected);
    assert!(
        store.intercept.creates.load(Ordering::SeqCst) > 2,
        "it kept retrying"
    );
    assert!(
        started.elapsed() <= RESOLVE_WITHIN,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn only_our_own_ids_answered_as_existing_become_new() {
    let ours = new_task(Some("k"));
    let dedup = new_task(Some("taken"));
    let other = TaskId::generate();
    let answer = resolved(
        &[ours.clone(), dedup],
        vec![Created::Existing(ours.id), Created::Existing(other)],
    );
    assert_eq!(
        answer,
        vec![Created::New(ours.id), Created::Existing(other)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_poll_on_the_holder_answers_soon_after_the_task_finishes_elsewhere() {
    let store = Arc::new(MemoryStore::new());
    let state = state(store.clone());
    let task = new_task(None);
    let id = task.id;
    store.create(vec![task]).await.expect("create");

    let wait = Duration::from_secs(60);
    let started = tokio::time::Instant::now();
    let poll = tokio::spawn({
        let state = state.clone();
        async move { state.wait_terminal(&id, wait, None).await }
    });
    // The poll is now waiting on this node's notifier: the task is held here.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let moved = store.claim(NODE, "peer").await.expect("claim");
    let lease = moved.first().expect("moved").lease;
    let started_there = store.start(&id, Fence::new("peer", lease), 1, 2).await;
    assert_eq!(started_there.expect("start"), Transition::Applied);
    let finish = Finish {
        status: TaskStatus::Succeeded,
        result: Some("{}".into()),
        error: None,
        node: Some("peer".into()),
        lease,
        attempts: 1,
        started_at_ms: Some(2),
        finished_at_ms: 3,
    };
    assert_eq!(
        store.finish(&id, finish).await.expect("finish"),
        Transition::Applied
    );

    let record = poll.await.expect("join").expect("record");
    assert_eq!(record.status, TaskStatus::Succeeded);
    assert!(
        started.elapsed() <= HOLDER_POLL + Duration::from_millis(10),
        "the poll slept {:?} of its {wait:?}: no local notification comes for a task \
         that finished on another node",
        started.elapsed()
    );
}

#[test]
fn validation_keeps_the_request_bodys_params_instead_of_copying_them() {
    let state = state(Arc::new(MemoryStore::new()));
    let body = r#"{"kind": "echo", "params": {"value": [1, 2, 3]}, "max_retries": 1}"#;
    let task: crate::ingress::dto::SubmitTask = serde_json::from_str(body).expect("body");
    let raw = task.params.as_ref().expect("params").get().as_ptr();
    let spec = state
        .validate(task, Some("req".into()))
        .expect("valid task");
    assert_eq!(spec.params, r#"{"value": [1, 2, 3]}"#);
    assert_eq!(
        spec.params.as_ptr(),
        raw,
        "the spec's params are the parsed body's own buffer"
    );
}

/// The code of the 422 a submission gets, or `None` when it is valid.
fn refusal(state: &IngressState, body: &str) -> Option<&'static str> {
    let task: crate::ingress::dto::SubmitTask = serde_json::from_str(body).expect("body");
    match state.validate(task, None) {
        Ok(_) => None,
        Err(ApiError::Unprocessable(code, _)) => Some(code),
        Err(other) => panic!("not a 422: {other:?}"),
    }
}

#[test]
fn a_kind_this_node_lacks_is_left_to_placement_in_a_cluster_only() {
    let alone = state(Arc::new(MemoryStore::new()));
    let info = NodeInfo {
        node_id: NODE.into(),
        generation: 1,
        cluster_address: "127.0.0.1:1".into(),
        http_address: "127.0.0.1:2".into(),
        labels: vec![],
        kinds: vec![],
    };
    let clustered = state_in(Arc::new(MemoryStore::new()), Some(Arc::new(info)));
    let foreign = r#"{"kind": "word_count", "params": {"text": 3}}"#;
    assert_eq!(refusal(&alone, foreign), Some("unknown_kind"));
    // A peer may have it: its params are only checked as a JSON object (the node that
    // runs it validates them); placement says whether any node has the kind.
    assert_eq!(refusal(&clustered, foreign), None);
    assert_eq!(refusal(&clustered, r#"{"kind": "word_count"}"#), None);
    // `null` is absent params, `{}`, as for any kind.
    let null = r#"{"kind": "word_count", "params": null}"#;
    assert_eq!(refusal(&clustered, null), None);
    for not_an_object in ["[1]", "3", "\"text\"", " [{}]"] {
        let body = format!(r#"{{"kind": "word_count", "params": {not_an_object}}}"#);
        assert_eq!(
            refusal(&clustered, &body),
            Some("invalid_params"),
            "{not_an_object}"
        );
    }
    // A kind this node has is still validated here.
    let echo = r#"{"kind": "echo", "params": {}}"#;
    assert_eq!(refusal(&clustered, echo), Some("invalid_params"));
}
