//! The taskmesh load generator, as a library the `loadgen` binary and the smoke test share.
//!
//! [`run`] takes parsed [`cli::Args`] and returns a [`report::Report`]; the binary prints
//! it as a table and writes it as JSON. Every mode shares the machine with the node it
//! drives, so the report carries the generator's own CPU time next to the node's.
//!
//! # Modes
//! - `closed`: C connections, each with one request in flight at a time (keep-alive).
//! - `open`: requests scheduled at a fixed rate; latency is measured from each request's
//!   *intended* send time, so a stalled node cannot hide its stall (coordinated omission).
//! - `rtt`: one connection, submit then long-poll the result, one task at a time.
//! - `kernel-loop`: the kernel called in-process in a loop, no node at all: the baseline
//!   for "tasks/s through a node vs the bare kernel".
//! - `startup`: spawn the node binary on a fresh data dir, time until `/health/ready`
//!   answers 200, and read its idle RSS.
//!
//! After `closed` and `open`, every accepted task is waited for and checked through the
//! API ([`complete`]), which gives the end-to-end throughput.
//!
//! # Layout
//! - [`cli`]: the flags of `loadgen`.
//! - [`http`]: a lean HTTP/1.1 keep-alive connection on hyper's connection API.
//! - [`workload`]: request bodies, and the ids parsed from the answers.
//! - [`submit`]: the closed and open loop submit phases.
//! - [`complete`]: waiting for and verifying every accepted task.
//! - [`rtt`], [`kernel_loop`], [`startup`]: the other modes.
//! - [`procstat`]: CPU time, core waits and RSS of the node (from `/proc`) and of the
//!   generator (`getrusage`), and the load average.
//! - [`machine`]: how busy the cores were, and which other processes (kernel workers
//!   included) used them.
//! - [`stats`]: latency histograms and their percentiles.
//! - [`report`]: the report, its table and its JSON.

pub mod cli;
pub mod complete;
pub mod http;
pub mod kernel_loop;
pub mod machine;
pub mod procstat;
pub mod report;
pub mod rtt;
pub mod startup;
pub mod stats;
pub mod submit;
pub mod workload;

mod run;

pub use run::run;
