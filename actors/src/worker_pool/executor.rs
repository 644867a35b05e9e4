//! Runs one attempt of a kernel off the async runtime and turns what happened into an
//! [`AttemptOutcome`], or hands back the payload of a kernel's panic.
//!
//! Trivial kernels (noop, echo) run inline. Everything else runs on tokio's blocking
//! pool, so a sleeping kernel holds a thread but not a runtime worker, and CPU kernels
//! fan out onto rayon's pool from there. A timeout raises the attempt's cancel flag and
//! frees the worker at once; the kernel notices the flag at its next check.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use taskmesh_kernels::task::TaskSpec;
use taskmesh_kernels::{CancelToken, Context, KernelError, ProgressSink, Registry};

/// How one attempt ended.
#[derive(Debug)]
pub enum AttemptOutcome {
    /// The kernel returned a result (JSON text).
    Succeeded(String),
    /// The kernel returned a retryable error: the task is retried while it has retries
    /// left.
    Failed(String),
    /// The kernel returned a permanent error: the task fails at once, without a retry.
    FailedPermanently(String),
    /// The params were rejected by the kernel; retrying cannot help.
    Invalid(String),
    /// The cancel flag was raised by a client.
    Cancelled,
    /// The attempt ran past the task's timeout.
    TimedOut(Duration),
}

/// The payload of a kernel's panic: the worker re-raises it so supervision sees it.
pub type Panic = Box<dyn Any + Send>;

/// Runs the task's kernel with its params for attempt number `attempt`; `Err` when the
/// kernel panicked. The blocking pool gets the shared spec, not a copy of the params.
/// The kernel's progress reports go to `progress` (not for trivial kernels, which run
/// inline and finish at once).
pub async fn execute(
    kernels: &Registry,
    spec: &Arc<TaskSpec>,
    attempt: u32,
    cancel: CancelToken,
    timeout: Option<Duration>,
    progress: Option<Arc<dyn ProgressSink>>,
) -> Result<AttemptOutcome, Panic> {
    let ctx = Context::new(attempt, cancel.clone());
    if kernels.is_trivial(&spec.kind) {
        // Kernels are stateless, so a panic cannot leave the registry half-updated.
        return std::panic::catch_unwind(AssertUnwindSafe(|| {
            kernels.run(&spec.kind, &spec.params, &ctx)
        }))
        .map(classify);
    }
    let ctx = match progress {
        Some(sink) => ctx.with_progress(sink),
        None => ctx,
    };
    let (kernels, spec) = (kernels.clone(), Arc::clone(spec));
    let handle = tokio::task::spawn_blocking(move || kernels.run(&spec.kind, &spec.params, &ctx));
    let joined = match timeout {
        Some(limit) => match tokio::time::timeout(limit, handle).await {
            Ok(joined) => joined,
            Err(_) => {
                cancel.cancel();
                return Ok(AttemptOutcome::TimedOut(limit));
            }
        },
        None => handle.await,
    };
    match joined {
        Ok(result) => Ok(classify(result)),
        Err(e) if e.is_panic() => Err(e.into_panic()),
        Err(e) => Ok(AttemptOutcome::Failed(format!("attempt aborted: {e}"))),
    }
}

fn classify(result: Result<String, KernelError>) -> AttemptOutcome {
    match result {
        Ok(json) => AttemptOutcome::Succeeded(json),
        Err(KernelError::Cancelled) => AttemptOutcome::Cancelled,
        Err(e @ (KernelError::InvalidParams { .. } | KernelError::UnknownKind { .. })) => {
            AttemptOutcome::Invalid(e.to_string())
        }
        Err(e @ KernelError::DuplicateKind { .. }) => AttemptOutcome::Invalid(e.to_string()),
        Err(KernelError::Retryable(msg)) => AttemptOutcome::Failed(msg),
        Err(KernelError::Permanent(msg)) => AttemptOutcome::FailedPermanently(msg),
    }
}

/// The text of a panic payload, for logs and the task's error.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}
