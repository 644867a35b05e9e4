//! The task store's write paths: create (single, batches of 100 and 1000, and 64
//! concurrent single creates that group commit batches into shared transactions),
//! finish (single and 64 concurrent), and a read.
//!
//! Every write is durable when it returns, so these figures are bound by the disk's fsync
//! latency. The embedded store lives under the target directory (`CARGO_TARGET_TMPDIR`),
//! on the same disk as the build, never on a tmpfs. The Redis store runs against a
//! `redis-server` the bench starts on loopback with `appendonly yes` and
//! `appendfsync always` (every acknowledged write fsynced, like the embedded store; the
//! shipped `compose/redis.conf` uses `everysec`, which is faster and can lose up to 1 s).
//!
//! `cargo bench -p taskmesh-benches --bench store`

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use taskmesh_actors::store::embedded::EmbeddedStore;
use taskmesh_actors::store::redis::RedisStore;
use taskmesh_actors::store::redis::testing::RedisServer;
use taskmesh_actors::store::{Created, TaskStore};
use taskmesh_actors::task::{Finish, NewTask};
use taskmesh_kernels::task::{Priority, TaskId, TaskSpec, TaskStatus};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Concurrent writers in the group-commit benches (the load generator's connections).
const WRITERS: usize = 64;

/// What keeps a store usable while it is benchmarked (a temp dir, a redis-server).
type Guard = Box<dyn Any>;

/// A backend under test: its name and a way to open a fresh, empty store.
type Backend = (&'static str, fn(&Runtime) -> (Guard, Arc<dyn TaskStore>));

fn open_embedded(_rt: &Runtime) -> (Guard, Arc<dyn TaskStore>) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
    (Box::new(dir), Arc::new(store))
}

fn open_redis(rt: &Runtime) -> (Guard, Arc<dyn TaskStore>) {
    let server =
        RedisServer::start_durable().expect("start redis-server (apt-get install redis-server)");
    let store = rt
        .block_on(RedisStore::connect(&server.url()))
        .expect("connect to redis-server");
    (Box::new(server), Arc::new(store))
}

/// The stores every bench below runs against.
const BACKENDS: &[Backend] = &[
    ("embedded", open_embedded),
    ("redis_aof_always", open_redis),
];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn task() -> NewTask {
    NewTask {
        id: TaskId::generate(),
        spec: TaskSpec {
            kind: "noop".into(),
            params: "{}".into(),
            priority: Priority::Normal,
            timeout_ms: None,
            max_retries: 3,
            idempotency_key: None,
            class: None,
            request_id: Some("2c5f9085-e42d-4bef-8274-9600029866f6".into()),
            submitted_by: None,
        }
        .into(),
        created_at_ms: 1_700_000_000_000,
        node: None,
    }
}

fn succeeded() -> Finish {
    Finish {
        status: TaskStatus::Succeeded,
        result: Some("null".into()),
        error: None,
        node: Some("bench".into()),
        lease: 0,
        attempts: 1,
        started_at_ms: Some(1_700_000_000_001),
        finished_at_ms: 1_700_000_000_002,
    }
}

/// A fresh, empty store of `backend`.
fn fresh(backend: &Backend, rt: &Runtime) -> (Guard, Arc<dyn TaskStore>) {
    (backend.1)(rt)
}

/// Creates `n` tasks (in batches of 1000, untimed) and returns their ids.
async fn seed(store: &dyn TaskStore, n: u64) -> Vec<TaskId> {
    let mut ids = Vec::new();
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        let created = store
            .create((0..k).map(|_| task()).collect())
            .await
            .expect("seed");
        ids.extend(created.iter().map(|c| *c.id()));
        left -= k;
    }
    ids
}

fn create(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("store_create");
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    for backend in BACKENDS {
        let (_guard, store) = fresh(backend, &rt);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new(backend.0, "single"), |b| {
            b.to_async(&rt).iter(|| store.create(vec![task()]))
        });
        for size in [100u64, 1000] {
            g.throughput(Throughput::Elements(size));
            g.bench_function(BenchmarkId::new(backend.0, format!("batch_{size}")), |b| {
                b.to_async(&rt)
                    .iter(|| store.create((0..size).map(|_| task()).collect()))
            });
        }
        g.throughput(Throughput::Elements(WRITERS as u64));
        let id = BenchmarkId::new(backend.0, format!("{WRITERS}_concurrent_single"));
        g.bench_function(id, |b| {
            b.to_async(&rt).iter(|| async {
                let mut writers = JoinSet::new();
                for _ in 0..WRITERS {
                    let store = Arc::clone(&store);
                    writers.spawn(async move { store.create(vec![task()]).await });
                }
                while let Some(done) = writers.join_next().await {
                    let created = done.expect("writer").expect("create");
                    assert!(matches!(created.as_slice(), [Created::New(_)]));
                }
            })
        });
    }
    g.finish();
}

fn finish(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("store_finish");
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    for backend in BACKENDS {
        let (_guard, store) = fresh(backend, &rt);
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new(backend.0, "single"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = Arc::clone(&store);
                async move {
                    let ids = seed(store.as_ref(), iters).await;
                    let start = Instant::now();
                    for id in &ids {
                        store.finish(id, succeeded()).await.expect("finish");
                    }
                    start.elapsed()
                }
            })
        });
        g.throughput(Throughput::Elements(WRITERS as u64));
        let id = BenchmarkId::new(backend.0, format!("{WRITERS}_concurrent_single"));
        g.bench_function(id, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let store = Arc::clone(&store);
                async move {
                    let ids = seed(store.as_ref(), iters * WRITERS as u64).await;
                    let start = Instant::now();
                    for group in ids.chunks(WRITERS) {
                        let mut writers = JoinSet::new();
                        for id in group {
                            let (store, id) = (Arc::clone(&store), *id);
                            writers.spawn(async move { store.finish(&id, succeeded()).await });
                        }
                        while let Some(done) = writers.join_next().await {
                            done.expect("writer").expect("finish");
                        }
                    }
                    start.elapsed()
                }
            })
        });
    }
    g.finish();
}

fn get(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("store_get");
    for backend in BACKENDS {
        let (_guard, store) = fresh(backend, &rt);
        let ids = rt.block_on(seed(store.as_ref(), 10_000));
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new(backend.0, "existing_of_10k"), |b| {
            let mut i = 0;
            b.to_async(&rt).iter(|| {
                i = (i + 7919) % ids.len();
                store.get(&ids[i])
            })
        });
    }
    g.finish();
}

criterion_group!(benches, create, finish, get);
criterion_main!(benches);
