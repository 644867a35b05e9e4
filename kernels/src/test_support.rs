//! Helpers shared by the unit tests.

use rayon::ThreadPoolBuilder;

/// Runs `f` inside a fresh rayon pool of `threads` threads.
pub(crate) fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("build a rayon pool")
        .install(f)
}

/// Standard normal CDF, accurate to double precision (via `erfc`).
pub(crate) fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal density.
pub(crate) fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

#[test]
fn normal_cdf_matches_tabulated_values() {
    // Values from the standard normal table, to 15 digits.
    assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
    assert!((normal_cdf(1.959963984540054) - 0.975).abs() < 1e-14);
    assert!((normal_cdf(-2.326347874040841) - 0.01).abs() < 1e-14);
    assert!((normal_cdf(-8.0) - 6.220960574271785e-16).abs() < 1e-25);
}
