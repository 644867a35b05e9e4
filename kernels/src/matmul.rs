//! `matmul`: multiplies two seeded random `n × n` matrices.
//!
//! Params `{"n": 1..=1024, "seed"?: u64}` (seed defaults to 0); result
//! `{"n", "trace", "checksum"}`.
//!
//! `A` then `B` are filled in row-major order from the single RNG stream
//! [`chunk_rng`]`(seed, 0)`, entries uniform in `[-1, 1)`. `C = A·B` is
//! computed in blocks of [`ROW_BLOCK`] rows in parallel, each block with
//! ndarray's `general_mat_mul`, checking the cancel flag between blocks. A
//! block's product depends only on its rows of `A` and on `B`, so `C` is the
//! same whatever the thread count. `trace` is `Σ C_ii` and `checksum` is the
//! sum of all entries of `C`.

use ndarray::linalg::general_mat_mul;
use ndarray::parallel::prelude::*;
use ndarray::{Array2, ArrayView2, Axis};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::chunked::chunk_rng;
use crate::{CancelToken, Context, KernelError, check};
use crate::{Kernel, Params};

/// The largest matrix side accepted.
const MAX_N: usize = 1024;

/// Rows of `C` per parallel block: the unit of parallel work and cancellation.
const ROW_BLOCK: usize = 64;

/// The `matmul` kernel.
pub(crate) struct Matmul;

/// Params of `matmul`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatmulParams {
    n: usize,
    #[serde(default)]
    seed: u64,
}

impl Params for MatmulParams {
    fn check(&self) -> Result<(), KernelError> {
        check::between("n", self.n, 1, MAX_N)
    }
}

/// Result of `matmul`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct MatmulOutput {
    /// Side of the matrices.
    n: usize,
    /// Sum of the diagonal of `C`.
    trace: f64,
    /// Sum of all entries of `C`.
    checksum: f64,
}

impl Kernel for Matmul {
    const NAME: &'static str = "matmul";
    type Params = MatmulParams;
    type Output = MatmulOutput;

    fn execute(&self, params: MatmulParams, ctx: &Context) -> Result<MatmulOutput, KernelError> {
        let (a, b) = random_matrices(params.n, params.seed);
        let c = multiply(a.view(), b.view(), ctx.cancel_token())?;
        Ok(summarize(&c))
    }
}

/// `A` and `B`, filled one after the other in row-major order from one RNG.
fn random_matrices(n: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = chunk_rng(seed, 0);
    let mut uniform = || 2.0 * rng.random::<f64>() - 1.0;
    let a = Array2::from_shape_simple_fn((n, n), &mut uniform);
    let b = Array2::from_shape_simple_fn((n, n), &mut uniform);
    (a, b)
}

/// `a · b`, in parallel blocks of [`ROW_BLOCK`] rows.
///
/// The caller guarantees that the inner dimensions agree.
fn multiply(
    a: ArrayView2<'_, f64>,
    b: ArrayView2<'_, f64>,
    cancel: &CancelToken,
) -> Result<Array2<f64>, KernelError> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    c.axis_chunks_iter_mut(Axis(0), ROW_BLOCK)
        .into_par_iter()
        .zip(a.axis_chunks_iter(Axis(0), ROW_BLOCK).into_par_iter())
        .try_for_each(|(mut c_rows, a_rows)| {
            if cancel.is_cancelled() {
                return Err(KernelError::Cancelled);
            }
            general_mat_mul(1.0, &a_rows, &b, 0.0, &mut c_rows);
            Ok(())
        })?;
    Ok(c)
}

/// The result for a product `c`.
fn summarize(c: &Array2<f64>) -> MatmulOutput {
    MatmulOutput {
        n: c.nrows(),
        trace: c.diag().sum(),
        checksum: c.sum(),
    }
}

#[cfg(test)]
mod tests;
