//! `noop`: does nothing. Params `{}` or `null`; result `null`.

use serde::Deserialize;

use crate::{Context, KernelError};
use crate::{Kernel, Params};

/// The `noop` kernel.
pub(crate) struct Noop;

/// An object with no fields; the params of `noop` are `Option<Empty>`, so `null` works too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

impl Params for Empty {}

impl Kernel for Noop {
    const NAME: &'static str = "noop";
    const TRIVIAL: bool = true;
    type Params = Option<Empty>;
    type Output = ();

    fn execute(&self, _params: Option<Empty>, _ctx: &Context) -> Result<(), KernelError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ErasedKernel;

    #[test]
    fn accepts_empty_object_and_null() {
        for params in ["{}", "null", " { } "] {
            assert_eq!(Noop.run(params, &Context::default()), Ok("null".into()));
        }
    }

    #[test]
    fn rejects_fields_and_other_values() {
        for params in [r#"{"a": 1}"#, "[]", "0", ""] {
            assert!(
                matches!(
                    Noop.validate(params),
                    Err(KernelError::InvalidParams { .. })
                ),
                "{params}"
            );
        }
    }
}
