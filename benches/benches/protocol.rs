//! Encode and decode of what crosses a boundary: `TaskSpec` (the wire type between nodes)
//! as MessagePack with field names (`rmp_serde::to_vec_named`, the node-to-node form) and
//! as JSON (the HTTP edge and the Redis store), and the stored `TaskRecord` as the
//! embedded store lays it out (named MessagePack).
//!
//! `cargo bench -p taskmesh-benches --bench protocol`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Serialize;
use serde::de::DeserializeOwned;
use taskmesh_actors::task::{NewTask, TaskRecord};
use taskmesh_kernels::task::{Priority, TaskId, TaskSpec, TaskStatus};

fn spec(kind: &str, params: &str) -> TaskSpec {
    TaskSpec {
        kind: kind.into(),
        params: params.into(),
        priority: Priority::Normal,
        timeout_ms: Some(60_000),
        max_retries: 3,
        idempotency_key: Some("order-42".into()),
        class: None,
        request_id: Some("2c5f9085-e42d-4bef-8274-9600029866f6".into()),
        submitted_by: None,
    }
}

fn finished_record() -> TaskRecord {
    let params = r#"{"s0":100,"k":100,"r":0.05,"sigma":0.2,"t":1,"paths":1000000,"seed":7}"#;
    let mut record = TaskRecord::queued(NewTask {
        id: TaskId::generate(),
        spec: spec("monte_carlo_option", params).into(),
        created_at_ms: 1_700_000_000_000,
        node: None,
    });
    record.status = TaskStatus::Succeeded;
    record.attempts = 1;
    record.result = Some(r#"{"price":10.4567,"std_error":0.0147,"paths":1000000}"#.into());
    record.node = Some("vm-d78c9c".into());
    record.started_at_ms = Some(1_700_000_000_002);
    record.finished_at_ms = Some(1_700_000_000_027);
    record
}

/// Benches encode and decode of `value` in both formats.
fn both_formats<T>(c: &mut Criterion, group: &str, cases: &[(&str, T)])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    for (label, value) in cases {
        let packed = rmp_serde::to_vec_named(value).expect("encodes");
        let json = serde_json::to_vec(value).expect("encodes");
        let unpacked: T = rmp_serde::from_slice(&packed).expect("round-trips");
        assert_eq!(&unpacked, value, "MessagePack round trip");
        g.bench_with_input(BenchmarkId::new("msgpack_encode", label), value, |b, v| {
            b.iter(|| rmp_serde::to_vec_named(black_box(v)))
        });
        g.bench_with_input(
            BenchmarkId::new("msgpack_decode", label),
            &packed,
            |b, p| b.iter(|| rmp_serde::from_slice::<T>(black_box(p))),
        );
        g.bench_with_input(BenchmarkId::new("json_encode", label), value, |b, v| {
            b.iter(|| serde_json::to_vec(black_box(v)))
        });
        g.bench_with_input(BenchmarkId::new("json_decode", label), &json, |b, j| {
            b.iter(|| serde_json::from_slice::<T>(black_box(j)))
        });
    }
    g.finish();
}

fn task_spec(c: &mut Criterion) {
    let mc = r#"{"s0":100,"k":100,"r":0.05,"sigma":0.2,"t":1,"paths":1000000,"seed":7}"#;
    let cases = [
        ("noop", spec("noop", "{}")),
        ("monte_carlo", spec("monte_carlo_option", mc)),
    ];
    both_formats(c, "task_spec", &cases);
}

fn task_record(c: &mut Criterion) {
    both_formats(c, "task_record", &[("succeeded", finished_record())]);
}

criterion_group!(benches, task_spec, task_record);
criterion_main!(benches);
