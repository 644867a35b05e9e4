//! Every kernel at a few sizes, through `Registry::run` as a worker calls it (params
//! parsed and checked, result encoded), on the global rayon pool (one thread per core).
//!
//! `cargo bench -p taskmesh-benches --bench kernels`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use taskmesh_kernels::{Context, Registry, RegistryOptions};

fn run(c: &mut Criterion, group: &str, cases: &[(&str, u64, String)], kind: &str) {
    let registry = Registry::new(RegistryOptions::default());
    let mut g = c.benchmark_group(group);
    for (label, elements, params) in cases {
        if let Err(e) = registry.validate(kind, params) {
            panic!("bad bench params for {kind} {params}: {e}");
        }
        g.throughput(Throughput::Elements(*elements));
        g.bench_with_input(BenchmarkId::from_parameter(label), params, |b, params| {
            b.iter(|| black_box(registry.run(kind, black_box(params), &Context::default())));
        });
    }
    g.finish();
}

fn trivial(c: &mut Criterion) {
    run(c, "noop", &[("empty", 1, "{}".into())], "noop");
    let value = r#"{"value": {"order": 42, "legs": [1, 2, 3], "note": "hello"}}"#;
    run(c, "echo", &[("small", 1, value.into())], "echo");
}

fn monte_carlo(c: &mut Criterion) {
    let cases: Vec<(&str, u64, String)> = [("1e4", 10_000u64), ("1e5", 100_000), ("1e6", 1_000_000)]
        .into_iter()
        .map(|(label, paths)| {
            let params = format!(
                r#"{{"s0": 100, "k": 100, "r": 0.05, "sigma": 0.2, "t": 1, "paths": {paths}, "seed": 7}}"#
            );
            (label, paths, params)
        })
        .collect();
    run(c, "monte_carlo_option", &cases, "monte_carlo_option");
}

fn matmul(c: &mut Criterion) {
    let cases: Vec<(&str, u64, String)> = [("64", 64u64), ("256", 256), ("512", 512)]
        .into_iter()
        .map(|(label, n)| (label, n * n * n, format!(r#"{{"n": {n}, "seed": 7}}"#)))
        .collect();
    run(c, "matmul", &cases, "matmul");
}

fn portfolio_var(c: &mut Criterion) {
    let cases: Vec<(&str, u64, String)> = [
        ("50x10000", 50u64, 10_000u64),
        ("200x100000", 200, 100_000),
    ]
    .into_iter()
    .map(|(label, assets, scenarios)| {
        let params = format!(
            r#"{{"assets": {assets}, "scenarios": {scenarios}, "confidence": 0.99, "seed": 7}}"#
        );
        (label, assets * scenarios, params)
    })
    .collect();
    run(c, "portfolio_var", &cases, "portfolio_var");
}

criterion_group! {
    name = fast;
    config = Criterion::default();
    targets = trivial
}

criterion_group! {
    name = heavy;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(8));
    targets = monte_carlo, matmul, portfolio_var
}

criterion_main!(fast, heavy);
