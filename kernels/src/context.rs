//! What a kernel run gets besides its params: the attempt number, a cancel flag and a
//! way to report progress.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::KernelError;

/// A shared flag that asks a running kernel to stop.
///
/// Clones share the flag: cancel one and every clone reports cancelled. Long
/// kernels poll it between chunks of work and return
/// [`KernelError::Cancelled`](crate::KernelError::Cancelled).
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Creates a token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder of this token to stop. Idempotent.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`cancel`](Self::cancel) has been called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// How far a running task has come, as reported through [`Context::progress`] and shown
/// by `GET /v1/tasks/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// The share of the work done, in `[0, 1]`.
    pub fraction: f64,
    /// What the task is doing, at most [`Progress::MAX_MESSAGE_BYTES`] bytes.
    pub message: String,
}

/// `fraction` is always finite ([`Progress::new`] drops non-finite values), so equality
/// is reflexive.
impl Eq for Progress {}

impl Progress {
    /// The longest message kept, in bytes; longer ones are cut at a character boundary.
    pub const MAX_MESSAGE_BYTES: usize = 256;

    /// `fraction` clamped to `[0, 1]` and `message` cut to [`Progress::MAX_MESSAGE_BYTES`];
    /// `None` when `fraction` is not a finite number.
    pub fn new(fraction: f64, message: &str) -> Option<Self> {
        if !fraction.is_finite() {
            return None;
        }
        let mut end = message.len().min(Self::MAX_MESSAGE_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        Some(Self {
            fraction: fraction.clamp(0.0, 1.0),
            message: message[..end].to_owned(),
        })
    }
}

/// Where [`Context::progress`] sends its reports. The node's sink keeps only the latest
/// report and writes it to the store in the background, so `report` never blocks.
pub trait ProgressSink: Send + Sync {
    /// Takes one report. Must return at once: it is called on the kernel's thread.
    fn report(&self, progress: Progress);
}

/// The context of one kernel run: the attempt number, the cancel flag and progress.
#[derive(Clone)]
pub struct Context {
    attempt: u32,
    cancel: CancelToken,
    progress: Option<Arc<dyn ProgressSink>>,
}

impl Context {
    /// Attempt number `attempt` (1-based) with `cancel` as its flag and no progress sink.
    pub fn new(attempt: u32, cancel: CancelToken) -> Self {
        Self {
            attempt,
            cancel,
            progress: None,
        }
    }

    /// The same context, sending [`Context::progress`] reports to `sink`.
    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }

    /// Which attempt this is: 1 for the first attempt, 2 for the first retry, ….
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The cancel flag: raised when the client cancels the task, when its timeout
    /// passes, or when the node no longer holds it.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// Whether the run should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// `Err(KernelError::Cancelled)` once the run should stop, for use with `?`.
    pub fn check_cancelled(&self) -> Result<(), KernelError> {
        if self.is_cancelled() {
            Err(KernelError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Reports progress: `fraction` of the work done (clamped to `[0, 1]`; a NaN or
    /// infinite value is ignored) and what is happening. Cheap and non-blocking: call it
    /// as often as is natural. The node stores the latest report per task at most every
    /// 250 ms; a report can be lost only if a newer one replaces it.
    pub fn progress(&self, fraction: f64, message: &str) {
        if let (Some(sink), Some(progress)) = (&self.progress, Progress::new(fraction, message)) {
            sink.report(progress);
        }
    }
}

impl Default for Context {
    /// The first attempt, with a fresh cancel token and progress going nowhere.
    fn default() -> Self {
        Self::new(1, CancelToken::new())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("attempt", &self.attempt)
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let token = CancelToken::new();
        let clone = token.clone();
        assert!(!clone.is_cancelled());
        token.cancel();
        assert!(clone.is_cancelled());
    }

    #[test]
    fn default_context_is_the_first_attempt() {
        let ctx = Context::default();
        assert_eq!(ctx.attempt(), 1);
        assert!(!ctx.is_cancelled());
        assert_eq!(ctx.check_cancelled(), Ok(()));
        ctx.cancel_token().cancel();
        assert_eq!(ctx.check_cancelled(), Err(KernelError::Cancelled));
    }

    #[derive(Default)]
    struct Collect(Mutex<Vec<Progress>>);

    impl ProgressSink for Collect {
        fn report(&self, progress: Progress) {
            self.0.lock().unwrap().push(progress);
        }
    }

    #[test]
    fn progress_is_clamped_cut_and_non_finite_dropped() {
        let sink = Arc::new(Collect::default());
        let ctx = Context::new(2, CancelToken::new()).with_progress(sink.clone());
        ctx.progress(0.5, "half way");
        ctx.progress(1.5, "over");
        ctx.progress(-1.0, "under");
        ctx.progress(f64::NAN, "dropped");
        ctx.progress(0.9, &"é".repeat(200));
        let seen = sink.0.lock().unwrap();
        let fractions: Vec<f64> = seen.iter().map(|p| p.fraction).collect();
        assert_eq!(fractions, [0.5, 1.0, 0.0, 0.9]);
        assert_eq!(seen[0].message, "half way");
        assert_eq!(seen[3].message.len(), Progress::MAX_MESSAGE_BYTES);
        assert!(seen[3].message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn progress_without_a_sink_is_a_no_op() {
        Context::default().progress(0.5, "nobody listens");
    }
}
