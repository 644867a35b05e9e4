//! The client subcommands of `taskmesh`: they speak to a node's HTTP API
//! (`docs/api.md`) and print data on stdout, messages on stderr, and exit with a
//! documented code (the table under each subcommand's `--help`).
//!
//! # Layout
//! - `args`: their flags ([`ClientCommand`] and its argument structs).
//! - `client`: the HTTP client, the key, retries, answers → exit codes.
//! - `submit`: `submit` and `submit --batch`.
//! - `tasks`: `get`, `wait`, `ls`, `cancel`.
//! - `views`: `cluster` and `stats`.
//! - [`keys`]: `keys create`, `keys ls`, `keys revoke` (the keys API, admin scope).
//! - `output`: tables and task views.

use clap::{Subcommand, ValueEnum};

mod args;
mod client;
pub mod keys;
mod output;
mod submit;
mod tasks;
mod views;

pub use args::{
    ApiKey, CancelArgs, ClientArgs, GetArgs, LsArgs, Output, Priority, Status, SubmitArgs,
    ViewArgs, WaitArgs,
};

/// The client subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Submit a task (or a JSON Lines file of tasks) and print its id.
    Submit(SubmitArgs),
    /// Print a task.
    Get(GetArgs),
    /// Wait until tasks are finished and print their outcome.
    Wait(WaitArgs),
    /// List recent tasks, newest first.
    Ls(LsArgs),
    /// Cancel a task.
    Cancel(CancelArgs),
    /// List the nodes of the cluster: state, circuit breaker and load.
    Cluster(ViewArgs),
    /// Summarize the node's metrics: tasks submitted and completed, queues, workers.
    Stats(ViewArgs),
}

/// How a client subcommand ended, when it got an answer (errors map through
/// [`client::CliError::exit_code`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Done; every task waited for succeeded.
    Success,
    /// A task waited for failed or was cancelled.
    TaskFailed,
    /// `wait --timeout-secs` ran out.
    TimedOut,
}

impl Exit {
    fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::TaskFailed => 1,
            Self::TimedOut => 124,
        }
    }
}

/// The name clap gives a value (`high`, `failed`), as the API spells it too.
pub(crate) fn value_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// Runs a client subcommand on a current-thread runtime; its exit code.
pub(crate) fn run(command: ClientCommand) -> u8 {
    block_on(async {
        match command {
            ClientCommand::Submit(args) => submit::submit(args).await,
            ClientCommand::Get(args) => tasks::get(args).await,
            ClientCommand::Wait(args) => tasks::wait(args).await,
            ClientCommand::Ls(args) => tasks::ls(args).await,
            ClientCommand::Cancel(args) => tasks::cancel(args).await,
            ClientCommand::Cluster(args) => views::cluster(args).await,
            ClientCommand::Stats(args) => views::stats(args).await,
        }
    })
}

/// The online `taskmesh keys` subcommands, spoken to a node.
#[derive(Debug, Clone)]
pub(crate) enum KeysClient {
    /// `keys create`.
    Create(keys::CreateArgs),
    /// `keys ls`.
    Ls(keys::LsArgs),
    /// `keys revoke`.
    Revoke(keys::RevokeArgs),
}

/// Runs an online `taskmesh keys` subcommand; its exit code.
pub(crate) fn run_keys(command: KeysClient) -> u8 {
    block_on(async {
        match command {
            KeysClient::Create(args) => keys::create(args).await,
            KeysClient::Ls(args) => keys::ls(args).await,
            KeysClient::Revoke(args) => keys::revoke(args).await,
        }
    })
}

/// Runs `work` on a current-thread runtime; the exit code of its outcome.
fn block_on(work: impl Future<Output = Result<Exit, client::CliError>>) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("taskmesh: error: starting the async runtime: {e}");
            return 5;
        }
    };
    match runtime.block_on(work) {
        Ok(exit) => exit.code(),
        Err(e) => {
            eprintln!("taskmesh: error: {e}");
            e.exit_code()
        }
    }
}
