//! Range checks for [`Params::check`](crate::Params::check); each names the field it
//! rejects in a [`KernelError::InvalidParams`].
//!
//! ```
//! use taskmesh_kernels::{KernelError, check};
//!
//! assert_eq!(
//!     check::at_most("n", 4096, 1024),
//!     Err(KernelError::invalid("n", "must be at most 1024"))
//! );
//! assert!(check::between("n", 64, 1, 1024).is_ok());
//! ```

use std::fmt::Display;

use crate::KernelError;

/// `value` must be finite and strictly positive.
pub fn positive(field: &str, value: f64) -> Result<(), KernelError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(KernelError::invalid(
            field,
            format!("must be a finite number greater than 0 (got {value})"),
        ))
    }
}

/// `value` must be finite.
pub fn finite(field: &str, value: f64) -> Result<(), KernelError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(KernelError::invalid(
            field,
            format!("must be a finite number (got {value})"),
        ))
    }
}

/// `value` must be at most `max`.
pub fn at_most<T: PartialOrd + Display>(field: &str, value: T, max: T) -> Result<(), KernelError> {
    if value <= max {
        Ok(())
    } else {
        Err(KernelError::invalid(
            field,
            format!("must be at most {max}"),
        ))
    }
}

/// `value` must lie in `min..=max`.
pub fn between<T: PartialOrd + Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), KernelError> {
    if value < min {
        Err(KernelError::invalid(
            field,
            format!("must be at least {min}"),
        ))
    } else {
        at_most(field, value, max)
    }
}

/// `value` must lie strictly between `low` and `high`.
pub fn strictly_between(field: &str, value: f64, low: f64, high: f64) -> Result<(), KernelError> {
    if value > low && value < high {
        Ok(())
    } else {
        Err(KernelError::invalid(
            field,
            format!("must be strictly between {low} and {high} (got {value})"),
        ))
    }
}

/// `params` (JSON text) must be a JSON object: what is checked of an external kind's
/// params, which its worker validates.
pub fn json_object(params: &str) -> Result<(), KernelError> {
    match serde_json::from_str::<serde_json::Value>(params) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(KernelError::invalid(".", "must be a JSON object")),
        Err(e) => Err(KernelError::invalid(".", format!("not valid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_rejects_zero_negative_and_non_finite() {
        assert!(positive("x", 1e-300).is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(positive("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn between_reports_the_violated_bound() {
        assert_eq!(
            between("n", 0, 1, 1024),
            Err(KernelError::invalid("n", "must be at least 1"))
        );
        assert_eq!(
            between("n", 1025, 1, 1024),
            Err(KernelError::invalid("n", "must be at most 1024"))
        );
        assert!(between("n", 1024, 1, 1024).is_ok());
    }

    #[test]
    fn strictly_between_excludes_the_ends_and_nan() {
        assert!(strictly_between("c", 0.75, 0.5, 1.0).is_ok());
        for bad in [0.5, 1.0, f64::NAN] {
            assert!(strictly_between("c", bad, 0.5, 1.0).is_err(), "{bad}");
        }
    }

    #[test]
    fn finite_rejects_nan_and_infinities() {
        assert!(finite("r", -0.5).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(finite("r", bad).is_err(), "{bad}");
        }
    }
}
