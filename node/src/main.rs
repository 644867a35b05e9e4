//! The `taskmesh` binary: parse flags, set up logs, run a node until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use taskmesh_node::config::{Cli, Command, NodeArgs, NodeConfig};

// Profiling showed glibc malloc's arena locks contended between the runtime threads and
// the store's committer thread; mimalloc's thread-local heaps avoid that (+31 % no-op
// tasks/s, docs/benchmarks.md). Built with `no_thp`: with transparent huge pages its
// arenas made an idle node 20 MB instead of 9 MB.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Node(args)) => args,
        None => NodeArgs::parse_from(["taskmesh node"]),
    };
    taskmesh_node::telemetry::init(args.log_format, &args.log)?;
    let config = NodeConfig::try_from(args).context("invalid configuration")?;
    taskmesh_node::run(config, taskmesh_node::shutdown::signal()).await
}
