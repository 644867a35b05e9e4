//! Where a scenario runs. Both backends start the same cluster (Redis and N taskmesh
//! nodes) and inflict the same faults, so one scenario file runs on either:
//!
//! | step | [`loopback`] (local processes) | [`compose`] (a compose project) |
//! |---|---|---|
//! | kill | SIGKILL | `docker kill -s KILL` |
//! | terminate | SIGTERM, wait for exit | `docker stop` |
//! | pause / resume | SIGSTOP / SIGCONT | `docker pause` / `docker unpause` |
//! | partition | cut the node's [`crate::proxy::Link`]s | `docker network disconnect` |
//! | restart Redis | SIGKILL + start (AOF fsync always) | `docker restart` (AOF flushed on SIGTERM) |
//! | add a node | spawn one more process | `up --scale node=N+1` |
//!
//! The runner keeps track of which nodes live; a backend only carries out orders.

pub mod compose;
pub mod loopback;

use async_trait::async_trait;

use crate::client::Api;
use crate::scenario::Cut;

/// A place to run scenarios.
#[async_trait]
pub trait Backend: Send {
    /// `loopback` or `compose`.
    fn name(&self) -> &'static str;
    /// The client of the run: its admin key is the one every node was given.
    fn api(&self) -> Api;
    /// Starts Redis and `nodes` nodes and returns once every node is ready.
    async fn start(&mut self, nodes: usize) -> anyhow::Result<()>;
    /// The HTTP base URL of every node ever started, by index.
    fn urls(&self) -> Vec<String>;
    /// Kills node `i` outright.
    async fn kill(&mut self, i: usize) -> anyhow::Result<()>;
    /// Asks node `i` to stop (SIGTERM) and waits until it has.
    async fn terminate(&mut self, i: usize) -> anyhow::Result<()>;
    /// Starts a killed or terminated node `i` again, under the same node id.
    async fn restart(&mut self, i: usize) -> anyhow::Result<()>;
    /// Freezes node `i`.
    async fn pause(&mut self, i: usize) -> anyhow::Result<()>;
    /// Thaws node `i`.
    async fn resume(&mut self, i: usize) -> anyhow::Result<()>;
    /// Cuts node `i` off from its peers or from Redis.
    async fn partition(&mut self, i: usize, from: Cut) -> anyhow::Result<()>;
    /// Undoes every partition of node `i`.
    async fn heal(&mut self, i: usize) -> anyhow::Result<()>;
    /// Restarts Redis on the same data.
    async fn restart_redis(&mut self) -> anyhow::Result<()>;
    /// Starts one more node and returns its index.
    async fn add_node(&mut self) -> anyhow::Result<usize>;
    /// A Redis URL reachable from here, to check task records in the store itself.
    fn store_url(&self) -> Option<String>;
    /// Where each node's log can be read after the run (a file or a command).
    fn logs_hint(&self) -> String;
    /// Stops everything the backend started.
    async fn shutdown(&mut self);
}
