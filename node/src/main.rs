//! The `taskmesh` binary.
fn main() {}
