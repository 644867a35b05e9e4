//! `echo`: returns its input. Params `{"value": any}`; result `{"value": <same>}`.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{Context, KernelError};
use crate::{Kernel, Params};

/// The `echo` kernel.
pub(crate) struct Echo;

/// Params and result of `echo`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EchoParams {
    /// Any JSON value, `null` included; `None` only when the field is absent.
    #[serde(default, deserialize_with = "present")]
    value: Option<Value>,
}

/// Deserializes a field that is present, even as `null`, into `Some`.
fn present<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(de).map(Some)
}

impl Params for EchoParams {
    fn check(&self) -> Result<(), KernelError> {
        match self.value {
            Some(_) => Ok(()),
            None => Err(KernelError::invalid("value", "missing field `value`")),
        }
    }
}

impl Kernel for Echo {
    const NAME: &'static str = "echo";
    const TRIVIAL: bool = true;
    type Params = EchoParams;
    type Output = EchoParams;

    fn execute(&self, params: EchoParams, _ctx: &Context) -> Result<EchoParams, KernelError> {
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kernel::ErasedKernel;

    fn echo(params: &str) -> Result<Value, KernelError> {
        let text = Echo.run(params, &Context::default())?;
        Ok(serde_json::from_str(&text).unwrap())
    }

    #[test]
    fn returns_the_value() {
        let value = json!({"a": [1, 2.5, "x", null, {"b": true}]});
        let params = json!({ "value": value }).to_string();
        assert_eq!(echo(&params), Ok(json!({ "value": value })));
    }

    #[test]
    fn null_is_a_value() {
        assert_eq!(echo(r#"{"value": null}"#), Ok(json!({"value": null})));
    }

    #[test]
    fn missing_value_is_rejected() {
        assert_eq!(
            echo("{}"),
            Err(KernelError::invalid("value", "missing field `value`"))
        );
    }

    #[test]
    fn non_objects_are_rejected_at_the_root() {
        assert!(matches!(
            echo("[1]"),
            Err(KernelError::InvalidParams { field, .. }) if field == "."
        ));
    }
}
