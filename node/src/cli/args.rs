//! The flags of the client subcommands (`submit`, `get`, `wait`, `ls`, `cancel`,
//! `cluster`, `stats`). Parsing only; the commands live next to this module.

use std::fmt;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// The exit codes of every client subcommand, shown under its `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0    done: the command did what it was asked (submit --wait, wait: every task succeeded;
       get: the task was printed, whatever its status)
  1    a task failed or was cancelled (submit --wait, wait)
  2    usage error: bad flags, bad --params JSON, unreadable file, or a request the API
       refused as invalid (400, 409, 422 …; its error code and message on stderr)
  3    not found (404: unknown task or key id, or a task of another key)
  4    authentication refused (401, 403)
  5    rate-limited (429) or unavailable (503 or another 5xx, connection refused) after
       3 tries with backoff (Retry-After honoured), within about 5 s
  124  wait --timeout-secs ran out before every task finished";

/// How the server and the key are found: common to every client subcommand.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of a node's HTTP API (`http://` or `https://`).
    #[arg(long, env = "TASKMESH_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// API key, sent as `Authorization: Bearer …` [default: the contents of
    /// <data-dir>/admin.key when that file exists].
    #[arg(long, env = "TASKMESH_API_KEY", hide_env_values = true)]
    pub api_key: Option<ApiKey>,

    /// CA certificate(s), PEM, to trust for an `https://` URL instead of the system's
    /// roots (a node whose --tls-cert a private CA issued).
    #[arg(long, env = "TASKMESH_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Data directory of a local node, where `admin.key` is looked up when no key is given.
    #[arg(long, env = "TASKMESH_DATA_DIR", default_value = "./taskmesh-data")]
    pub data_dir: PathBuf,

    /// Output: `text` for people, `json` for programs (one document, or one JSON object
    /// per line for lists).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// An API key; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable lines and tables.
    Text,
    /// The API's JSON.
    Json,
}

/// A task priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Priority {
    /// Runs before normal and low.
    High,
    /// The default.
    Normal,
    /// Runs after the others, never starved.
    Low,
}

/// A task status, as a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Status {
    /// Waiting for a worker (or for a retry).
    Queued,
    /// An attempt runs.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

/// `taskmesh submit`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct SubmitArgs {
    /// The task kind (e.g. `monte_carlo_option`).
    #[arg(required_unless_present = "batch")]
    pub kind: Option<String>,

    /// The task's params: a JSON object, or `@FILE` to read it from a file.
    #[arg(long, conflicts_with = "batch")]
    pub params: Option<String>,

    /// Priority [default: the API's, normal].
    #[arg(long, value_enum)]
    pub priority: Option<Priority>,

    /// Resource class: only nodes with that label run the task.
    #[arg(long)]
    pub class: Option<String>,

    /// Milliseconds one attempt may run.
    #[arg(long)]
    pub timeout_ms: Option<u64>,

    /// Retries after the first attempt [default: the API's, 3].
    #[arg(long)]
    pub max_retries: Option<u32>,

    /// Submitting the same key again returns the first task instead of a new one.
    #[arg(long, conflicts_with = "batch")]
    pub idempotency_key: Option<String>,

    /// Wait until the task is finished and print its result (exit 1 if it failed or was
    /// cancelled).
    #[arg(long, conflicts_with = "batch")]
    pub wait: bool,

    /// Submit every task of a JSON Lines file (one task object of the API per line, blank
    /// lines skipped), 1000 per request; --priority, --class, --timeout-ms and
    /// --max-retries fill in the lines that lack them. Prints one id per line, in order.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with = "kind")]
    pub batch: Option<PathBuf>,

    /// Server, key and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `taskmesh get`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct GetArgs {
    /// The task id.
    pub id: String,

    /// Server, key and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `taskmesh wait`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct WaitArgs {
    /// The task ids.
    #[arg(required = true)]
    pub ids: Vec<String>,

    /// Give up after this many seconds (exit 124) [default: wait as long as it takes].
    #[arg(long)]
    pub timeout_secs: Option<u64>,

    /// Server, key and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `taskmesh ls`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct LsArgs {
    /// Only tasks with this status.
    #[arg(long, value_enum)]
    pub status: Option<Status>,

    /// Only tasks of this kind.
    #[arg(long)]
    pub kind: Option<String>,

    /// At most this many tasks (the API caps it at 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,

    /// Server, key and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `taskmesh cancel`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct CancelArgs {
    /// The task id.
    pub id: String,

    /// Server, key and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `taskmesh cluster` and `taskmesh stats`: no flags of their own.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct ViewArgs {
    /// Server, key and output.
    #[command(flatten)]
    pub client: ClientArgs,
}
