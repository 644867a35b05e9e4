use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::kernel::ErasedKernel;
use crate::test_support::{in_pool, normal_cdf};

/// Black–Scholes price of a European option.
fn black_scholes(s0: f64, k: f64, r: f64, sigma: f64, t: f64, option: OptionKind) -> f64 {
    let sqrt_t = t.sqrt();
    let d1 = ((s0 / k).ln() + (r + 0.5 * sigma * sigma) * t) / (sigma * sqrt_t);
    let d2 = d1 - sigma * sqrt_t;
    let discounted_k = k * (-r * t).exp();
    match option {
        OptionKind::Call => s0 * normal_cdf(d1) - discounted_k * normal_cdf(d2),
        OptionKind::Put => discounted_k * normal_cdf(-d2) - s0 * normal_cdf(-d1),
    }
}

fn params(paths: usize, seed: u64, option: OptionKind) -> OptionParams {
    OptionParams {
        s0: 100.0,
        k: 100.0,
        r: 0.05,
        sigma: 0.2,
        t: 1.0,
        paths,
        seed,
        option,
    }
}

fn price(params: &OptionParams) -> OptionPrice {
    MonteCarloOption
        .execute(params.clone(), &Context::default())
        .unwrap()
}

fn field_of(params: &str) -> String {
    match MonteCarloOption.validate(params) {
        Err(KernelError::InvalidParams { field, .. }) => field,
        other => panic!("expected InvalidParams for {params}, got {other:?}"),
    }
}

const VALID: &str = r#"{"s0": 100, "k": 100, "r": 0.05, "sigma": 0.2, "t": 1, "paths": 1000}"#;

#[test]
fn black_scholes_matches_reference_values() {
    let call = black_scholes(100.0, 100.0, 0.05, 0.2, 1.0, OptionKind::Call);
    let put = black_scholes(100.0, 100.0, 0.05, 0.2, 1.0, OptionKind::Put);
    assert!((call - 10.450_583_572_185_565).abs() < 1e-9, "{call}");
    assert!((put - 5.573_526_022_256_971).abs() < 1e-9, "{put}");
}

#[test]
fn call_is_within_three_std_errors_of_black_scholes() {
    let mc = price(&params(400_000, 1, OptionKind::Call));
    let exact = black_scholes(100.0, 100.0, 0.05, 0.2, 1.0, OptionKind::Call);
    assert!(
        (mc.price - exact).abs() < 3.0 * mc.std_error,
        "{mc:?} vs {exact}"
    );
    // The payoff's standard deviation is about 14.7, so the error is about 14.7/√n.
    assert!(
        (mc.std_error - 14.7 / 400_000f64.sqrt()).abs() < 0.002,
        "{mc:?}"
    );
}

#[test]
fn put_is_within_three_std_errors_of_black_scholes() {
    let mc = price(&params(400_000, 2, OptionKind::Put));
    let exact = black_scholes(100.0, 100.0, 0.05, 0.2, 1.0, OptionKind::Put);
    assert!(
        (mc.price - exact).abs() < 3.0 * mc.std_error,
        "{mc:?} vs {exact}"
    );

    let mut p = params(400_000, 4, OptionKind::Put);
    p.k = 95.0;
    p.sigma = 0.3;
    p.t = 0.5;
    let mc = price(&p);
    let exact = black_scholes(100.0, 95.0, 0.05, 0.3, 0.5, OptionKind::Put);
    assert!(
        (mc.price - exact).abs() < 3.0 * mc.std_error,
        "{mc:?} vs {exact}"
    );
}

#[test]
fn put_call_parity_holds() {
    // With the same seed both options see the same paths, so C − P is
    // e^(−rt)·(mean(S_T) − k), an estimate of s0 − k·e^(−rt).
    let call = price(&params(200_000, 3, OptionKind::Call));
    let put = price(&params(200_000, 3, OptionKind::Put));
    let parity = 100.0 - 100.0 * (-0.05f64).exp();
    let diff = call.price - put.price;
    assert!(
        (diff - parity).abs() < 3.0 * (call.std_error + put.std_error),
        "C − P = {diff}, expected {parity}"
    );
}

#[test]
fn result_is_bit_identical_across_thread_counts() {
    let run = || {
        MonteCarloOption.run(
        r#"{"s0": 100, "k": 105, "r": 0.01, "sigma": 0.25, "t": 2, "paths": 200001, "seed": 42}"#,
        &Context::default(),
    )
    };
    let one = in_pool(1, run).unwrap();
    let four = in_pool(4, run).unwrap();
    assert_eq!(one, four);
    assert_eq!(one, in_pool(3, run).unwrap());
}

#[test]
fn seeds_give_different_estimates() {
    let a = price(&params(10_000, 1, OptionKind::Call));
    let b = price(&params(10_000, 2, OptionKind::Call));
    assert_ne!(a.price, b.price);
    assert_eq!(a, price(&params(10_000, 1, OptionKind::Call)));
}

#[test]
fn partial_last_chunk_and_single_path_are_counted() {
    let mc = price(&params(CHUNK_PATHS + 1, 0, OptionKind::Call));
    assert_eq!(mc.paths, CHUNK_PATHS + 1);
    let single = price(&params(1, 0, OptionKind::Call));
    assert_eq!(single.paths, 1);
    assert_eq!(single.std_error, 0.0);
    assert!(single.price >= 0.0);
}

#[test]
fn tiny_spread_does_not_lose_the_variance() {
    // Deep in the money with almost no volatility: the payoff is ~50 with a
    // spread of ~1e-6, where naive Σx² − (Σx)²/n would cancel to noise.
    let mut p = params(100_000, 5, OptionKind::Call);
    p.k = 50.0;
    p.sigma = 1e-8;
    let mc = price(&p);
    let exact = black_scholes(100.0, 50.0, 0.05, 1e-8, 1.0, OptionKind::Call);
    assert!((mc.price - exact).abs() < 1e-9, "{mc:?} vs {exact}");
    let expected_se = (-0.05f64).exp() * 100.0 * 0.05f64.exp() * 1e-8 / 100_000f64.sqrt();
    assert!((mc.std_error / expected_se - 1.0).abs() < 0.05, "{mc:?}");
}

#[test]
fn defaults_are_call_and_seed_zero() {
    let text = MonteCarloOption.run(VALID, &Context::default()).unwrap();
    let explicit = MonteCarloOption
        .run(
            r#"{"s0": 100, "k": 100, "r": 0.05, "sigma": 0.2, "t": 1, "paths": 1000, "seed": 0, "option": "call"}"#,
            &Context::default(),
        )
        .unwrap();
    assert_eq!(text, explicit);
}

#[test]
fn validation_names_the_field() {
    assert_eq!(MonteCarloOption.validate(VALID), Ok(()));
    let with = |field: &str, value: &str| {
        let mut v: serde_json::Value = serde_json::from_str(VALID).unwrap();
        v[field] = serde_json::from_str(value).unwrap();
        v.to_string()
    };
    for (field, bad) in [
        ("s0", "0"),
        ("s0", "-1"),
        ("k", "0"),
        ("sigma", "-0.2"),
        ("t", "0"),
        ("paths", "0"),
        ("paths", "50000001"),
        ("paths", "1.5"),
        ("seed", "-1"),
        ("option", "\"straddle\""),
        ("r", "\"x\""),
    ] {
        assert_eq!(field_of(&with(field, bad)), field, "{field} = {bad}");
    }
    assert_eq!(
        MonteCarloOption.validate(&with("paths", "50000001")),
        Err(KernelError::invalid("paths", "must be at most 50000000"))
    );
    assert_eq!(field_of(r#"{"s0": 100}"#), "k");
    assert_eq!(field_of(&with("strike", "1")), "strike");
    assert_eq!(field_of("[1, 2]"), ".");
    assert_eq!(field_of("1e400"), ".");
    assert_eq!(field_of(&VALID.replace("0.05", "1e400")), "r");
}

#[test]
fn overflow_is_a_failure_not_a_panic() {
    let mut p = params(10, 0, OptionKind::Call);
    p.s0 = 1e300;
    p.r = 700.0;
    assert!(matches!(
        MonteCarloOption.execute(p, &Context::default()),
        Err(KernelError::Permanent(_))
    ));
}

#[test]
fn cancellation_stops_a_long_run() {
    let ctx = Context::default();
    ctx.cancel_token().cancel();
    assert_eq!(
        MonteCarloOption.execute(params(1000, 0, OptionKind::Call), &ctx),
        Err(KernelError::Cancelled)
    );

    let ctx = Context::default();
    let cancel = ctx.cancel_token().clone();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        cancel.cancel();
    });
    let start = Instant::now();
    let out = MonteCarloOption.execute(params(50_000_000, 0, OptionKind::Call), &ctx);
    canceller.join().unwrap();
    assert_eq!(out, Err(KernelError::Cancelled));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

/// The task `docs/api.md` shows under `GET /v1/tasks/{id}`: its `params` and `result`
/// lines, as printed there.
fn documented_example() -> (String, serde_json::Value) {
    let api = include_str!("../../../docs/api.md");
    let example = api
        .split("### `GET /v1/tasks/{id}`")
        .nth(1)
        .expect("docs/api.md has the GET example");
    let field = |name: &str| {
        let prefix = format!("\"{name}\": ");
        example
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
            .map(|v| v.trim_end_matches(',').to_owned())
            .unwrap_or_else(|| panic!("no {name} line in the GET example of docs/api.md"))
    };
    let result = serde_json::from_str(&field("result")).expect("the result is JSON");
    (field("params"), result)
}

#[test]
fn the_seed_7_price_in_the_api_docs_is_what_seed_7_gives() {
    let (params, documented) = documented_example();
    assert!(params.contains("\"seed\": 7"), "{params}");
    let computed = MonteCarloOption
        .run(&params, &Context::default())
        .expect("the documented params are valid");
    let computed: serde_json::Value = serde_json::from_str(&computed).expect("JSON");
    assert_eq!(
        computed, documented,
        "docs/api.md must show the result seed 7 gives"
    );
}
