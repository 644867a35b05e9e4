//! The registry: kernel kinds → kernels.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::kernel::Kernel;
use crate::{Context, KernelError, echo, matmul, monte_carlo, noop, portfolio_var, sleep, testing};

/// Which kernels a [`Registry`] holds besides the standard ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Also register the test-only kinds `panic`, `fail`, `flaky` and `spin`.
    pub test_kernels: bool,
}

/// The kernels a node can run, by kind. Cheap to clone: clones share the table.
#[derive(Clone)]
pub struct Registry {
    kernels: Arc<BTreeMap<&'static str, Box<dyn Kernel>>>,
}

impl Registry {
    /// Builds the registry of the standard kernels, plus the test kernels if asked.
    pub fn new(options: RegistryOptions) -> Self {
        let mut kernels: Vec<Box<dyn Kernel>> = vec![
            Box::new(noop::Noop),
            Box::new(echo::Echo),
            Box::new(sleep::Sleep),
            Box::new(monte_carlo::MonteCarloOption),
            Box::new(matmul::Matmul),
            Box::new(portfolio_var::PortfolioVar),
        ];
        if options.test_kernels {
            kernels.extend(testing::kernels());
        }
        let kernels = kernels.into_iter().map(|k| (k.name(), k)).collect();
        Self {
            kernels: Arc::new(kernels),
        }
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.kernels.keys().copied().collect()
    }

    /// Whether `kind` is registered.
    pub fn contains(&self, kind: &str) -> bool {
        self.kernels.contains_key(kind)
    }

    /// Parses and validates params (JSON text) for `kind` without running anything.
    pub fn validate(&self, kind: &str, params: &str) -> Result<(), KernelError> {
        self.kernel(kind)?.validate(params)
    }

    /// Runs the kernel synchronously on the calling thread (callers put it on a blocking
    /// thread; the kernel may use rayon inside). Returns the result as JSON text.
    ///
    /// The params are validated first, exactly as [`validate`](Self::validate) does.
    pub fn run(&self, kind: &str, params: &str, ctx: &Context) -> Result<String, KernelError> {
        self.kernel(kind)?.run(params, ctx)
    }

    /// True for kernels so cheap (noop, echo) that callers may run them inline on an async thread.
    ///
    /// False for unknown kinds.
    pub fn is_trivial(&self, kind: &str) -> bool {
        self.kernels.get(kind).is_some_and(|k| k.is_trivial())
    }

    fn kernel(&self, kind: &str) -> Result<&dyn Kernel, KernelError> {
        self.kernels
            .get(kind)
            .map(Box::as_ref)
            .ok_or_else(|| KernelError::UnknownKind {
                kind: kind.to_owned(),
                known: self.kinds(),
            })
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

#[cfg(test)]
mod tests;
