//! The taskmesh task model and the pure compute kernels that run tasks.
//!
//! [`task`] is the model every other crate speaks: [`task::TaskId`], [`task::TaskSpec`],
//! [`task::TaskStatus`] and [`task::Priority`]. The HTTP API, the stores and the
//! node-to-node protocol carry these types; this crate owns them.
//!
//! A task names a kernel *kind* and carries its parameters as JSON text. The
//! [`Registry`] maps kinds to kernels: it validates parameters without running
//! anything ([`Registry::validate`]) and runs a kernel synchronously on the
//! calling thread ([`Registry::run`]), returning the result as JSON text.
//!
//! # Writing a kind of your own
//! The public contract is the one the built-in kinds are written in: implement
//! [`Kernel`] (typed [`Params`] with a [`Params::check`], a `Serialize` output), return
//! a [`KernelError`] that says whether a retry can help, and use the [`Context`] for the
//! attempt number, the cancel flag and progress. Register it with
//! [`Registry::builder`] (or `taskmesh_node::Node::kind`, which runs the whole node
//! with it). [`Kernel`] has a complete example; `docs/extending.md` walks through it.
//!
//! This crate has no async runtime. Callers move [`Registry::run`] off their
//! async threads (only [`Registry::is_trivial`] kernels may run inline); the
//! heavy kernels fan out over the rayon pool they are called from. Long
//! kernels poll the [`CancelToken`] in [`Context`] between chunks of work and
//! stop with [`KernelError::Cancelled`].
//!
//! Randomised kernels are deterministic: for a given seed the result is
//! bit-identical whatever the rayon thread count, because the work is split
//! into fixed-size chunks, each drawing from its own RNG stream, and the
//! chunk results are combined in chunk order.
//!
//! ```
//! use taskmesh_kernels::{Context, KernelError, Registry, RegistryOptions};
//!
//! let registry = Registry::new(RegistryOptions::default());
//! registry.validate("matmul", r#"{"n": 64, "seed": 7}"#)?;
//! let echoed = registry.run("echo", r#"{"value": [1, 2]}"#, &Context::default())?;
//! assert_eq!(echoed, r#"{"value":[1,2]}"#);
//!
//! let err = registry.validate("matmul", r#"{"n": 4096}"#).unwrap_err();
//! assert_eq!(err.to_string(), "invalid params: field `n`: must be at most 1024");
//! # Ok::<(), KernelError>(())
//! ```
//!
//! # Kinds
//! | kind | params | result |
//! |---|---|---|
//! | `noop` | `{}` or `null` | `null` |
//! | `echo` | `{value}` | `{value}` |
//! | `sleep` | `{ms ≤ 600000}` | `{slept_ms}` |
//! | `monte_carlo_option` | `{s0, k, r, sigma, t, paths, seed?, option?}` | `{price, std_error, paths}` |
//! | `matmul` | `{n ≤ 1024, seed?}` | `{n, trace, checksum}` |
//! | `portfolio_var` | `{assets, scenarios, confidence, seed?}` | `{var, cvar, mean_loss}` |
//!
//! Each kernel's module documents its params, limits and model. Params are a
//! JSON object (`noop` also takes `null`); unknown fields are rejected, and
//! every error names the offending field as a JSON path.
//!
//! With [`RegistryOptions::test_kernels`] the registry also holds `panic`,
//! `abort`, `fail`, `flaky` and `spin`, which exist to exercise failure handling.
//!
//! # Layout
//! - [`task`]: the task model (id, spec, status, priority) and its serialized forms.
//! - `context`: [`CancelToken`], [`Context`] and [`Progress`], what a run gets besides
//!   its params.
//! - `error`: [`KernelError`].
//! - `registry`: [`Registry`], [`RegistryBuilder`] and [`RegistryOptions`].
//! - `kernel`: the public [`Kernel`] and [`Params`] traits, and the object-safe form
//!   the registry stores, which parses params with serde and checks their ranges.
//! - [`check`]: range checks for [`Params::check`]; each names the field it rejects.
//! - `chunked`: deterministic chunked parallelism with cancellation, and the
//!   per-chunk RNG.
//! - one module per kernel: `noop`, `echo`, `sleep`, `monte_carlo`, `matmul`,
//!   `portfolio_var`, and `testing` for the test-only kinds.

pub mod check;
mod chunked;
mod context;
mod echo;
mod error;
mod kernel;
mod matmul;
mod monte_carlo;
mod noop;
mod portfolio_var;
mod registry;
mod sleep;
pub mod task;
#[cfg(test)]
mod test_support;
mod testing;

pub use context::{CancelToken, Context, Progress, ProgressSink};
pub use error::KernelError;
pub use kernel::{Kernel, Params};
pub use registry::{Registry, RegistryBuilder, RegistryOptions};
