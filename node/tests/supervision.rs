//! The root supervisor restarts top-level actors without losing accepted tasks.
//! In-process: the node's own `start()`, real HTTP on loopback, real actor kills.

use std::time::Duration;

use ractor::ActorRef;
use serde_json::{Value, json};
use taskmesh_actors::context::ActorNames;
use taskmesh_actors::dispatcher::DispatcherMessage;
use taskmesh_actors::store::TaskStore;
use taskmesh_actors::store::embedded::EmbeddedStore;
use taskmesh_actors::worker_pool::PoolMessage;
use taskmesh_node::config::NodeConfig;
use tokio::time::Instant;

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn submit(&self, task: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/tasks", self.base))
            .json(task)
            .send()
            .await
            .expect("post")
    }

    async fn submit_ok(&self, task: &Value) -> String {
        let r = self.submit(task).await;
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.expect("json");
        v["id"].as_str().expect("id").to_owned()
    }

    /// The task's status, long-polling up to `wait_ms` for it to finish.
    async fn status_of(&self, id: &str, wait_ms: u64) -> String {
        let v: Value = self
            .http
            .get(format!("{}/v1/tasks/{id}?wait_ms={wait_ms}", self.base))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        v["status"].as_str().unwrap_or_default().to_owned()
    }

    async fn metrics(&self) -> String {
        let r = self.http.get(format!("{}/metrics", self.base)).send();
        r.await.expect("metrics").text().await.expect("text")
    }
}

async fn start(dir: &std::path::Path) -> (taskmesh_node::NodeHandle, Client) {
    let mut config = NodeConfig::for_test(dir.to_path_buf()).expect("config");
    config.workers = 1;
    config.min_workers = 1;
    config.max_workers = 1;
    let node = taskmesh_node::start(config).await.expect("start");
    // API keys are on: send the admin key the node wrote to its data directory.
    let key = std::fs::read_to_string(dir.join("admin.key")).expect("admin.key");
    let mut auth =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.trim())).expect("header");
    auth.set_sensitive(true);
    let headers = reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, auth)]);
    let client = Client {
        http: reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client"),
        base: format!("http://{}", node.addr),
    };
    (node, client)
}

/// Polls `check` until it holds; panics after 30 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let holds = async || Ok(check().await.then_some(()));
    taskmesh_actors::testing::eventually(Duration::from_secs(30), what, holds)
        .await
        .expect("the condition holds in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_pool_is_restarted_and_its_queued_tasks_still_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, client) = start(dir.path()).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(
            client
                .submit_ok(&json!({"kind": "sleep", "params": {"ms": 30}}))
                .await,
        );
    }
    let names = ActorNames::for_node(&node.node_id);
    let pool = ActorRef::<PoolMessage>::where_is(names.pool.clone()).expect("pool");
    let old = pool.get_id();
    pool.kill();
    eventually("a new pool", || async {
        ActorRef::<PoolMessage>::where_is(names.pool.clone()).is_some_and(|p| p.get_id() != old)
    })
    .await;
    for id in &ids {
        eventually("the task to succeed", || async {
            client.status_of(id, 1000).await == "succeeded"
        })
        .await;
    }
    let metrics = client.metrics().await;
    assert!(
        metrics.contains(r#"taskmesh_actor_restarts_total{actor="worker_pool"} 1"#),
        "{metrics}"
    );
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_dispatcher_is_restarted_and_submissions_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, client) = start(dir.path()).await;
    let names = ActorNames::for_node(&node.node_id);
    let dispatcher =
        ActorRef::<DispatcherMessage>::where_is(names.dispatcher.clone()).expect("dispatcher");
    dispatcher.kill();
    let noop = json!({"kind": "noop"});
    let mut accepted = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.is_none() {
        let r = client.submit(&noop).await;
        match r.status().as_u16() {
            202 => {
                let v: Value = r.json().await.expect("json");
                accepted = Some(v["id"].as_str().expect("id").to_owned());
            }
            // While the dispatcher restarts the node answers 503, and nothing else.
            503 => assert!(r.headers().contains_key("retry-after")),
            other => panic!("unexpected status {other}"),
        }
        assert!(Instant::now() < deadline, "no 202 after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = accepted.expect("accepted");
    eventually("the task to succeed", || async {
        client.status_of(&id, 1000).await == "succeeded"
    })
    .await;
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_the_running_task_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, client) = start(dir.path()).await;
    let id = client
        .submit_ok(&json!({"kind": "sleep", "params": {"ms": 1500}}))
        .await;
    eventually("the task to start", || async {
        client.status_of(&id, 0).await == "running"
    })
    .await;
    node.shutdown().await.expect("shutdown");
    // Reopen the store: the running task finished before the node stopped.
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let id = id.parse().expect("task id");
    let record = store.get(&id).await.expect("get").expect("exists");
    assert_eq!(record.status.as_str(), "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_that_keeps_dying_makes_the_node_report_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, client) = start(dir.path()).await;
    let names = ActorNames::for_node(&node.node_id);
    let ready = || async {
        let r = client
            .http
            .get(format!("{}/health/ready", client.base))
            .send()
            .await
            .expect("ready");
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    eventually("the node is ready", || async { ready().await.0 == 200 }).await;
    // Kill each new incarnation of the dispatcher as soon as it is up, five times.
    let mut last = None;
    for _ in 0..5 {
        eventually("a new dispatcher", || async {
            ActorRef::<DispatcherMessage>::where_is(names.dispatcher.clone())
                .is_some_and(|d| Some(d.get_id()) != last)
        })
        .await;
        let d = ActorRef::<DispatcherMessage>::where_is(names.dispatcher.clone()).expect("up");
        last = Some(d.get_id());
        d.kill();
    }
    eventually("not ready: crash-looping dispatcher", || async {
        let (status, body) = ready().await;
        status == 503
            && body["checks"]["supervision"]
                .as_str()
                .is_some_and(|s| s.contains("dispatcher"))
    })
    .await;
    node.shutdown().await.expect("shutdown");
}
