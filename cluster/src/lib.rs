//! Discovery, membership and the wire protocol between taskmesh nodes.
//!
//! # Layout
//! - [`protocol`]: the task model that crosses node boundaries (ids, specs, statuses),
//!   with [`protocol::PROTOCOL_VERSION`]. Variant and field names are a stable contract.
//! - [`wire`]: the messages between nodes' endpoints and their MessagePack encoding.
//! - [`bootstrap`]: the ractor_cluster NodeServer and the dialer keeping a full mesh.
//! - [`discovery`]: static seeds and DNS names to resolve.
//! - [`breaker`]: the per-peer circuit breaker (pure, injected clock).
//! - [`detector`]: the peer failure detector fed by heartbeats (pure, injected clock).
//!
//! This crate is a leaf: it depends on neither `actors` nor `node`.

pub mod bootstrap;
pub mod breaker;
pub mod detector;
pub mod discovery;
pub mod protocol;
pub mod wire;
