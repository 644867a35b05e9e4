//! The error type of every registry operation.

/// Why a kernel could not be validated or run.
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
    /// The params are not valid JSON for this kind, or a value is out of range.
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
    /// The kernel failed while running.
    #[error("kernel failed: {0}")]
    Failed(String),
}

impl KernelError {
    /// Shorthand for [`KernelError::InvalidParams`].
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidParams {
            field: field.into(),
            reason: reason.into(),
        }
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
}
