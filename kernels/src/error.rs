//! The error type of every registry operation and of every kernel run.

/// Why a kernel could not be validated or run, and so what the node does next.
///
/// A kernel returns [`KernelError::retryable`] when another attempt may succeed (a
/// resource was busy, a dependency timed out), [`KernelError::permanent`] when none
/// will (the input cannot be processed), [`KernelError::invalid`] for params its
/// [`Params::check`](crate::Params::check) could not catch, and
/// [`KernelError::Cancelled`] when it stopped because [`Context::is_cancelled`](crate::Context::is_cancelled).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    /// No kernel of this kind is registered.
    #[error("unknown kernel kind `{kind}`; known kinds: {}", known.join(", "))]
    UnknownKind {
        /// The kind that was asked for.
        kind: String,
        /// The registered kinds, sorted.
        known: Vec<&'static str>,
    },
    /// Two kernels were registered under one kind.
    #[error("kind `{kind}` is registered twice (kind names are unique, built-in ones included)")]
    DuplicateKind {
        /// The kind.
        kind: String,
    },
    /// The params are not valid JSON for this kind, or a value is out of range. The task
    /// fails without a retry.
    #[error("invalid params: field `{field}`: {reason}")]
    InvalidParams {
        /// JSON path of the offending value, like `paths` or `a.b[2]`; `.` for the params as a whole.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The run was cancelled through its [`CancelToken`](crate::CancelToken).
    #[error("cancelled")]
    Cancelled,
    /// The kernel failed; another attempt may succeed, so the task is retried while it
    /// has retries left.
    #[error("kernel failed: {0}")]
    Retryable(String),
    /// The kernel failed in a way no retry can fix; the task fails at once.
    #[error("kernel failed permanently: {0}")]
    Permanent(String),
}

impl KernelError {
    /// Shorthand for [`KernelError::InvalidParams`]: `field` is a JSON path (`n`, `a.b[2]`).
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidParams {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`KernelError::Retryable`].
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable(message.into())
    }

    /// Shorthand for [`KernelError::Permanent`].
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }

    /// Whether another attempt could succeed: only for [`KernelError::Retryable`].
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_params_display_names_the_field() {
        let err = KernelError::invalid("paths", "must be at most 50000000");
        assert_eq!(
            err.to_string(),
            "invalid params: field `paths`: must be at most 50000000"
        );
    }

    #[test]
    fn unknown_kind_display_lists_the_known_kinds() {
        let err = KernelError::UnknownKind {
            kind: "nope".into(),
            known: vec!["echo", "noop"],
        };
        assert_eq!(
            err.to_string(),
            "unknown kernel kind `nope`; known kinds: echo, noop"
        );
    }

    #[test]
    fn only_retryable_errors_are_retryable() {
        assert!(KernelError::retryable("busy").is_retryable());
        for err in [
            KernelError::permanent("bad input"),
            KernelError::invalid("n", "too big"),
            KernelError::Cancelled,
        ] {
            assert!(!err.is_retryable(), "{err}");
        }
    }
}
