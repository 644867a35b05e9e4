//! The taskmesh chaos runner.
//!
//! A [`scenario::Scenario`] (a TOML file of steps) runs against a [`backend::Backend`]:
//! local processes on loopback, or a compose project. While a steady workload submits
//! tasks and records every 202'd id, the steps kill, pause and partition nodes and restart
//! Redis. At the end every fault is healed, every accepted task is read back until it is
//! terminal, and the invariants are checked; the [`report::Report`] is written as JSON
//! and Markdown.
//!
//! ```text
//! main ── Runner ──┬── Backend (loopback: processes + proxy::Link | compose: docker CLI)
//!                  ├── workload::Submitter (steady / burst submissions → Ledger)
//!                  ├── invariants::Watch (samples statuses while faults happen)
//!                  └── invariants::settle + check_store → report::Report
//! ```

pub mod backend;
pub mod client;
pub mod clock;
pub mod invariants;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod workload;

use std::path::{Path, PathBuf};

/// The scenario files shipped in `chaos/scenarios/`.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}
