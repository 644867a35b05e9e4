//! Tests of what only the Redis store has: the key schema and owner index, pipelined
//! batching, reconnecting, script reloads, bounded purges and scans. The shared rules are
//! checked by the conformance suite. Every test runs against a real `redis-server`.

mod holding;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncTypedCommands as _;
use taskmesh_kernels::task::{TaskId, TaskStatus};
use tokio::task::JoinSet;

use super::testing::RedisServer;
use super::*;
use crate::store::conformance;
use crate::store::conformance::fixtures::{succeeded, task};

fn server() -> RedisServer {
    RedisServer::start().expect("start redis-server")
}

async fn connect(server: &RedisServer, prefix: &str) -> Arc<RedisStore> {
    let store = RedisStore::connect_with_prefix(&server.url(), prefix).await;
    Arc::new(store.expect("connect"))
}

/// A plain connection for looking at the keys themselves.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).expect("client");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

/// Creates `n` tasks, one per call, from `n` concurrent tokio tasks; answers their ids.
async fn create_concurrently(store: &Arc<RedisStore>, n: usize) -> Vec<TaskId> {
    let mut callers = JoinSet::new();
    for _ in 0..n {
        let store = Arc::clone(store);
        callers.spawn(async move {
            let t = task("echo", None);
            let created = store.create(vec![t.clone()]).await.expect("create");
            assert_eq!(created, vec![Created::New(t.id)]);
            t.id
        });
    }
    callers.join_all().await
}

/// `succeeded(at)` reported by `fence.node` under the token `fence.lease`.
fn succeeded_on(fence: Fence<'_>, at: Millis) -> Finish {
    Finish {
        node: Some(fence.node.to_owned()),
        lease: fence.lease,
        ..succeeded(at)
    }
}

fn ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.id).collect()
}

/// `task` placed on `node` before it is created.
fn on(node: &str, task: NewTask) -> NewTask {
    NewTask {
        node: Some(node.to_owned()),
        ..task
    }
}

/// The members of `{prefix}owner:{node}`, sorted.
async fn owners(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    node: &str,
) -> Vec<String> {
    let set = redis.smembers(format!("{prefix}owner:{node}")).await;
    let mut members: Vec<String> = set.expect("smembers").into_iter().collect();
    members.sort();
    members
}

/// Every owner set of the store under `prefix`, sorted.
async fn owner_sets(redis: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut sets = redis.keys(format!("{prefix}owner:*")).await.expect("keys");
    sets.sort();
    sets
}

#[tokio::test]
async fn redis_store_passes_the_conformance_suite() {
    let server = server();
    let stores = AtomicUsize::new(0);
    conformance::run_all(async || {
        let n = stores.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("case{n}:");
        RedisStore::connect_with_prefix(&server.url(), &prefix)
            .await
            .expect("connect")
    })
    .await;
}

#[tokio::test]
async fn keys_follow_the_documented_schema() {
    let server = server();
    let store = connect(&server, "tm:").await;
    let t = on("a", task("echo", Some("order-7")));
    store.create(vec![t.clone()]).await.expect("create");
    let text = t.id.text();
    let id = text.as_str();
    let mut redis = raw(&server).await;
    let status = redis.hget(format!("tm:task:{id}"), "status").await;
    assert_eq!(status.expect("hget").as_deref(), Some("queued"));
    assert_eq!(owners(&mut redis, "tm:", "a").await, [id]);
    let named = redis.get("tm:idem:order-7").await.expect("get");
    assert_eq!(named.as_deref(), Some(id));
    for index in ["tm:unfinished", "tm:recent"] {
        let members = redis.zrange(index, 0, -1).await.expect("zrange");
        assert_eq!(members, [id], "{index}");
    }
    store.finish(&t.id, succeeded(77)).await.expect("finish");
    let score = redis.zscore("tm:finished", id).await.expect("zscore");
    assert_eq!(score, Some(77.0));
    let unfinished = redis.zcard("tm:unfinished").await.expect("zcard");
    assert_eq!(unfinished, 0);
    let mut all = redis.keys("*").await.expect("keys");
    all.sort();
    let expected = ["tm:finished", "tm:holders", "tm:idem:order-7", "tm:recent"];
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(
        expected.iter().all(|k| all.contains(&(*k).to_owned())),
        "{all:?}"
    );
}

#[tokio::test]
async fn owner_index_follows_start_requeue_and_finish() {
    let server = server();
    let store = connect(&server, "own:").await;
    let (t, other) = (task("echo", None), task("echo", None));
    store
        .create(vec![t.clone(), other.clone()])
        .await
        .expect("create");
    let mut redis = raw(&server).await;
    let id = t.id.to_string();
    async fn members(redis: &mut redis::aio::MultiplexedConnection, node: &str) -> Vec<String> {
        let mut m: Vec<String> = redis
            .smembers(format!("own:owner:{node}"))
            .await
            .expect("smembers")
            .into_iter()
            .collect();
        m.sort();
        m
    }

    assert_eq!(store.owned_by("a").await.expect("owned_by"), []);
    store
        .start(&t.id, Fence::new("a", 0), 1, 10)
        .await
        .expect("start");
    assert_eq!(members(&mut redis, "a").await, vec![id.clone()]);
    let owned = store.owned_by("a").await.expect("owned_by");
    assert_eq!(ids(&owned), vec![t.id]);
    assert_eq!(owned[0].status, TaskStatus::Running);

    store
        .requeue(&t.id, Fence::new("a", 0), 1, Some("retry".into()))
        .await
        .expect("requeue");
    assert_eq!(
        members(&mut redis, "a").await,
        vec![id.clone()],
        "a retry stays with its node"
    );

    let refused = store
        .start(&t.id, Fence::new("b", 0), 2, 20)
        .await
        .expect("start elsewhere");
    assert_eq!(refused, Transition::NotHolder(Some("a".into())));
    assert_eq!(members(&mut redis, "b").await, Vec::<String>::new());
    let moved = store.reassign(std::slice::from_ref(&t.id), "a", "b").await;
    assert_eq!(ids(&moved.expect("reassign")), vec![t.id]);
    assert_eq!(members(&mut redis, "a").await, Vec::<String>::new());
    assert_eq!(members(&mut redis, "b").await, vec![id.clone()]);
    // Token 2: one bump for the requeue, one for the reassign.
    let b = Fence::new("b", 2);
    assert_eq!(
        store
            .start(&t.id, b, 2, 20)
            .await
            .expect("restart elsewhere"),
        Transition::Applied
    );
    assert_eq!(members(&mut redis, "b").await, vec![id.clone()]);

    store
        .start(&other.id, Fence::new("b", 0), 1, 30)
        .await
        .expect("start other");
    let owned = store.owned_by("b").await.expect("owned_by");
    assert_eq!(ids(&owned), [t.id, other.id], "oldest first");

    assert_eq!(
        store
            .finish(&t.id, succeeded_on(b, 40))
            .await
            .expect("finish"),
        Transition::Applied
    );
    assert_eq!(members(&mut redis, "b").await, [other.id.to_string()]);
    let rejected = store
        .start(&t.id, Fence::new("c", 0), 3, 50)
        .await
        .expect("start finished");
    assert_eq!(rejected, Transition::Rejected(TaskStatus::Succeeded));
    assert_eq!(members(&mut redis, "c").await, Vec::<String>::new());
    assert_eq!(
        ids(&store.owned_by("b").await.expect("owned_by")),
        [other.id]
    );
}

#[tokio::test]
async fn a_task_created_on_a_node_is_that_nodes_to_recover_until_it_is_moved() {
    let server = server();
    let store = connect(&server, "birth:").await;
    let mut redis = raw(&server).await;
    let (placed, later) = (on("a", task("echo", None)), on("a", task("echo", None)));
    store
        .create(vec![placed.clone(), later.clone()])
        .await
        .expect("create");
    let (id, later_id) = (placed.id.to_string(), later.id.to_string());
    let mut both = vec![id.clone(), later_id.clone()];
    both.sort();
    assert_eq!(owners(&mut redis, "birth:", "a").await, both);
    let recoverable = store.recoverable("a").await.expect("recoverable");
    assert_eq!(ids(&recoverable), [placed.id, later.id]);
    assert_eq!(recoverable[0].node.as_deref(), Some("a"));
    assert_eq!(recoverable[0].status, TaskStatus::Queued);
    assert_eq!(store.recoverable("b").await.expect("recoverable"), []);

    let refused = store
        .start(&placed.id, Fence::new("b", 0), 1, 10)
        .await
        .expect("start");
    assert_eq!(refused, Transition::NotHolder(Some("a".into())));
    assert_eq!(owners(&mut redis, "birth:", "a").await, both);
    let moved = store
        .reassign(std::slice::from_ref(&placed.id), "a", "b")
        .await;
    assert_eq!(ids(&moved.expect("reassign")), vec![placed.id]);
    store
        .start(&placed.id, Fence::new("b", 1), 1, 10)
        .await
        .expect("start");
    assert_eq!(
        owners(&mut redis, "birth:", "a").await,
        vec![later_id.clone()]
    );
    assert_eq!(owners(&mut redis, "birth:", "b").await, vec![id.clone()]);
    let recoverable = store.recoverable("b").await.expect("recoverable");
    assert_eq!(ids(&recoverable), vec![placed.id]);
    assert_eq!(recoverable[0].status, TaskStatus::Running);
    assert_eq!(
        ids(&store.recoverable("a").await.expect("recoverable")),
        vec![later.id]
    );

    store
        .requeue(&placed.id, Fence::new("b", 1), 1, Some("retry".into()))
        .await
        .expect("requeue");
    assert_eq!(
        ids(&store.recoverable("b").await.expect("recoverable")),
        vec![placed.id],
        "a retry stays with the node that ran it"
    );

    let retried = Fence::new("b", 2); // the requeue bumped the token
    assert_eq!(
        store
            .finish(&placed.id, succeeded_on(retried, 20))
            .await
            .expect("finish"),
        Transition::Applied
    );
    assert_eq!(
        owners(&mut redis, "birth:", "b").await,
        Vec::<String>::new()
    );
    assert_eq!(owners(&mut redis, "birth:", "a").await, [later_id]);
    assert_eq!(store.recoverable("b").await.expect("recoverable"), []);
    let left = ids(&store.recoverable("a").await.expect("recoverable"));
    assert_eq!(left, vec![later.id], "a finish elsewhere leaves a's task");

    let cancel = conformance::fixtures::finish(TaskStatus::Cancelled, 30);
    store
        .finish(&later.id, cancel)
        .await
        .expect("cancel queued");
    assert_eq!(owner_sets(&mut redis, "birth:").await, Vec::<String>::new());
    assert_eq!(store.recoverable("a").await.expect("recoverable"), []);
}

#[tokio::test]
async fn a_task_created_without_a_node_is_in_no_owner_set() {
    let server = server();
    let store = connect(&server, "nobody:").await;
    let mut redis = raw(&server).await;
    let (unplaced, placed) = (task("echo", None), on("a", task("echo", None)));
    store
        .create(vec![unplaced.clone(), placed.clone()])
        .await
        .expect("create");
    assert_eq!(
        owner_sets(&mut redis, "nobody:").await,
        ["nobody:owner:a"],
        "only the placed task has an owner set"
    );
    assert_eq!(
        owners(&mut redis, "nobody:", "a").await,
        [placed.id.to_string()]
    );
    assert_eq!(
        ids(&store.recoverable("a").await.expect("recoverable")),
        vec![placed.id]
    );
    let unfinished = store.unfinished().await.expect("unfinished");
    assert_eq!(ids(&unfinished), [unplaced.id, placed.id]);
    assert_eq!(unfinished[0].node, None);

    store
        .start(&unplaced.id, Fence::new("b", 0), 1, 5)
        .await
        .expect("start");
    assert_eq!(
        ids(&store.recoverable("b").await.expect("recoverable")),
        [unplaced.id],
        "it joins a set when a node starts it"
    );
}

#[tokio::test]
async fn a_create_that_writes_nothing_joins_no_owner_set() {
    let server = server();
    let store = connect(&server, "dup:").await;
    let mut redis = raw(&server).await;
    let first = on("a", task("echo", Some("key")));
    store.create(vec![first.clone()]).await.expect("create");
    let same_key = on("b", task("echo", Some("key")));
    let same_id = on("c", first.clone());
    let created = store
        .create(vec![same_key, same_id])
        .await
        .expect("create again");
    assert_eq!(
        created,
        [Created::Existing(first.id), Created::Existing(first.id)]
    );
    assert_eq!(owner_sets(&mut redis, "dup:").await, ["dup:owner:a"]);
    assert_eq!(store.recoverable("b").await.expect("recoverable"), []);
    assert_eq!(store.recoverable("c").await.expect("recoverable"), []);
}

#[tokio::test]
async fn purge_leaves_no_id_in_an_owner_set() {
    let server = server();
    let store = connect(&server, "clean:").await;
    let mut redis = raw(&server).await;
    let (done, live) = (on("a", task("echo", None)), on("a", task("echo", None)));
    store
        .create(vec![done.clone(), live.clone()])
        .await
        .expect("create");
    store.finish(&done.id, succeeded(10)).await.expect("finish");
    // An entry a finish did not remove (written by hand here; by an older version of the
    // scripts in the field) must not outlive its record.
    let stale: usize = redis
        .sadd("clean:owner:a", done.id.text().as_str())
        .await
        .expect("sadd");
    assert_eq!(stale, 1);
    assert_eq!(store.purge_finished(11).await.expect("purge"), 1);
    assert_eq!(
        owners(&mut redis, "clean:", "a").await,
        [live.id.to_string()]
    );
    assert_eq!(
        ids(&store.recoverable("a").await.expect("recoverable")),
        [live.id]
    );
}

#[tokio::test]
async fn prefixes_keep_stores_apart_on_one_server() {
    let server = server();
    let (left, right) = (
        connect(&server, "left:").await,
        connect(&server, "right:").await,
    );
    let t = task("echo", Some("shared-key"));
    left.create(vec![t.clone()]).await.expect("create left");
    assert_eq!(right.get(&t.id).await.expect("get"), None);
    let again = task("echo", Some("shared-key"));
    let created = right
        .create(vec![again.clone()])
        .await
        .expect("create right");
    assert_eq!(created, vec![Created::New(again.id)]);
    assert_eq!(left.unfinished().await.expect("unfinished").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_share_pipelines() {
    const CALLERS: usize = 2_000;
    let server = server();
    let store = connect(&server, "batch:").await;
    let before = store.pipeline_stats();
    let ids = create_concurrently(&store, CALLERS).await;
    let stats = store.pipeline_stats();
    eprintln!("{CALLERS} concurrent creates: {stats:?}");
    assert_eq!(stats.ops - before.ops, CALLERS as u64);
    let pipelines = stats.pipelines - before.pipelines;
    assert!(
        pipelines < CALLERS as u64 / 4,
        "pipelines should batch: {stats:?}"
    );
    assert!(stats.largest_pipeline > 1);
    assert_eq!(stats.failed_pipelines, 0);

    let mut readers = JoinSet::new();
    for id in ids {
        let store = Arc::clone(&store);
        readers.spawn(async move { store.get(&id).await.expect("get").map(|r| r.status) });
    }
    let statuses = readers.join_all().await;
    assert!(statuses.iter().all(|s| *s == Some(TaskStatus::Queued)));
    assert!(store.pipeline_stats().pipelines - stats.pipelines < CALLERS as u64 / 4);
}

#[tokio::test]
async fn a_batch_create_of_1000_tasks_is_one_round_trip() {
    let server = server();
    let store = connect(&server, "bulk:").await;
    let key = "bulk-key";
    let mut tasks: Vec<NewTask> = (0..999).map(|_| task("echo", None)).collect();
    tasks.insert(10, task("echo", Some(key)));
    let before = store.pipeline_stats();
    let created = store.create(tasks.clone()).await.expect("create");
    let after = store.pipeline_stats();
    assert_eq!(after.pipelines - before.pipelines, 1, "{after:?}");
    assert_eq!(after.ops - before.ops, 1);
    let expected: Vec<_> = tasks.iter().map(|t| Created::New(t.id)).collect();
    assert_eq!(created, expected);
    assert_eq!(store.unfinished().await.expect("unfinished").len(), 1_000);
    let again = store
        .create(vec![task("echo", Some(key))])
        .await
        .expect("again");
    assert_eq!(again, vec![Created::Existing(tasks[10].id)]);
}

#[tokio::test]
async fn reconnects_after_redis_restarts_and_keeps_acknowledged_writes() {
    let mut server = RedisServer::start_durable().expect("start redis-server");
    let config = RedisConfig {
        prefix: "re:".into(),
        timeout: Duration::from_millis(1_500),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect_with(&server.url(), config)
        .await
        .expect("connect");
    let before = task("echo", Some("k"));
    store.create(vec![before.clone()]).await.expect("create");
    store
        .start(&before.id, Fence::new("a", 0), 1, 5)
        .await
        .expect("start");

    server.kill();
    let down = Instant::now();
    // A refused connection is `Unreachable` (nothing sent); a request cut off on the
    // way would be `Backend`.
    let down_error =
        |e: &StoreError| matches!(e, StoreError::Backend(_) | StoreError::Unreachable(_));
    let create = store.create(vec![task("echo", None)]).await;
    assert!(create.as_ref().is_err_and(down_error), "{create:?}");
    let get = store.get(&before.id).await;
    assert!(get.as_ref().is_err_and(down_error), "{get:?}");
    let ping = store.ping().await;
    assert!(ping.as_ref().is_err_and(down_error), "{ping:?}");
    let unfinished = store.unfinished().await;
    assert!(unfinished.as_ref().is_err_and(down_error), "{unfinished:?}");
    let refused = store.create(vec![task("echo", None)]).await;
    assert!(
        matches!(refused, Err(StoreError::Unreachable(_))),
        "a connection refused sends nothing: {refused:?}"
    );
    eprintln!("four calls failed in {:?} with redis down", down.elapsed());
    assert!(
        down.elapsed() < Duration::from_secs(10),
        "calls fail within the timeout, not hang: {:?}",
        down.elapsed()
    );

    server.restart().expect("restart redis-server");
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = store.get(&before.id).await.expect("get").expect("survived");
    assert_eq!(
        (record.status, record.node.as_deref()),
        (TaskStatus::Running, Some("a"))
    );
    let after = task("echo", None);
    let created = store
        .create(vec![after.clone()])
        .await
        .expect("create after");
    assert_eq!(created, vec![Created::New(after.id)]);
    let dup = store
        .create(vec![task("echo", Some("k"))])
        .await
        .expect("dup");
    assert_eq!(dup, vec![Created::Existing(before.id)]);
    assert_eq!(ids(&store.owned_by("a").await.expect("owned")), [before.id]);
    let stats = store.pipeline_stats();
    assert!(stats.failed_pipelines >= 1, "{stats:?}");
    assert_eq!(
        stats.script_loads, 1,
        "a restarted redis has no scripts: {stats:?}"
    );
}

#[tokio::test]
async fn a_hung_redis_fails_calls_within_the_timeout() {
    let server = server();
    let config = RedisConfig {
        prefix: "hung:".into(),
        timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect_with(&server.url(), config)
        .await
        .expect("connect");
    let t = task("echo", None);
    store.create(vec![t.clone()]).await.expect("create");

    server.pause().expect("pause redis-server");
    let hung = Instant::now();
    let get = store.get(&t.id).await;
    assert!(matches!(get, Err(StoreError::Backend(_))), "{get:?}");
    let list = store.unfinished().await;
    assert!(matches!(list, Err(StoreError::Backend(_))), "{list:?}");
    assert!(
        hung.elapsed() < Duration::from_secs(3),
        "{:?}",
        hung.elapsed()
    );

    server.resume().expect("resume redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = store.get(&t.id).await.expect("get").expect("record");
    assert_eq!(record.status, TaskStatus::Queued);
}

#[tokio::test]
async fn lost_scripts_are_loaded_again() {
    let server = server();
    let store = connect(&server, "flush:").await;
    let t = task("echo", None);
    store.create(vec![t.clone()]).await.expect("create");
    let mut redis = raw(&server).await;
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec_async(&mut redis)
        .await
        .expect("script flush");
    let started = store
        .start(&t.id, Fence::new("a", 0), 1, 1)
        .await
        .expect("start");
    assert_eq!(started, Transition::Applied);
    let again = task("echo", None);
    assert_eq!(
        store.create(vec![again.clone()]).await.expect("create"),
        vec![Created::New(again.id)]
    );
    let stats = store.pipeline_stats();
    assert_eq!(stats.script_loads, 1, "{stats:?}");
    assert_eq!(stats.failed_pipelines, 0);
}

#[tokio::test]
async fn a_full_redis_refuses_whole_writes_but_still_reads_and_purges() {
    let server = server();
    let store = connect(&server, "oom:").await;
    let (done, live) = (task("echo", Some("done-key")), task("echo", None));
    store
        .create(vec![done.clone(), live.clone()])
        .await
        .expect("create");
    store.finish(&done.id, succeeded(10)).await.expect("finish");
    let mut redis = raw(&server).await;
    let set_maxmemory = async |redis: &mut redis::aio::MultiplexedConnection, bytes: &str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .exec_async(redis)
            .await
            .expect("config set");
    };
    set_maxmemory(&mut redis, "1").await;

    let batch = vec![task("echo", None), task("echo", None)];
    let refused = store.create(batch.clone()).await;
    assert!(
        matches!(refused, Err(StoreError::Backend(ref e)) if e.contains("OOM")),
        "{refused:?}"
    );
    let refused = store.start(&live.id, Fence::new("a", 0), 1, 1).await;
    assert!(
        matches!(refused, Err(StoreError::Backend(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.get(&live.id).await.expect("get").map(|r| r.status),
        Some(TaskStatus::Queued)
    );
    assert_eq!(store.purge_finished(11).await.expect("purge while full"), 1);

    set_maxmemory(&mut redis, "0").await;
    for t in &batch {
        assert_eq!(
            store.get(&t.id).await.expect("get"),
            None,
            "nothing half-written"
        );
    }
    let reuse = task("echo", Some("done-key"));
    let created = store.create(vec![reuse.clone()]).await.expect("create");
    assert_eq!(created, vec![Created::New(reuse.id)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_deletes_in_bounded_batches_and_leaves_no_index_entries() {
    const TASKS_N: usize = 2 * PURGE_BATCH + 500;
    let server = server();
    let store = connect(&server, "purge:").await;
    let tasks: Vec<NewTask> = (0..TASKS_N)
        .map(|i| {
            on(
                &format!("n{}", i % 3),
                task("echo", Some(&format!("key-{i}"))),
            )
        })
        .collect();
    store.create(tasks.clone()).await.expect("create");
    let mut finishers = JoinSet::new();
    for t in &tasks {
        let (store, id) = (Arc::clone(&store), t.id);
        let done = succeeded_on(Fence::new(t.node.as_deref().expect("placed"), 0), 100);
        finishers.spawn(async move { store.finish(&id, done).await });
    }
    for done in finishers.join_all().await {
        assert_eq!(done.expect("finish"), Transition::Applied);
    }
    let before = store.pipeline_stats().pipelines;
    assert_eq!(store.purge_finished(101).await.expect("purge"), TASKS_N);
    assert!(
        store.pipeline_stats().pipelines - before >= 3,
        "one script per batch"
    );
    // The holders set outlives its nodes' tasks until `expired_holders` prunes it.
    assert_eq!(
        store.expired_holders().await.expect("expired"),
        [] as [&str; 0]
    );
    let mut redis = raw(&server).await;
    let left = redis.keys("purge:*").await.expect("keys");
    assert!(left.is_empty(), "nothing left behind: {left:?}");
}

#[tokio::test]
async fn list_scans_a_bounded_number_of_records() {
    let server = server();
    let store = connect(&server, "scan:").await;
    let rare = task("rare", None);
    store.create(vec![rare.clone()]).await.expect("create rare");
    let common: Vec<_> = (0..10_050).map(|_| task("common", None)).collect();
    for chunk in common.chunks(1_000) {
        store.create(chunk.to_vec()).await.expect("create common");
    }
    let rare_filter = |limit| ListFilter {
        kind: Some("rare".into()),
        limit,
        ..ListFilter::default()
    };
    let found = store.list(&rare_filter(1)).await.expect("list");
    assert!(
        found.is_empty(),
        "the budget of 10 000 stops before the rare task"
    );
    let found = store.list(&rare_filter(1_000)).await.expect("list");
    assert_eq!(ids(&found), [rare.id], "a budget of 50 000 reaches it");
    let newest = ListFilter {
        limit: 3,
        ..ListFilter::default()
    };
    let listed = store.list(&newest).await.expect("list");
    let expected: Vec<_> = common.iter().rev().take(3).map(|t| t.id).collect();
    assert_eq!(ids(&listed), expected);
}

#[tokio::test]
async fn readers_skip_records_that_vanished_from_under_an_index() {
    let server = server();
    let store = connect(&server, "gone:").await;
    let (kept, gone) = (task("echo", None), task("echo", None));
    store
        .create(vec![kept.clone(), gone.clone()])
        .await
        .expect("create");
    store
        .start(&gone.id, Fence::new("a", 0), 1, 1)
        .await
        .expect("start");
    let mut redis = raw(&server).await;
    redis
        .del(format!("gone:task:{}", gone.id))
        .await
        .expect("del");
    assert_eq!(
        ids(&store.unfinished().await.expect("unfinished")),
        vec![kept.id]
    );
    assert_eq!(store.owned_by("a").await.expect("owned_by"), []);
    let all = ListFilter {
        limit: 10,
        ..ListFilter::default()
    };
    assert_eq!(ids(&store.list(&all).await.expect("list")), [kept.id]);
    assert_eq!(store.get(&gone.id).await.expect("get"), None);
}

/// Throughput of single-task creates from many callers, against a throw-away server and
/// against one that fsyncs its AOF before every reply. Run it with
/// `cargo test --release -p taskmesh-actors redis_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check; run in release mode"]
async fn redis_throughput_of_concurrent_single_task_creates() {
    let server = server();
    measure_creates(&server, "no persistence").await;
    let mut redis = raw(&server).await;
    for (name, value) in [("appendonly", "yes"), ("appendfsync", "everysec")] {
        let mut set = redis::cmd("CONFIG");
        set.arg("SET").arg(name).arg(value);
        set.exec_async(&mut redis).await.expect("config set");
    }
    measure_creates(&server, "appendfsync everysec").await;
    drop(server);
    let durable = RedisServer::start_durable().expect("start redis-server");
    measure_creates(&durable, "appendfsync always").await;
}

async fn measure_creates(server: &RedisServer, label: &str) {
    const CALLERS: usize = 64;
    const CREATES: usize = 20_000;
    let store = connect(server, &format!("bench-{}:", TaskId::generate())).await;
    let elapsed =
        conformance::fixtures::concurrent_single_creates(store.clone(), CALLERS, CREATES).await;
    let stats = store.pipeline_stats();
    assert_eq!(stats.ops, CREATES as u64);
    eprintln!(
        "{label}: {CREATES} creates from {CALLERS} callers in {elapsed:?}: {:.0} creates/s, \
         {:.1} ops per round trip, {stats:?}",
        CREATES as f64 / elapsed.as_secs_f64(),
        stats.ops as f64 / stats.pipelines as f64,
    );
}

#[test]
fn errors_never_carry_the_password_of_the_url() {
    let url = "rediss://alice:s3cret@db:6380/0";
    let leaky = StoreError::Backend("auth as alice:s3cret failed".into());
    let shown = super::scrub_password(leaky, url).to_string();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("alice:***"), "{shown}");
    let plain = StoreError::Unreachable("refused".into());
    let shown = super::scrub_password(plain, "redis://127.0.0.1:6379/0").to_string();
    assert!(shown.contains("refused"), "{shown}");
}
