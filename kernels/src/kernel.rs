//! The public contract of a task kind ([`Kernel`], [`Params`]), and the object-safe
//! form the registry stores.
//!
//! A kind implements [`Kernel`]: it names a [`Params`] type (serde, usually
//! `deny_unknown_fields`, with a `check` for ranges) and an output type. The
//! blanket impl turns it into the crate-internal object-safe `ErasedKernel` that
//! takes and returns JSON text, so parse errors, range checks and result encoding
//! are written once, here, for the built-in kinds and for users' kinds alike.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::{Context, KernelError};

/// A kernel as the registry sees it: JSON text in, JSON text out.
pub(crate) trait ErasedKernel: Send + Sync {
    /// The kind this kernel is registered under.
    fn name(&self) -> &'static str;
    /// Whether the kernel is cheap enough to run inline on an async thread.
    fn is_trivial(&self) -> bool;
    /// Parses and checks `params` without running anything.
    fn validate(&self, params: &str) -> Result<(), KernelError>;
    /// Validates `params`, runs the kernel and encodes its result as JSON text.
    fn run(&self, params: &str, ctx: &Context) -> Result<String, KernelError>;
}

/// The parameters of one task kind: JSON in the task, parsed with serde.
///
/// Parsing errors name the offending field as a JSON path (`paths`, `legs[2].k`);
/// [`Params::check`] adds what the type system cannot say, with the helpers in
/// [`check`](crate::check), which name the field too. Both reach the client as a
/// `422 invalid_params` before the task is stored.
pub trait Params: DeserializeOwned {
    /// Checks what the type system cannot: ranges, finiteness, combined limits.
    ///
    /// Return [`KernelError::invalid`] naming the field. The default accepts anything
    /// that parsed.
    fn check(&self) -> Result<(), KernelError> {
        Ok(())
    }
}

/// Optional params: `null` is accepted and needs no check.
impl<P: Params> Params for Option<P> {
    fn check(&self) -> Result<(), KernelError> {
        self.as_ref().map_or(Ok(()), P::check)
    }
}

/// A task kind: typed params in, typed output out. What users implement.
///
/// The node validates the params (parse + [`Params::check`]) when the task is
/// submitted, and again before each attempt; [`Kernel::execute`] only ever sees
/// params that passed. `execute` runs on a blocking thread, never on the async
/// runtime (unless the kind is [`Kernel::TRIVIAL`]), and may fan out onto the rayon
/// pool it is called from. It should look at [`Context::is_cancelled`] every few
/// milliseconds of work and stop with [`KernelError::Cancelled`].
///
/// Its error says what the node does next: [`KernelError::retryable`] retries the
/// task (under its `max_retries`), [`KernelError::permanent`] and
/// [`KernelError::invalid`] fail it at once.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use taskmesh_kernels::{Context, Kernel, KernelError, Params, Registry, RegistryOptions, check};
///
/// /// `word_count`: `{"text": "a b"}` → `{"words": 2}`.
/// struct WordCount;
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Text {
///     text: String,
/// }
///
/// impl Params for Text {
///     fn check(&self) -> Result<(), KernelError> {
///         check::at_most("text", self.text.len(), 1 << 20)
///     }
/// }
///
/// #[derive(Serialize)]
/// struct Words {
///     words: usize,
/// }
///
/// impl Kernel for WordCount {
///     const NAME: &'static str = "word_count";
///     type Params = Text;
///     type Output = Words;
///
///     fn execute(&self, params: Text, ctx: &Context) -> Result<Words, KernelError> {
///         ctx.check_cancelled()?;
///         ctx.progress(1.0, "counted");
///         Ok(Words { words: params.text.split_whitespace().count() })
///     }
/// }
///
/// let registry = Registry::builder().kind(WordCount).build(RegistryOptions::default())?;
/// let out = registry.run("word_count", r#"{"text": "to be or not"}"#, &Context::default())?;
/// assert_eq!(out, r#"{"words":4}"#);
///
/// let err = registry.validate("word_count", "{}").unwrap_err();
/// assert_eq!(err.to_string(), "invalid params: field `text`: missing field `text`");
/// # Ok::<(), KernelError>(())
/// ```
pub trait Kernel: Send + Sync + 'static {
    /// The kind this kernel is registered under: what a task's `kind` names.
    const NAME: &'static str;
    /// Whether the kernel is so cheap (microseconds, no blocking) that the node may run
    /// it inline on an async thread instead of a blocking one. Leave it `false` unless
    /// you measured.
    const TRIVIAL: bool = false;
    /// The params, parsed from JSON and checked before [`Kernel::execute`].
    type Params: Params;
    /// The result, encoded as JSON into the task's `result`.
    type Output: Serialize;

    /// Runs one attempt on params that passed [`Params::check`].
    fn execute(&self, params: Self::Params, ctx: &Context) -> Result<Self::Output, KernelError>;
}

impl<K: Kernel> ErasedKernel for K {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn is_trivial(&self) -> bool {
        K::TRIVIAL
    }

    fn validate(&self, params: &str) -> Result<(), KernelError> {
        parse::<K::Params>(params).map(drop)
    }

    fn run(&self, params: &str, ctx: &Context) -> Result<String, KernelError> {
        let params = parse::<K::Params>(params)?;
        let output = self.execute(params, ctx)?;
        serde_json::to_string(&output)
            .map_err(|err| KernelError::permanent(format!("cannot encode the result: {err}")))
    }
}

/// Parses `params` as JSON into `P`, then runs [`Params::check`].
///
/// Errors are [`KernelError::InvalidParams`] whose `field` is the JSON path of
/// the offending value, or `.` for the params as a whole: not JSON, or not an
/// object. (Serde would also read a struct from an array of its fields in
/// order; params are named, so arrays are rejected before parsing.)
pub(crate) fn parse<P: Params>(params: &str) -> Result<P, KernelError> {
    if params
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('[')
    {
        return Err(KernelError::invalid(
            ".",
            "expected a JSON object, found an array",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(params);
    let parsed: P = serde_path_to_error::deserialize(&mut de).map_err(from_serde)?;
    de.end()
        .map_err(|err| KernelError::invalid(".", reason(&err)))?;
    parsed.check()?;
    Ok(parsed)
}

/// Turns a serde error into [`KernelError::InvalidParams`] naming the field.
fn from_serde(err: serde_path_to_error::Error<serde_json::Error>) -> KernelError {
    let known_path = !err
        .path()
        .iter()
        .any(|segment| matches!(segment, Segment::Unknown));
    let path = err.path().to_string();
    let reason = reason(err.inner());
    let field = match missing_field(&reason) {
        // serde reports a missing field at the path of the enclosing object;
        // its message names the field, so point at the field itself.
        Some(name) if path == "." => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None if known_path => path,
        // Malformed JSON can stop the parser before it knows where it is.
        None => ".".to_owned(),
    };
    KernelError::invalid(field, reason)
}

/// The error message; the position is kept only for syntax errors, where it helps.
fn reason(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if err.is_syntax() || err.is_eof() {
        return text;
    }
    let position = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&position) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// The field named by serde's "missing field `x`" message.
fn missing_field(reason: &str) -> Option<&str> {
    reason
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        count: u32,
        #[serde(default)]
        nested: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        x: f64,
    }

    impl Params for Sample {
        fn check(&self) -> Result<(), KernelError> {
            crate::check::at_most("count", self.count, 10)
        }
    }

    fn field_of(params: &str) -> String {
        match parse::<Sample>(params) {
            Err(KernelError::InvalidParams { field, .. }) => field,
            other => panic!("expected InvalidParams for {params}, got {other:?}"),
        }
    }

    #[test]
    fn accepts_valid_params() {
        let sample = parse::<Sample>(r#"{"count": 3}"#).unwrap();
        assert_eq!(sample.count, 3);
        let sample = parse::<Sample>(r#"{"count": 3, "nested": {"x": 0.5}}"#).unwrap();
        assert_eq!(sample.nested.map(|inner| inner.x), Some(0.5));
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse::<Sample>(r#"{"count": "x"}"#).unwrap_err();
        assert_eq!(
            err,
            KernelError::invalid("count", "invalid type: string \"x\", expected u32")
        );
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        assert_eq!(field_of("{}"), "count");
        assert_eq!(field_of(r#"{"count": 1, "extra": 2}"#), "extra");
        assert_eq!(field_of(r#"{"count": 1, "nested": {"y": 1}}"#), "nested.y");
        assert_eq!(field_of(r#"{"count": 1, "nested": {}}"#), "nested.x");
        assert_eq!(field_of(r#"{"count": 1e400}"#), "count");
        assert_eq!(field_of(r#"{"count": }"#), "count");
    }

    #[test]
    fn non_objects_and_bad_json_are_reported_at_the_root() {
        for params in [
            "[]",
            " [3]",
            "3",
            "\"s\"",
            "null",
            "",
            "{",
            r#"{"count": 1} x"#,
        ] {
            assert_eq!(field_of(params), ".", "params {params:?}");
        }
    }

    #[test]
    fn check_runs_after_parsing() {
        let err = parse::<Sample>(r#"{"count": 11}"#).unwrap_err();
        assert_eq!(err, KernelError::invalid("count", "must be at most 10"));
    }
}
