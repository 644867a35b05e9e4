//! What a kernel run gets besides its params: the attempt number and a cancel flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// The context of one kernel run.
#[derive(Clone, Debug)]
pub struct Context {
    /// Which attempt this is: 1 for the first attempt, 2 for the first retry, ….
    pub attempt: u32,
    /// Cancelled when the caller no longer wants the result.
    pub cancel: CancelToken,
}

impl Default for Context {
    /// The first attempt, with a fresh cancel token.
    fn default() -> Self {
        Self {
            attempt: 1,
            cancel: CancelToken::new(),
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(ctx.attempt, 1);
        assert!(!ctx.cancel.is_cancelled());
    }
}
