//! Test-only kinds that exercise failure handling; registered only with
//! [`RegistryOptions::test_kernels`](crate::RegistryOptions::test_kernels).
//!
//! - `panic {}` panics.
//! - `abort {}` aborts the whole process, like a segfault or an OOM kill would.
//! - `fail {"message": str, "permanent"?: bool}` fails with
//!   [`KernelError::Retryable`]`(message)`, or [`KernelError::Permanent`] if `permanent`.
//! - `flaky {"fail_attempts": u32}` fails with `Retryable("flaky attempt N")` while
//!   the attempt `N` is at most `fail_attempts`, then returns `{"attempt": N}`.
//! - `spin {"ms": u64 ≤ 60000}` burns CPU for `ms` milliseconds, checking the
//!   cancel flag as it goes and reporting its progress (`spun N ms of M`) every
//!   10 ms, and returns `{"spun_ms": ms}`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::kernel::ErasedKernel;
use crate::noop::Empty;
use crate::{Context, KernelError, check};
use crate::{Kernel, Params};

/// The test-only kernels.
pub(crate) fn kernels() -> Vec<Box<dyn ErasedKernel>> {
    vec![
        Box::new(Panic),
        Box::new(Abort),
        Box::new(Fail),
        Box::new(Flaky),
        Box::new(Spin),
    ]
}

/// The `panic` kernel.
pub(crate) struct Panic;

impl Kernel for Panic {
    const NAME: &'static str = "panic";
    type Params = Empty;
    type Output = ();

    fn execute(&self, _params: Empty, _ctx: &Context) -> Result<(), KernelError> {
        panic!("the `panic` test kernel panics by design");
    }
}

/// The `abort` kernel: takes the node down with it.
pub(crate) struct Abort;

impl Kernel for Abort {
    const NAME: &'static str = "abort";
    type Params = Empty;
    type Output = ();

    fn execute(&self, _params: Empty, _ctx: &Context) -> Result<(), KernelError> {
        std::process::abort();
    }
}

/// The `fail` kernel.
pub(crate) struct Fail;

/// Params of `fail`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailParams {
    message: String,
    #[serde(default)]
    permanent: bool,
}

impl Params for FailParams {}

impl Kernel for Fail {
    const NAME: &'static str = "fail";
    type Params = FailParams;
    type Output = ();

    fn execute(&self, params: FailParams, _ctx: &Context) -> Result<(), KernelError> {
        if params.permanent {
            Err(KernelError::Permanent(params.message))
        } else {
            Err(KernelError::Retryable(params.message))
        }
    }
}

/// The `flaky` kernel.
pub(crate) struct Flaky;

/// Params of `flaky`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlakyParams {
    fail_attempts: u32,
}

impl Params for FlakyParams {}

/// Result of `flaky`.
#[derive(Debug, Serialize)]
pub(crate) struct Attempt {
    attempt: u32,
}

impl Kernel for Flaky {
    const NAME: &'static str = "flaky";
    type Params = FlakyParams;
    type Output = Attempt;

    fn execute(&self, params: FlakyParams, ctx: &Context) -> Result<Attempt, KernelError> {
        if ctx.attempt() <= params.fail_attempts {
            return Err(KernelError::Retryable(format!(
                "flaky attempt {}",
                ctx.attempt()
            )));
        }
        Ok(Attempt {
            attempt: ctx.attempt(),
        })
    }
}

/// How often `spin` reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(10);

/// The longest spin accepted, in milliseconds.
const MAX_SPIN_MS: u64 = 60_000;

/// The `spin` kernel.
pub(crate) struct Spin;

/// Params of `spin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SpinParams {
    ms: u64,
}

impl Params for SpinParams {
    fn check(&self) -> Result<(), KernelError> {
        check::at_most("ms", self.ms, MAX_SPIN_MS)
    }
}

/// Result of `spin`.
#[derive(Debug, Serialize)]
pub(crate) struct Spun {
    spun_ms: u64,
}

impl Kernel for Spin {
    const NAME: &'static str = "spin";
    type Params = SpinParams;
    type Output = Spun;

    fn execute(&self, params: SpinParams, ctx: &Context) -> Result<Spun, KernelError> {
        let start = Instant::now();
        let total = Duration::from_millis(params.ms);
        let mut next_report = start;
        while start.elapsed() < total {
            ctx.check_cancelled()?;
            if Instant::now() >= next_report {
                let spun = start.elapsed().min(total);
                ctx.progress(
                    spun.as_secs_f64() / total.as_secs_f64(),
                    &format!("spun {} ms of {}", spun.as_millis(), params.ms),
                );
                next_report += PROGRESS_EVERY;
            }
            std::hint::spin_loop();
        }
        Ok(Spun { spun_ms: params.ms })
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::thread;

    use super::*;

    fn attempt(n: u32) -> Context {
        Context::new(n, crate::CancelToken::new())
    }

    #[test]
    fn panic_panics_with_a_clear_message() {
        let caught = catch_unwind(AssertUnwindSafe(|| Panic.run("{}", &Context::default())));
        let payload = caught.unwrap_err();
        let message = payload.downcast_ref::<&str>().unwrap();
        assert!(message.contains("panic` test kernel"), "{message}");
    }

    #[test]
    fn fail_returns_the_message() {
        assert_eq!(
            Fail.run(r#"{"message": "boom"}"#, &Context::default()),
            Err(KernelError::Retryable("boom".into()))
        );
        assert_eq!(
            Fail.run(
                r#"{"message": "no", "permanent": true}"#,
                &Context::default()
            ),
            Err(KernelError::Permanent("no".into()))
        );
    }

    #[test]
    fn flaky_fails_until_the_attempt_exceeds_fail_attempts() {
        let params = r#"{"fail_attempts": 2}"#;
        assert_eq!(
            Flaky.run(params, &attempt(1)),
            Err(KernelError::Retryable("flaky attempt 1".into()))
        );
        assert_eq!(
            Flaky.run(params, &attempt(2)),
            Err(KernelError::Retryable("flaky attempt 2".into()))
        );
        assert_eq!(
            Flaky.run(params, &attempt(3)),
            Ok(r#"{"attempt":3}"#.into())
        );
        assert_eq!(
            Flaky.run(r#"{"fail_attempts": 0}"#, &attempt(1)),
            Ok(r#"{"attempt":1}"#.into())
        );
    }

    #[test]
    fn spin_runs_for_the_duration_and_stops_when_cancelled() {
        let start = Instant::now();
        assert_eq!(
            Spin.run(r#"{"ms": 20}"#, &Context::default()),
            Ok(r#"{"spun_ms":20}"#.into())
        );
        assert!(start.elapsed() >= Duration::from_millis(20));

        let ctx = Context::default();
        let cancel = ctx.cancel_token().clone();
        let canceller = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            cancel.cancel();
        });
        let start = Instant::now();
        assert_eq!(
            Spin.run(r#"{"ms": 60000}"#, &ctx),
            Err(KernelError::Cancelled)
        );
        canceller.join().unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[derive(Default)]
    struct Reports(std::sync::Mutex<Vec<crate::Progress>>);

    impl crate::ProgressSink for Reports {
        fn report(&self, progress: crate::Progress) {
            self.0.lock().unwrap().push(progress);
        }
    }

    #[test]
    fn spin_reports_rising_progress() {
        let reports = std::sync::Arc::new(Reports::default());
        let ctx = Context::default().with_progress(reports.clone());
        assert!(Spin.run(r#"{"ms": 50}"#, &ctx).is_ok());
        let seen = reports.0.lock().unwrap();
        assert!(seen.len() >= 2, "{seen:?}");
        assert!(
            seen.windows(2).all(|w| w[0].fraction <= w[1].fraction),
            "{seen:?}"
        );
        assert!(
            seen.iter().all(|p| p.message.ends_with(" ms of 50")),
            "{seen:?}"
        );
    }

    #[test]
    fn spin_limit_is_enforced() {
        assert_eq!(
            Spin.validate(r#"{"ms": 60001}"#),
            Err(KernelError::invalid("ms", "must be at most 60000"))
        );
    }
}
