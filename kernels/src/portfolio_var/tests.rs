use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::kernel::ErasedKernel;
use crate::test_support::{in_pool, normal_cdf, normal_pdf};

fn params(assets: usize, scenarios: usize, confidence: f64, seed: u64) -> VarParams {
    VarParams {
        assets,
        scenarios,
        confidence,
        seed,
    }
}

fn run(p: &VarParams) -> VarOutput {
    PortfolioVar
        .execute(p.clone(), &Context::default())
        .unwrap()
}

/// Standard deviation of the portfolio loss in the model.
fn portfolio_sigma(seed: u64, assets: usize) -> f64 {
    let w = 1.0 / assets as f64;
    let sigmas = volatilities(seed, assets);
    let systematic: f64 = sigmas.iter().map(|s| w * s).sum();
    let specific: f64 = sigmas.iter().map(|s| (w * s).powi(2)).sum();
    (RHO * systematic.powi(2) + (1.0 - RHO) * specific).sqrt()
}

fn assert_relative(actual: f64, expected: f64, tolerance: f64) {
    let error = (actual / expected - 1.0).abs();
    assert!(error < tolerance, "{actual} vs {expected} ({error:.4})");
}

#[test]
fn tail_risk_of_one_to_ten() {
    let mut losses: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(
        tail_risk(&mut losses, 0.9),
        Some(TailRisk {
            var: 9.0,
            cvar: 9.5
        })
    );
    let mut shuffled = [7.0, 3.0, 10.0, 1.0, 9.0, 2.0, 8.0, 5.0, 4.0, 6.0];
    assert_eq!(
        tail_risk(&mut shuffled, 0.9),
        Some(TailRisk {
            var: 9.0,
            cvar: 9.5
        })
    );
    let mut losses: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(
        tail_risk(&mut losses, 0.99),
        Some(TailRisk {
            var: 10.0,
            cvar: 10.0
        })
    );
    let mut losses: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(
        tail_risk(&mut losses, 0.51),
        Some(TailRisk {
            var: 6.0,
            cvar: 8.0
        })
    );
}

#[test]
fn tail_risk_counts_ties_and_handles_edges() {
    let mut losses = [2.0, 3.0, 2.0, 1.0, 2.0];
    assert_eq!(
        tail_risk(&mut losses, 0.5),
        Some(TailRisk {
            var: 2.0,
            cvar: 2.25
        })
    );
    assert_eq!(
        tail_risk(&mut [-4.0], 0.99),
        Some(TailRisk {
            var: -4.0,
            cvar: -4.0
        })
    );
    assert_eq!(tail_risk(&mut [], 0.9), None);
}

#[test]
fn volatilities_lie_in_range_and_follow_the_seed() {
    let sigmas = volatilities(3, 500);
    assert!(sigmas.iter().all(|s| (0.01..0.03).contains(s)));
    assert_eq!(sigmas, volatilities(3, 500));
    assert_ne!(sigmas, volatilities(4, 500));
    // The first assets do not depend on how many there are.
    assert_eq!(volatilities(3, 10), sigmas[..10]);
}

#[test]
fn var_and_cvar_match_the_normal_model() {
    let assets = 20;
    let seed = 11;
    let sigma_p = portfolio_sigma(seed, assets);
    for (confidence, z) in [(0.95, 1.644_853_626_951_472), (0.99, 2.326_347_874_040_841)] {
        assert!((normal_cdf(z) - confidence).abs() < 1e-12);
        let out = run(&params(assets, 200_000, confidence, seed));
        assert_relative(out.var, z * sigma_p, 0.02);
        assert_relative(out.cvar, sigma_p * normal_pdf(z) / (1.0 - confidence), 0.02);
        assert!(
            out.mean_loss.abs() < 4.0 * sigma_p / 200_000f64.sqrt(),
            "{out:?}"
        );
        assert!(out.cvar >= out.var);
    }
}

#[test]
fn cvar_is_at_least_var() {
    for (assets, scenarios, confidence, seed) in [
        (1, 1, 0.9, 0),
        (1, 7, 0.51, 1),
        (3, 1000, 0.999, 2),
        (500, 300, 0.75, 3),
    ] {
        let out = run(&params(assets, scenarios, confidence, seed));
        assert!(out.cvar >= out.var, "{out:?}");
        assert!(out.var.is_finite() && out.mean_loss.is_finite());
    }
}

#[test]
fn result_is_bit_identical_across_thread_counts() {
    let run = || {
        PortfolioVar.run(
            r#"{"assets": 37, "scenarios": 20001, "confidence": 0.99, "seed": 5}"#,
            &Context::default(),
        )
    };
    let one = in_pool(1, run).unwrap();
    assert_eq!(one, in_pool(4, run).unwrap());
    assert_eq!(one, in_pool(3, run).unwrap());
}

#[test]
fn validation_names_the_field() {
    let field_of = |params: &str| match PortfolioVar.validate(params) {
        Err(KernelError::InvalidParams { field, .. }) => field,
        other => panic!("expected InvalidParams for {params}, got {other:?}"),
    };
    assert_eq!(
        PortfolioVar.validate(r#"{"assets": 500, "scenarios": 100000, "confidence": 0.99}"#),
        Ok(())
    );
    for (params, field) in [
        (
            r#"{"assets": 0, "scenarios": 10, "confidence": 0.9}"#,
            "assets",
        ),
        (
            r#"{"assets": 501, "scenarios": 10, "confidence": 0.9}"#,
            "assets",
        ),
        (
            r#"{"assets": 1, "scenarios": 0, "confidence": 0.9}"#,
            "scenarios",
        ),
        (
            r#"{"assets": 1, "scenarios": 1000001, "confidence": 0.9}"#,
            "scenarios",
        ),
        (
            r#"{"assets": 500, "scenarios": 100001, "confidence": 0.9}"#,
            "scenarios",
        ),
        (
            r#"{"assets": 1, "scenarios": 10, "confidence": 0.5}"#,
            "confidence",
        ),
        (
            r#"{"assets": 1, "scenarios": 10, "confidence": 1}"#,
            "confidence",
        ),
        (
            r#"{"assets": 1, "scenarios": 10, "confidence": 0.9, "seed": 1.5}"#,
            "seed",
        ),
        (r#"{"assets": 1, "scenarios": 10}"#, "confidence"),
        (
            r#"{"assets": 1, "scenarios": 10, "confidence": 0.9, "rho": 0.1}"#,
            "rho",
        ),
        (r#""assets""#, "."),
    ] {
        assert_eq!(field_of(params), field, "{params}");
    }
    assert_eq!(
        PortfolioVar.validate(r#"{"assets": 500, "scenarios": 100001, "confidence": 0.9}"#),
        Err(KernelError::invalid(
            "scenarios",
            "assets × scenarios must be at most 50000000"
        ))
    );
}

#[test]
fn cancellation_stops_a_long_run() {
    let ctx = Context::default();
    let cancel = ctx.cancel_token().clone();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        cancel.cancel();
    });
    let start = Instant::now();
    let out = PortfolioVar.execute(params(500, 100_000, 0.99, 0), &ctx);
    canceller.join().unwrap();
    assert_eq!(out, Err(KernelError::Cancelled));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
