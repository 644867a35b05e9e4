//! The registry: kernel kinds → kernels.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::kernel::ErasedKernel;
use crate::{
    Context, Kernel, KernelError, echo, matmul, monte_carlo, noop, portfolio_var, sleep, testing,
};

/// Which kernels a [`Registry`] holds besides the standard ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Also register the test-only kinds `panic`, `abort`, `fail`, `flaky` and `spin`.
    pub test_kernels: bool,
}

/// The kinds a node knows, by name: kernels it runs in-process, and *external* kinds,
/// whose tasks it queues for worker processes that lease them over HTTP. Cheap to clone:
/// clones share the tables.
#[derive(Clone)]
pub struct Registry {
    kernels: Arc<BTreeMap<&'static str, Box<dyn ErasedKernel>>>,
    external: Arc<BTreeSet<String>>,
}

/// Extra kinds to register next to the built-in ones: [`Registry::builder`].
#[derive(Default)]
pub struct RegistryBuilder {
    extra: Vec<Box<dyn ErasedKernel>>,
    external: Vec<String>,
}

impl RegistryBuilder {
    /// Adds `kernel` under [`Kernel::NAME`].
    pub fn kind<K: Kernel>(mut self, kernel: K) -> Self {
        self.extra.push(Box::new(kernel));
        self
    }

    /// Declares `kind` external: its tasks are run by worker processes over HTTP, and
    /// its params are checked only as a JSON object (the worker validates them).
    pub fn external(mut self, kind: impl Into<String>) -> Self {
        self.external.push(kind.into());
        self
    }

    /// The kinds added so far, in the order they were added.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.extra.iter().map(|k| k.name()).collect()
    }

    /// The registry of the built-in kinds (and the test kinds if asked) plus the added
    /// ones and the external ones. [`KernelError::DuplicateKind`] names the first kind
    /// registered twice, whether it clashes with a built-in kind, an added one or an
    /// external one.
    pub fn build(self, options: RegistryOptions) -> Result<Registry, KernelError> {
        let mut kernels: Vec<Box<dyn ErasedKernel>> = vec![
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
        kernels.extend(self.extra);
        let mut table = BTreeMap::new();
        for kernel in kernels {
            let kind = kernel.name();
            if table.insert(kind, kernel).is_some() {
                return Err(KernelError::DuplicateKind { kind: kind.into() });
            }
        }
        let mut external = BTreeSet::new();
        for kind in self.external {
            if table.contains_key(kind.as_str()) || external.contains(&kind) {
                return Err(KernelError::DuplicateKind { kind });
            }
            external.insert(kind);
        }
        Ok(Registry {
            kernels: Arc::new(table),
            external: Arc::new(external),
        })
    }
}

impl fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("kinds", &self.kinds())
            .field("external", &self.external)
            .finish()
    }
}

impl Registry {
    /// The registry of the built-in kernels, plus the test kernels if asked.
    pub fn new(options: RegistryOptions) -> Self {
        match RegistryBuilder::default().build(options) {
            Ok(registry) => registry,
            // The built-in kinds have distinct names (a unit test checks it).
            Err(e) => unreachable!("built-in kinds clash: {e}"),
        }
    }

    /// A builder for a registry with kinds of one's own besides the built-in ones.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The kinds run in-process, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.kernels.keys().copied().collect()
    }

    /// The external kinds, sorted: their tasks are run by worker processes over HTTP.
    pub fn external_kinds(&self) -> impl Iterator<Item = &str> {
        self.external.iter().map(String::as_str)
    }

    /// Whether `kind` is declared external.
    pub fn is_external(&self, kind: &str) -> bool {
        self.external.contains(kind)
    }

    /// Whether `kind` is known here, in-process or external.
    pub fn contains(&self, kind: &str) -> bool {
        self.kernels.contains_key(kind) || self.is_external(kind)
    }

    /// Parses and validates params (JSON text) for `kind` without running anything. An
    /// external kind's params are checked only as a JSON object.
    pub fn validate(&self, kind: &str, params: &str) -> Result<(), KernelError> {
        if self.is_external(kind) {
            return crate::check::json_object(params);
        }
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

    fn kernel(&self, kind: &str) -> Result<&dyn ErasedKernel, KernelError> {
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
            .field("external", &self.external)
            .finish()
    }
}

#[cfg(test)]
mod tests;
