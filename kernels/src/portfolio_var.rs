//! `portfolio_var`: one-day value at risk of a portfolio, by Monte Carlo in a one-factor model.
//!
//! Params `{"assets": 1..=500, "scenarios": 1..=1000000, "confidence": (0.5, 1),
//! "seed"?: u64}` with `assets × scenarios ≤ 50000000` (seed defaults to 0);
//! result `{"var", "cvar", "mean_loss"}`, as fractions of the portfolio value.
//!
//! # Model
//! - The portfolio holds `m = assets` assets with equal weights `w_i = 1/m`.
//! - Asset `i` has daily volatility `σ_i = 0.01 + 0.02·U_i`, `U_i` uniform in
//!   `[0, 1)`, drawn in asset order from RNG stream [`VOLATILITY_STREAM`] of the
//!   seed: `σ_i` is uniform in `[0.01, 0.03)`.
//! - Returns follow a one-factor model with correlation `ρ = 0.3`: in each
//!   scenario `r_i = σ_i·(√ρ·Z + √(1−ρ)·ε_i)`, with the market factor `Z` and
//!   the idiosyncratic `ε_i` independent standard normals.
//! - The loss is `L = −Σ w_i·r_i`, so `L` is normal with mean 0 and standard
//!   deviation `σ_p = √(ρ·(Σ w_i σ_i)² + (1−ρ)·Σ w_i² σ_i²)`.
//!
//! `var` is the empirical `confidence` quantile of the simulated losses (the
//! loss at index `⌈c·n⌉ − 1` in increasing order), `cvar` the mean of the
//! losses at or above `var`, and `mean_loss` the mean of all losses.
//!
//! Scenarios are simulated in chunks of [`CHUNK_SCENARIOS`]; chunk `i` draws
//! `Z, ε_1, …, ε_m` for each of its scenarios, in that order, from
//! [`chunk_rng`]`(seed, i)`, so the losses are the same whatever the thread
//! count.

use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::chunked::{chunk_rng, for_each_chunk_mut};
use crate::{Context, KernelError, check};
use crate::{Kernel, Params};

/// The most assets accepted.
const MAX_ASSETS: usize = 500;
/// The most scenarios accepted.
const MAX_SCENARIOS: usize = 1_000_000;
/// The most normal draws (`assets × scenarios`, ignoring the factor) accepted.
const MAX_DRAWS: usize = 50_000_000;

/// Correlation of every pair of assets.
const RHO: f64 = 0.3;
/// Lowest daily volatility of an asset.
const MIN_VOLATILITY: f64 = 0.01;
/// Width of the range the daily volatilities are drawn from.
const VOLATILITY_RANGE: f64 = 0.02;
/// RNG stream of the volatilities; the scenario chunks use streams `0, 1, …`.
const VOLATILITY_STREAM: u64 = u64::MAX;
/// Scenarios per chunk: the unit of parallel work, RNG streams and cancellation.
const CHUNK_SCENARIOS: usize = 1024;

/// The `portfolio_var` kernel.
pub(crate) struct PortfolioVar;

/// Params of `portfolio_var`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VarParams {
    /// Number of assets.
    pub(crate) assets: usize,
    /// Number of simulated scenarios.
    pub(crate) scenarios: usize,
    /// Confidence level of the VaR, strictly between 0.5 and 1.
    pub(crate) confidence: f64,
    /// RNG seed.
    #[serde(default)]
    pub(crate) seed: u64,
}

impl Params for VarParams {
    fn check(&self) -> Result<(), KernelError> {
        check::between("assets", self.assets, 1, MAX_ASSETS)?;
        check::between("scenarios", self.scenarios, 1, MAX_SCENARIOS)?;
        check::strictly_between("confidence", self.confidence, 0.5, 1.0)?;
        if self.assets.saturating_mul(self.scenarios) > MAX_DRAWS {
            return Err(KernelError::invalid(
                "scenarios",
                format!("assets × scenarios must be at most {MAX_DRAWS}"),
            ));
        }
        Ok(())
    }
}

/// Result of `portfolio_var`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct VarOutput {
    /// Value at risk: the `confidence` quantile of the loss.
    pub(crate) var: f64,
    /// Conditional value at risk: the mean loss at or above `var`.
    pub(crate) cvar: f64,
    /// Mean loss over all scenarios.
    pub(crate) mean_loss: f64,
}

impl Kernel for PortfolioVar {
    const NAME: &'static str = "portfolio_var";
    type Params = VarParams;
    type Output = VarOutput;

    fn execute(&self, params: VarParams, ctx: &Context) -> Result<VarOutput, KernelError> {
        let mut losses = simulate_losses(&params, ctx)?;
        let mean_loss = losses.iter().sum::<f64>() / losses.len() as f64;
        let tail = tail_risk(&mut losses, params.confidence)
            .ok_or_else(|| KernelError::permanent("no scenarios were simulated"))?;
        Ok(VarOutput {
            var: tail.var,
            cvar: tail.cvar,
            mean_loss,
        })
    }
}

/// The daily volatilities `σ_i` of the assets.
pub(crate) fn volatilities(seed: u64, assets: usize) -> Vec<f64> {
    let mut rng = chunk_rng(seed, VOLATILITY_STREAM);
    (0..assets)
        .map(|_| MIN_VOLATILITY + VOLATILITY_RANGE * rng.random::<f64>())
        .collect()
}

/// The portfolio loss of each scenario.
fn simulate_losses(params: &VarParams, ctx: &Context) -> Result<Vec<f64>, KernelError> {
    let weight = 1.0 / params.assets as f64;
    // Weighted volatilities w_i·σ_i, and the factor loading √ρ·Σ w_i·σ_i.
    let exposures: Vec<f64> = volatilities(params.seed, params.assets)
        .iter()
        .map(|sigma| weight * sigma)
        .collect();
    let factor_loading = RHO.sqrt() * exposures.iter().sum::<f64>();
    let idiosyncratic = (1.0 - RHO).sqrt();

    let mut losses = vec![0.0; params.scenarios];
    for_each_chunk_mut(
        &mut losses,
        CHUNK_SCENARIOS,
        ctx.cancel_token(),
        |index, chunk| {
            let mut rng = chunk_rng(params.seed, index);
            for loss in chunk {
                let z: f64 = StandardNormal.sample(&mut rng);
                let specific = weighted_normals(&mut rng, &exposures);
                *loss = -(factor_loading * z + idiosyncratic * specific);
            }
        },
    )?;
    Ok(losses)
}

/// `Σ exposures_i · ε_i` with fresh standard normals `ε_i`.
fn weighted_normals<R: Rng>(rng: &mut R, exposures: &[f64]) -> f64 {
    exposures
        .iter()
        .map(|exposure| {
            let eps: f64 = StandardNormal.sample(rng);
            exposure * eps
        })
        .sum()
}

/// Value at risk and conditional value at risk of a sample of losses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TailRisk {
    /// The loss at index `⌈c·n⌉ − 1` in increasing order.
    pub(crate) var: f64,
    /// The mean of the losses at or above `var`.
    pub(crate) cvar: f64,
}

/// The empirical VaR and CVaR of `losses` at `confidence`; `None` if there are no losses.
///
/// Reorders `losses` (a selection, not a full sort: O(n)). Ties at the VaR
/// all count towards the CVaR.
pub(crate) fn tail_risk(losses: &mut [f64], confidence: f64) -> Option<TailRisk> {
    let n = losses.len();
    let last = n.checked_sub(1)?;
    // ⌈c·n⌉ − 1, kept in 0..n whatever `confidence` is.
    let index = ((confidence * n as f64).ceil() as usize)
        .saturating_sub(1)
        .min(last);
    let (_, var, _) = losses.select_nth_unstable_by(index, f64::total_cmp);
    let var = *var;
    let (sum, count) = losses
        .iter()
        .filter(|&&loss| loss >= var)
        .fold((0.0, 0usize), |(sum, count), loss| (sum + loss, count + 1));
    Some(TailRisk {
        var,
        cvar: sum / count as f64,
    })
}

#[cfg(test)]
mod tests;
