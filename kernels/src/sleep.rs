//! `sleep`: holds the thread for `ms` milliseconds without burning CPU.
//!
//! Params `{"ms": u64 ≤ 600000}`; result `{"slept_ms": ms}`. Sleeps in slices
//! of at most 10 ms and checks the cancel flag between slices. It reports no progress:
//! benchmarks and chaos scenarios use it as a stand-in for work, and progress writes
//! would add store load they do not measure (the test kind `spin` reports).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Context, KernelError, check};
use crate::{Kernel, Params};

/// The longest sleep accepted, in milliseconds (10 minutes).
const MAX_MS: u64 = 600_000;

/// The longest stretch between two looks at the cancel flag.
const SLICE: Duration = Duration::from_millis(10);

/// The `sleep` kernel.
pub(crate) struct Sleep;

/// Params of `sleep`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SleepParams {
    ms: u64,
}

impl Params for SleepParams {
    fn check(&self) -> Result<(), KernelError> {
        check::at_most("ms", self.ms, MAX_MS)
    }
}

/// Result of `sleep`.
#[derive(Debug, Serialize)]
pub(crate) struct Slept {
    slept_ms: u64,
}

impl Kernel for Sleep {
    const NAME: &'static str = "sleep";
    type Params = SleepParams;
    type Output = Slept;

    fn execute(&self, params: SleepParams, ctx: &Context) -> Result<Slept, KernelError> {
        sleep_cancellable(Duration::from_millis(params.ms), ctx)?;
        Ok(Slept {
            slept_ms: params.ms,
        })
    }
}

/// Sleeps for `duration` in slices of at most [`SLICE`], stopping early if `cancel` is set.
fn sleep_cancellable(duration: Duration, ctx: &Context) -> Result<(), KernelError> {
    let deadline = Instant::now() + duration;
    loop {
        ctx.check_cancelled()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(SLICE));
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::kernel::ErasedKernel;

    #[test]
    fn sleeps_at_least_the_duration() {
        let start = Instant::now();
        let out = Sleep.run(r#"{"ms": 30}"#, &Context::default());
        assert_eq!(out, Ok(r#"{"slept_ms":30}"#.into()));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn stops_promptly_when_cancelled() {
        let ctx = Context::default();
        let cancel = ctx.cancel_token().clone();
        let start = Instant::now();
        let canceller = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            cancel.cancel();
        });
        let out = Sleep.run(r#"{"ms": 600000}"#, &ctx);
        canceller.join().unwrap();
        assert_eq!(out, Err(KernelError::Cancelled));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn limit_is_enforced() {
        assert!(Sleep.validate(r#"{"ms": 600000}"#).is_ok());
        assert_eq!(
            Sleep.validate(r#"{"ms": 600001}"#),
            Err(KernelError::invalid("ms", "must be at most 600000"))
        );
        assert!(matches!(
            Sleep.validate(r#"{"ms": -1}"#),
            Err(KernelError::InvalidParams { field, .. }) if field == "ms"
        ));
    }
}
