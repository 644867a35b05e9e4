//! The version of the node-to-node protocol.
//!
//! The protocol carries the task model of [`taskmesh_kernels::task`] (ids, specs,
//! statuses) inside the messages of [`crate::wire`]; it does not own it. Field and
//! variant names of those types and of the messages are part of the contract; renaming
//! one is a protocol change and bumps [`PROTOCOL_VERSION`].

/// Version of the node-to-node protocol, exchanged when peers join.
///
/// 2: nodes judge each other's liveness by the heartbeats of
/// [`crate::wire::HEARTBEAT_GROUP`] rather than by load reports; a version-1 peer sends
/// none, so it would never be seen to fall silent, and is refused.
pub const PROTOCOL_VERSION: u32 = 2;
