//! `monte_carlo_option`: prices a European option by Monte Carlo under geometric Brownian motion.
//!
//! Params `{s0, k, r, sigma, t, paths, seed?, option?}` with `option` `"call"`
//! (the default) or `"put"` and `seed` defaulting to 0; result
//! `{"price", "std_error", "paths"}`.
//!
//! Each path draws one standard normal `Z` and sets
//! `S_T = s0 · exp((r − σ²/2)·t + σ·√t·Z)`; its payoff is `max(S_T − k, 0)`
//! for a call and `max(k − S_T, 0)` for a put. The price is `e^(−r·t)` times
//! the mean payoff and `std_error` is `e^(−r·t) · s / √paths`, with `s` the
//! sample standard deviation of the payoffs (0 for a single path, where it is
//! undefined). There is no variance reduction, so this is the plain standard
//! error of the estimate.
//!
//! Paths are simulated in chunks of [`CHUNK_PATHS`]; chunk `i` draws from
//! [`chunk_rng`]`(seed, i)` and returns its sums, which are added in chunk
//! order, so the result is bit-identical whatever the thread count. The sums
//! are of payoffs minus the payoff at `Z = 0`, a shift close to the mean that
//! keeps `Σx² − (Σx)²/n` from cancelling when the spread is small.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::chunked::{Chunk, chunk_rng, map_chunks};
use crate::{Context, KernelError, check};
use crate::{Kernel, Params};

/// The most paths one task may simulate.
const MAX_PATHS: usize = 50_000_000;

/// Paths per chunk: the unit of parallel work, RNG streams and cancellation.
const CHUNK_PATHS: usize = 16_384;

/// The `monte_carlo_option` kernel.
pub(crate) struct MonteCarloOption;

/// Call or put.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OptionKind {
    /// Pays `max(S_T − k, 0)`.
    #[default]
    Call,
    /// Pays `max(k − S_T, 0)`.
    Put,
}

/// Params of `monte_carlo_option`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OptionParams {
    /// Spot price.
    pub(crate) s0: f64,
    /// Strike.
    pub(crate) k: f64,
    /// Continuously compounded risk-free rate.
    pub(crate) r: f64,
    /// Volatility.
    pub(crate) sigma: f64,
    /// Time to expiry, in years.
    pub(crate) t: f64,
    /// Number of simulated paths.
    pub(crate) paths: usize,
    /// RNG seed.
    #[serde(default)]
    pub(crate) seed: u64,
    /// Call or put.
    #[serde(default)]
    pub(crate) option: OptionKind,
}

impl Params for OptionParams {
    fn check(&self) -> Result<(), KernelError> {
        check::positive("s0", self.s0)?;
        check::positive("k", self.k)?;
        check::finite("r", self.r)?;
        check::positive("sigma", self.sigma)?;
        check::positive("t", self.t)?;
        check::between("paths", self.paths, 1, MAX_PATHS)
    }
}

/// Result of `monte_carlo_option`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct OptionPrice {
    /// Discounted mean payoff.
    pub(crate) price: f64,
    /// Standard error of `price`.
    pub(crate) std_error: f64,
    /// Number of simulated paths.
    pub(crate) paths: usize,
}

impl Kernel for MonteCarloOption {
    const NAME: &'static str = "monte_carlo_option";
    type Params = OptionParams;
    type Output = OptionPrice;

    fn execute(&self, params: OptionParams, ctx: &Context) -> Result<OptionPrice, KernelError> {
        let price = match params.option {
            OptionKind::Call => simulate(&params, ctx, |s_t| (s_t - params.k).max(0.0)),
            OptionKind::Put => simulate(&params, ctx, |s_t| (params.k - s_t).max(0.0)),
        }?;
        if price.price.is_finite() && price.std_error.is_finite() {
            Ok(price)
        } else {
            Err(KernelError::Permanent(format!(
                "the price is not a finite number ({}); the params overflow f64",
                price.price
            )))
        }
    }
}

/// Shifted payoff sums of one chunk.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    sum: f64,
    sum_sq: f64,
}

/// Simulates `params.paths` terminal prices and prices `payoff` on them.
fn simulate(
    params: &OptionParams,
    ctx: &Context,
    payoff: impl Fn(f64) -> f64 + Sync,
) -> Result<OptionPrice, KernelError> {
    let vol = params.sigma * params.t.sqrt();
    // S_T = forward · exp(vol · Z)
    let forward = params.s0 * ((params.r - 0.5 * params.sigma * params.sigma) * params.t).exp();
    let shift = payoff(forward);

    let chunks = map_chunks(
        params.paths,
        CHUNK_PATHS,
        ctx.cancel_token(),
        |chunk: Chunk| {
            let mut rng = chunk_rng(params.seed, chunk.index);
            chunk_sums(&mut rng, chunk.range.len(), |z| {
                payoff(forward * (vol * z).exp()) - shift
            })
        },
    )?;
    let total = chunks.iter().fold(Sums::default(), |acc, c| Sums {
        sum: acc.sum + c.sum,
        sum_sq: acc.sum_sq + c.sum_sq,
    });

    let n = params.paths as f64;
    let mean = shift + total.sum / n;
    let variance = if params.paths > 1 {
        ((total.sum_sq - total.sum * total.sum / n) / (n - 1.0)).max(0.0)
    } else {
        0.0
    };
    let discount = (-params.r * params.t).exp();
    Ok(OptionPrice {
        price: discount * mean,
        std_error: discount * (variance / n).sqrt(),
        paths: params.paths,
    })
}

/// Sums `value(Z)` and its square over `len` standard normal draws from `rng`.
fn chunk_sums<R: Rng>(rng: &mut R, len: usize, value: impl Fn(f64) -> f64) -> Sums {
    let mut sums = Sums::default();
    for _ in 0..len {
        let z: f64 = StandardNormal.sample(rng);
        let x = value(z);
        sums.sum += x;
        sums.sum_sq += x * x;
    }
    sums
}

#[cfg(test)]
mod tests;
