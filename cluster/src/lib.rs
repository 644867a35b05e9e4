//! Discovery, membership and the wire protocol between taskmesh nodes.
//!
//! # Layout
//! - [`protocol`]: [`protocol::PROTOCOL_VERSION`], which peers compare when they meet.
//! - [`wire`]: the messages between nodes' endpoints and their MessagePack encoding. They
//!   carry the task model of [`taskmesh_kernels::task`]; variant and field names of both
//!   are a stable contract.
//! - [`bootstrap`]: the ractor_cluster NodeServer and the dialer keeping a full mesh.
//! - [`discovery`]: static seeds and DNS names to resolve.
//! - [`tls`]: mutual TLS between nodes (the front listener that handshakes first).
//! - [`breaker`]: the per-peer circuit breaker (pure, injected clock).
//! - [`detector`]: the peer failure detector fed by heartbeats (pure, injected clock).
//!
//! This crate depends only on `kernels` (for the task model), never on `actors` or
//! `node`.

pub mod bootstrap;
pub mod breaker;
pub mod detector;
pub mod discovery;
pub mod protocol;
pub mod tls;
pub mod wire;
