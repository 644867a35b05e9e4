//! Discovery, membership and the wire protocol between taskmesh nodes.
//!
//! # Layout
//! - [`protocol`]: every type that crosses a node boundary (task ids, specs, statuses),
//!   with [`protocol::PROTOCOL_VERSION`]. Variant and field names are a stable contract.
//!
//! Peer discovery and ractor_cluster membership land here with the cluster issue; this
//! crate stays a leaf (no dependency on `actors` or `node`).

pub mod protocol;
