//! Tests of what only the embedded store has: durability across reopen, group commit,
//! closing, bounded purges and scans, and corrupt records. The shared rules are checked
//! by the conformance suite.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redb::ReadableDatabase as _;
use taskmesh_kernels::task::{TaskId, TaskStatus};
use tempfile::TempDir;
use tokio::task::JoinSet;

use super::schema::{TASKS, UNFINISHED};
use super::*;
use crate::store::conformance;
use crate::store::conformance::fixtures::{succeeded, task};

fn open(dir: &TempDir) -> Arc<EmbeddedStore> {
    Arc::new(EmbeddedStore::open(dir.path()).expect("open store"))
}

/// Creates `n` tasks, one per call, from `n` concurrent tokio tasks; answers their ids.
async fn create_concurrently(store: &Arc<EmbeddedStore>, n: usize) -> Vec<TaskId> {
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

#[tokio::test]
async fn embedded_store_passes_the_conformance_suite() {
    let dir = TempDir::new().expect("tempdir");
    let stores = AtomicUsize::new(0);
    conformance::run_all(async || {
        let n = stores.fetch_add(1, Ordering::Relaxed);
        EmbeddedStore::open(&dir.path().join(n.to_string())).expect("open store")
    })
    .await;
}

#[tokio::test]
async fn recovers_every_unfinished_task_whatever_the_node() {
    let dir = TempDir::new().expect("tempdir");
    conformance::fixtures::private_store_recovers_every_unfinished_task(&*open(&dir)).await;
}

#[tokio::test]
async fn never_names_an_expired_holder() {
    let dir = TempDir::new().expect("tempdir");
    conformance::fixtures::private_store_never_expires_a_holder(&*open(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_share_commits() {
    const CALLERS: usize = 2_000;
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let ids = create_concurrently(&store, CALLERS).await;
    assert_eq!(ids.len(), CALLERS);
    let stats = store.commit_stats();
    eprintln!("{CALLERS} concurrent creates: {stats:?}");
    assert_eq!(stats.ops, CALLERS as u64);
    assert!(
        stats.commits < CALLERS as u64 / 2,
        "group commit should batch: {stats:?}"
    );
    assert!(stats.largest_batch > 1);
    assert_eq!(stats.failed_batches, 0);
}

#[tokio::test]
async fn records_survive_drop_and_reopen() {
    let dir = TempDir::new().expect("tempdir");
    let (queued, running, done) = (task("a", Some("k")), task("b", None), task("c", None));
    {
        let store = open(&dir);
        let all = vec![queued.clone(), running.clone(), done.clone()];
        store.create(all).await.expect("create");
        store
            .start(&running.id, Fence::new("n1", 0), 1, 5)
            .await
            .expect("start");
        store.finish(&done.id, succeeded(9)).await.expect("finish");
    }
    let store = open(&dir);
    let status = async |id: &TaskId| store.get(id).await.expect("get").map(|r| r.status);
    assert_eq!(status(&queued.id).await, Some(TaskStatus::Queued));
    assert_eq!(status(&running.id).await, Some(TaskStatus::Running));
    let finished = store.get(&done.id).await.expect("get").expect("record");
    assert_eq!(
        (finished.result.as_deref(), finished.finished_at_ms),
        (Some("42"), Some(9))
    );
    let unfinished = store.unfinished().await.expect("unfinished");
    let ids: Vec<_> = unfinished.into_iter().map(|r| r.id).collect();
    assert_eq!(ids, [queued.id, running.id]);
    let again = store
        .create(vec![task("a", Some("k"))])
        .await
        .expect("create");
    assert_eq!(again, vec![Created::Existing(queued.id)]);
    assert_eq!(store.purge_finished(10).await.expect("purge"), 1);
}

#[tokio::test]
async fn close_refuses_writes_but_keeps_reads() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let t = task("echo", None);
    store.create(vec![t.clone()]).await.expect("create");
    store.ping().await.expect("ping before close");
    store.close();
    let refused = store.create(vec![task("echo", None)]).await;
    assert!(matches!(refused, Err(StoreError::Closed)), "{refused:?}");
    let refused = store.start(&t.id, Fence::new("n", 0), 1, 1).await;
    assert!(matches!(refused, Err(StoreError::Closed)), "{refused:?}");
    assert!(matches!(store.ping().await, Err(StoreError::Closed)));
    assert!(store.get(&t.id).await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_under_load_answers_every_caller_and_keeps_acknowledged_writes() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let mut callers = JoinSet::new();
    for _ in 0..300 {
        let store = Arc::clone(&store);
        callers.spawn(async move {
            let t = task("echo", None);
            (store.create(vec![t.clone()]).await, t.id)
        });
    }
    tokio::task::yield_now().await;
    store.close();
    let answers = tokio::time::timeout(Duration::from_secs(30), callers.join_all())
        .await
        .expect("every caller is answered");
    let mut acknowledged = Vec::new();
    for (answer, id) in answers {
        match answer {
            Ok(created) => {
                assert_eq!(created, vec![Created::New(id)]);
                acknowledged.push(id);
            }
            Err(StoreError::Closed) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    drop(store);
    let store = open(&dir);
    for id in &acknowledged {
        assert!(store.get(id).await.expect("get").is_some(), "lost {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_deletes_in_bounded_batches() {
    const TASKS_N: usize = 2 * PURGE_BATCH + 500;
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let ids = create_concurrently(&store, TASKS_N).await;
    let mut finishers = JoinSet::new();
    for id in ids {
        let store = Arc::clone(&store);
        finishers.spawn(async move { store.finish(&id, succeeded(100)).await });
    }
    for done in finishers.join_all().await {
        assert_eq!(done.expect("finish"), Transition::Applied);
    }
    let before = store.commit_stats().commits;
    assert_eq!(store.purge_finished(101).await.expect("purge"), TASKS_N);
    assert!(
        store.commit_stats().commits - before >= 3,
        "one commit per batch"
    );
    let all = ListFilter {
        limit: 10,
        ..ListFilter::default()
    };
    assert!(store.list(&all).await.expect("list").is_empty());
}

#[tokio::test]
async fn list_scans_a_bounded_number_of_records() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let rare = task("rare", None);
    store.create(vec![rare.clone()]).await.expect("create rare");
    let common: Vec<_> = (0..10_050).map(|_| task("common", None)).collect();
    store.create(common).await.expect("create common");
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
    assert_eq!(found.len(), 1, "a budget of 50 000 reaches it");
    assert_eq!(found[0].id, rare.id);
}

#[tokio::test]
async fn a_corrupt_record_fails_only_its_own_operations() {
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let bad = TaskId::generate();
    {
        let txn = store.db.begin_write().expect("begin");
        {
            let mut tasks = txn.open_table(TASKS).expect("tasks");
            tasks
                .insert(bad.text().as_str(), b"\xc1".as_slice())
                .expect("insert");
            let mut unfinished = txn.open_table(UNFINISHED).expect("unfinished");
            unfinished.insert(bad.text().as_str(), ()).expect("insert");
        }
        txn.commit().expect("commit");
    }
    fn corrupt<T>(answer: &Result<T, StoreError>) -> bool {
        matches!(answer, Err(StoreError::Corrupt { .. }))
    }
    assert!(corrupt(&store.get(&bad).await));
    assert!(corrupt(&store.start(&bad, Fence::new("n", 0), 1, 1).await));
    assert!(corrupt(&store.unfinished().await));
    let good = task("echo", None);
    let created = store.create(vec![good.clone()]).await.expect("create");
    assert_eq!(created, vec![Created::New(good.id)]);
    let started = store
        .start(&good.id, Fence::new("n", 0), 1, 1)
        .await
        .expect("start");
    assert_eq!(started, Transition::Applied);
    assert_eq!(store.commit_stats().failed_batches, 0);
    let _ = store.db.begin_read().expect("reads still work");
}

/// Throughput of single-task creates from many callers. Run it with
/// `cargo test --release -p taskmesh-actors throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check; run in release mode"]
async fn throughput_of_concurrent_single_task_creates() {
    const CALLERS: usize = 64;
    const CREATES: usize = 20_000;
    let dir = TempDir::new().expect("tempdir");
    let store = open(&dir);
    let elapsed =
        conformance::fixtures::concurrent_single_creates(store.clone(), CALLERS, CREATES).await;
    let stats = store.commit_stats();
    assert_eq!(stats.ops, CREATES as u64);
    eprintln!(
        "{CREATES} creates from {CALLERS} callers in {elapsed:?}: {:.0} creates/s, {stats:?}",
        CREATES as f64 / elapsed.as_secs_f64()
    );
}
