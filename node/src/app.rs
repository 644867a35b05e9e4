//! The node as a library: [`Node`] runs the whole `taskmesh` node, CLI included, with
//! task kinds of one's own next to the built-in ones.
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//! use taskmesh_node::Node;
//! use taskmesh_node::kernels::{Context, Kernel, KernelError, Params};
//!
//! struct Shout;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Text {
//!     text: String,
//! }
//!
//! impl Params for Text {}
//!
//! #[derive(Serialize)]
//! struct Loud {
//!     text: String,
//! }
//!
//! impl Kernel for Shout {
//!     const NAME: &'static str = "shout";
//!     type Params = Text;
//!     type Output = Loud;
//!
//!     fn execute(&self, params: Text, _ctx: &Context) -> Result<Loud, KernelError> {
//!         Ok(Loud { text: params.text.to_uppercase() })
//!     }
//! }
//!
//! fn main() -> anyhow::Result<()> {
//!     // Every flag, environment variable and subcommand of `taskmesh`, plus `shout`.
//!     Node::new().kind(Shout).run_cli()
//! }
//! ```

use std::future::Future;

use anyhow::Context as _;
use clap::Parser;
use taskmesh_kernels::{Kernel, Registry, RegistryBuilder, RegistryOptions};

use crate::config::{Cli, Command, NodeArgs, NodeConfig};
use crate::{NodeHandle, shutdown, telemetry};

/// A node and the task kinds it adds to the built-in ones. `taskmesh`'s own `main` is
/// `Node::new().run_cli()`.
#[derive(Debug, Default)]
pub struct Node {
    kinds: RegistryBuilder,
}

impl Node {
    /// A node with the built-in kinds only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task kind, registered under [`Kernel::NAME`]. A name used twice (by two
    /// added kinds, or by an added kind and a built-in one) stops the node at start with
    /// an error naming the kind.
    pub fn kind<K: Kernel>(mut self, kernel: K) -> Self {
        self.kinds = self.kinds.kind(kernel);
        self
    }

    /// Runs the `taskmesh` command line on this process's arguments and environment:
    /// parses them (`--help` and `--version` included), sets up logging, and runs the
    /// node until SIGINT or SIGTERM, then stops it gracefully. Builds its own tokio
    /// runtime, so call it from a plain `fn main`. The client subcommands (`submit`,
    /// `get`, `wait`, `ls`, `cancel`, `cluster`, `stats`; [`crate::cli`]) run and exit
    /// the process with their exit code.
    pub fn run_cli(self) -> anyhow::Result<()> {
        let cli = Cli::parse();
        let args = match cli.command {
            Some(Command::Node(args)) => args,
            None => NodeArgs::parse_from(["taskmesh node"]),
            Some(Command::Client(command)) => std::process::exit(crate::cli::run(command).into()),
            Some(Command::Keys(command)) => return crate::keys::run(command),
        };
        telemetry::init(args.log_format, &args.log)?;
        let config = NodeConfig::try_from(args).context("invalid configuration")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(self.run(config, shutdown::signal()))
    }

    /// The registry of the built-in kinds (the test kinds too if `config` asks) and the
    /// added ones.
    fn registry(self, config: &NodeConfig) -> anyhow::Result<Registry> {
        let options = RegistryOptions {
            test_kernels: config.test_kernels,
        };
        let kinds = config
            .external_kinds
            .iter()
            .fold(self.kinds, |kinds, kind| kinds.external(kind.clone()));
        kinds.build(options).context("registering the task kinds")
    }

    /// Starts the node with `config` (see [`crate::start`]); fails before opening
    /// anything if a kind is registered twice.
    pub async fn start(self, config: NodeConfig) -> anyhow::Result<NodeHandle> {
        let kernels = self.registry(&config)?;
        crate::start_with(config, kernels).await
    }

    /// Runs the node until `shutdown` resolves, then stops it gracefully.
    pub async fn run(
        self,
        config: NodeConfig,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let node = self.start(config).await?;
        shutdown.await;
        node.shutdown().await?;
        tracing::info!("node stopped");
        Ok(())
    }
}
