//! TEMPORARY stub: replaced by the kernels branch at merge.
#![allow(missing_docs)]
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Default, Debug)]
pub struct CancelToken(Arc<AtomicBool>);
impl CancelToken {
    pub fn new() -> Self { Self::default() }
    pub fn cancel(&self) { self.0.store(true, Ordering::SeqCst) }
    pub fn is_cancelled(&self) -> bool { self.0.load(Ordering::SeqCst) }
}
pub struct Context { pub attempt: u32, pub cancel: CancelToken }
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum KernelError {
    #[error("unknown kind `{kind}`; known kinds: {}", known.join(", "))]
    UnknownKind { kind: String, known: Vec<&'static str> },
    #[error("invalid params: field `{field}`: {reason}")]
    InvalidParams { field: String, reason: String },
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
}
#[derive(Default, Clone, Copy)]
pub struct RegistryOptions { pub test_kernels: bool }
#[derive(Clone)]
pub struct Registry;
impl Registry {
    pub fn new(_o: RegistryOptions) -> Self { Registry }
    pub fn kinds(&self) -> Vec<&'static str> { vec!["noop", "sleep"] }
    pub fn contains(&self, kind: &str) -> bool { self.kinds().contains(&kind) }
    pub fn validate(&self, kind: &str, _p: &str) -> Result<(), KernelError> {
        if self.contains(kind) { Ok(()) } else { Err(KernelError::UnknownKind { kind: kind.into(), known: self.kinds() }) }
    }
    pub fn run(&self, kind: &str, p: &str, ctx: &Context) -> Result<String, KernelError> {
        self.validate(kind, p)?;
        if kind == "sleep" { std::thread::sleep(std::time::Duration::from_millis(50)); if ctx.cancel.is_cancelled() { return Err(KernelError::Cancelled) } }
        Ok("null".into())
    }
    pub fn is_trivial(&self, kind: &str) -> bool { kind == "noop" }
}
