//! The pure decision functions: placement (`dispatcher::policy::place_all`), retry
//! backoff (`worker_pool::retry::Backoff::delay`), autoscaling
//! (`autoscaler::policy::decide`) and the priority queues (`worker_pool::queue`).
//!
//! There is no failure detector yet (membership arrives with the cluster); its bench
//! belongs here when `actors/src/health/detector.rs` lands.
//!
//! `cargo bench -p taskmesh-benches --bench policy`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use taskmesh_actors::autoscaler::policy::{AutoscaleMemory, AutoscalePolicy, PoolSample, decide};
use taskmesh_actors::dispatcher::policy::{Need, PoolView, place_all};
use taskmesh_actors::worker_pool::queue::PriorityQueues;
use taskmesh_actors::worker_pool::retry::Backoff;
use taskmesh_kernels::task::Priority;

/// A task of the kind every pool runs, without a class.
const NOOP: Need<'static> = Need {
    kind: "noop",
    class: None,
};

/// `n` pools with uneven loads; the first is local.
fn pools(n: usize) -> Vec<PoolView> {
    (0..n)
        .map(|i| PoolView {
            node: format!("node-{i}"),
            local: i == 0,
            labels: if i % 2 == 0 {
                vec!["heavy".into()]
            } else {
                vec![]
            },
            kinds: Arc::from(["noop".to_owned()]),
            unserved: Arc::from([]),
            capacity: 100_000,
            queued: (i * 37) % 100,
            admitting: 0,
            running: i % 4,
            workers: 4,
            available: true,
        })
        .collect()
}

fn placement(c: &mut Criterion) {
    let mut g = c.benchmark_group("place_all");
    for n in [1, 3, 16] {
        let pools = pools(n);
        for batch in [1usize, 1000] {
            let classes = vec![NOOP; batch];
            g.throughput(Throughput::Elements(batch as u64));
            let id = BenchmarkId::new(format!("{n}_pools"), format!("batch_{batch}"));
            g.bench_with_input(id, &classes, |b, classes| {
                b.iter(|| place_all(black_box(&pools), black_box(classes)))
            });
        }
        let heavy = vec![
            Need {
                class: Some("heavy"),
                ..NOOP
            };
            1000
        ];
        g.throughput(Throughput::Elements(1000));
        let id = BenchmarkId::new(format!("{n}_pools"), "batch_1000_class");
        g.bench_with_input(id, &heavy, |b, classes| {
            b.iter(|| place_all(black_box(&pools), black_box(classes)))
        });
    }
    g.finish();
}

fn backoff(c: &mut Criterion) {
    let backoff = Backoff::default();
    c.bench_function("backoff_delay", |b| {
        let mut attempt = 0u32;
        b.iter(|| {
            attempt = attempt % 12 + 1;
            backoff.delay(black_box(attempt), black_box(0.37))
        })
    });
}

fn autoscale(c: &mut Criterion) {
    let policy = AutoscalePolicy {
        min_workers: 2,
        max_workers: 16,
        scale_down_after: Duration::from_secs(30),
    };
    let samples = [
        PoolSample {
            workers: 4,
            busy: 4,
            queued: 20,
        },
        PoolSample {
            workers: 8,
            busy: 1,
            queued: 0,
        },
        PoolSample {
            workers: 4,
            busy: 2,
            queued: 0,
        },
    ];
    let now = Instant::now();
    c.bench_function("autoscale_decide", |b| {
        let mut memory = AutoscaleMemory::default();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % samples.len();
            decide(&policy, black_box(samples[i]), &mut memory, now)
        })
    });
}

fn queues(c: &mut Criterion) {
    let mut g = c.benchmark_group("priority_queues");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("push_pop_1000_mixed", |b| {
        let mut q = PriorityQueues::default();
        b.iter(|| {
            for i in 0..1000u64 {
                q.push(Priority::ALL[(i % 3) as usize], i);
            }
            while let Some(item) = q.pop() {
                black_box(item);
            }
        })
    });
    g.bench_function("push_pop_1000_on_100k_backlog", |b| {
        let mut q = PriorityQueues::default();
        for i in 0..100_000u64 {
            q.push(Priority::Normal, i);
        }
        b.iter(|| {
            for i in 0..1000u64 {
                q.push(Priority::ALL[(i % 3) as usize], i);
            }
            for _ in 0..1000 {
                black_box(q.pop());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, placement, backoff, autoscale, queues);
criterion_main!(benches);
