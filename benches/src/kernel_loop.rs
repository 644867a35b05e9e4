//! The kernel in a loop, in this process, with no node: the baseline that "tasks/s
//! through a node" is compared with. `threads` OS threads call
//! [`Registry::run`](taskmesh_kernels::Registry::run) back to back; the kernels fan out
//! over the global rayon pool as they do inside a node.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use taskmesh_kernels::{Context, Registry, RegistryOptions};

use crate::stats::{Latency, Percentiles, per_second};

/// Kernel-loop figures.
#[derive(Debug)]
pub struct KernelLoopOutcome {
    /// Kernel runs recorded.
    pub runs: u64,
    /// Runs that returned an error.
    pub errors: u64,
    /// Calling threads.
    pub threads: usize,
    /// Wall time of the recorded runs.
    pub elapsed: Duration,
    /// Time of each run.
    pub latency: Latency,
}

/// The JSON form of [`KernelLoopOutcome`].
#[derive(Debug, Serialize)]
pub struct KernelLoopReport {
    /// Kernel runs recorded.
    pub runs: u64,
    /// Runs that returned an error.
    pub errors: u64,
    /// Calling threads.
    pub threads: usize,
    /// Wall time.
    pub elapsed_s: f64,
    /// Runs per second.
    pub runs_per_s: f64,
    /// Time of each run.
    pub latency_us: Percentiles,
}

impl From<&KernelLoopOutcome> for KernelLoopReport {
    fn from(o: &KernelLoopOutcome) -> Self {
        Self {
            runs: o.runs,
            errors: o.errors,
            threads: o.threads,
            elapsed_s: o.elapsed.as_secs_f64(),
            runs_per_s: per_second(o.runs, o.elapsed),
            latency_us: o.latency.summary(),
        }
    }
}

/// Validates the params, runs `warmup` unrecorded runs, then `runs` recorded ones over
/// `threads` threads. Blocking: call it off the async runtime.
pub fn run(
    kind: &str,
    params: &str,
    runs: u64,
    warmup: u64,
    threads: usize,
) -> anyhow::Result<KernelLoopOutcome> {
    let registry = Registry::new(RegistryOptions::default());
    registry.validate(kind, params)?;
    for _ in 0..warmup {
        registry.run(kind, params, &Context::default())?;
    }
    let next = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let latency = Mutex::new(Latency::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut mine = Latency::new();
                while next.fetch_add(1, Ordering::Relaxed) < runs {
                    let t0 = Instant::now();
                    if registry.run(kind, params, &Context::default()).is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    mine.record(t0.elapsed());
                }
                if let Ok(mut all) = latency.lock() {
                    all.merge(&mine);
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let latency = latency
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a kernel thread panicked"))?;
    Ok(KernelLoopOutcome {
        runs,
        errors: errors.into_inner(),
        threads: threads.max(1),
        elapsed,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_the_kernel_the_given_number_of_times() {
        let o = run("echo", r#"{"value": 1}"#, 50, 2, 3).expect("runs");
        assert_eq!((o.runs, o.errors, o.latency.count()), (50, 0, 50));
        assert!(
            run("nope", "{}", 1, 0, 1).is_err(),
            "unknown kinds are refused"
        );
    }
}
