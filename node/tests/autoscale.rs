//! The Autoscaler grows the pool under a backlog and shrinks it back once idle.
//! In-process node, real HTTP, real timers; waits poll with deadlines.

use std::time::Duration;

use ractor::ActorRef;
use serde_json::json;
use taskmesh_actors::context::ActorNames;
use taskmesh_actors::worker_pool::PoolMessage;
use taskmesh_node::config::NodeConfig;
use tokio::time::Instant;

async fn workers(names: &ActorNames) -> usize {
    let pool = ActorRef::<PoolMessage>::where_is(names.pool.clone()).expect("pool");
    ractor::call_t!(pool, PoolMessage::GetLoad, 1000)
        .expect("load")
        .figures
        .workers
}

async fn wait_for_workers(names: &ActorNames, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = workers(names).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pool has {n} workers, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_grows_with_the_backlog_and_shrinks_when_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = NodeConfig::for_test(dir.path().to_path_buf()).expect("config");
    config.workers = 1;
    config.min_workers = 1;
    config.max_workers = 4;
    config.scale_down_after = Duration::from_secs(1);
    let node = taskmesh_node::start(config).await.expect("start");
    let names = ActorNames::for_node(&node.node_id);
    assert_eq!(workers(&names).await, 1);

    let http = reqwest::Client::new();
    // API keys are on: the admin key the node wrote to its data directory.
    let key = std::fs::read_to_string(dir.path().join("admin.key")).expect("admin.key");
    let tasks: Vec<_> = (0..8)
        .map(|_| json!({"kind": "sleep", "params": {"ms": 1500}}))
        .collect();
    let r = http
        .post(format!("http://{}/v1/tasks/batch", node.addr))
        .bearer_auth(key.trim())
        .json(&json!({ "tasks": tasks }))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);

    // Seven waiting behind one busy worker: the autoscaler grows to the ceiling...
    wait_for_workers(&names, 4).await;
    // ...and once the backlog is done and the workers idle past the cool-down, back to 1.
    wait_for_workers(&names, 1).await;
    node.shutdown().await.expect("shutdown");
}
