//! The flags of `loadgen`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

/// An API key given by flag or environment: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Drives one or more taskmesh nodes over HTTP and reports throughput, latency
/// percentiles, errors, and the CPU time and RSS of the node and of itself.
///
/// The generator usually runs on the same machine as the node: its own CPU time is
/// reported so the two can be told apart.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen")]
pub struct Args {
    /// Base URL of a node; repeat or comma-separate for several (connections are spread
    /// round-robin over them).
    #[arg(
        long = "target",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub targets: Vec<String>,

    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,

    /// Connections (closed: requests in flight; open: the most in flight; kernel-loop:
    /// threads calling the kernel).
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,

    /// Open loop: requests per second, each carrying --batch tasks.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Stop sending after this many seconds [default: 10 s when --tasks is not given].
    #[arg(long, conflicts_with = "tasks")]
    pub duration: Option<f64>,

    /// Stop after this many tasks (rtt: iterations; kernel-loop: kernel runs)
    /// [default for rtt: 1000, kernel-loop: 100].
    #[arg(long)]
    pub tasks: Option<u64>,

    /// Tasks per request; above 1, requests go to `/v1/tasks/batch`.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// The task kind (kernel) to submit.
    #[arg(long, default_value = "noop")]
    pub kind: String,

    /// The kernel's params, a JSON object.
    #[arg(long, default_value = "{}")]
    pub params: String,

    /// Priority of the submitted tasks (high, normal, low) [default: the node's default].
    #[arg(long)]
    pub priority: Option<String>,

    /// After the submit phase: wait for and check `all` accepted tasks, an evenly spaced
    /// sample of N of them (plus each connection's last), or `none` (submit only).
    #[arg(long, default_value = "all")]
    pub verify: Verify,

    /// Give up waiting for accepted tasks after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub completion_timeout: u64,

    /// Timeout of one HTTP request, in milliseconds (a timed-out connection is reopened).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,

    /// API key sent as `Authorization: Bearer …` on every request (nodes run with API
    /// keys on by default; a key with `submit` does for closed and open loops).
    #[arg(long, env = "TASKMESH_API_KEY", hide_env_values = true)]
    pub api_key: Option<ApiKey>,

    /// Runtime threads of the generator (1: a single-threaded runtime, the leanest).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// rtt and kernel-loop: iterations run first and left out of the figures.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,

    /// Process id of a node to sample (CPU time from /proc/PID/stat, RSS from
    /// /proc/PID/status, per-thread CPU from /proc/PID/task); repeatable.
    #[arg(long = "node-pid")]
    pub node_pids: Vec<u32>,

    /// startup: the `taskmesh` binary to start.
    #[arg(long, default_value = "target/release/taskmesh")]
    pub node_bin: PathBuf,

    /// startup: an extra flag for the node (repeat for several, e.g.
    /// `--node-arg=--workers --node-arg=4`).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    pub node_args: Vec<String>,

    /// startup: how many times to start the node.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,

    /// Before starting, wait until the 1-minute load average is below this.
    #[arg(long)]
    pub wait_load_below: Option<f64>,

    /// Wait at most this many seconds for --wait-load-below, then start anyway.
    #[arg(long, default_value_t = 600)]
    pub wait_load_timeout: u64,

    /// Free text recorded in the report (e.g. "embedded store, 1 node").
    #[arg(long)]
    pub label: Option<String>,

    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// C connections, one request in flight on each.
    Closed,
    /// Requests at a fixed rate, latency measured from the intended send time.
    Open,
    /// Idle round trip: submit, then long-poll the result, one task at a time.
    Rtt,
    /// The kernel in a loop in this process (no node): the baseline for kernel tasks/s.
    KernelLoop,
    /// Start the node binary repeatedly and time until it is ready.
    Startup,
}

/// How the completion phase checks the accepted tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Do not wait for the tasks: report the submit phase only.
    None,
    /// Read every accepted task back.
    All,
    /// Read back an evenly spaced sample of this many, plus each connection's last.
    Sample(usize),
}

impl FromStr for Verify {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Verify::None),
            "all" => Ok(Verify::All),
            n => n
                .parse()
                .map(Verify::Sample)
                .map_err(|_| format!("expected `all`, `none` or a sample size, got `{n}`")),
        }
    }
}

/// When the submit phase stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// After this many tasks.
    Tasks(u64),
    /// After this long.
    Duration(Duration),
}

impl Args {
    /// Checks the combinations clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.connections == 0 || self.batch == 0 || self.threads == 0 {
            bail!("--connections, --batch and --threads must be at least 1");
        }
        if self.targets.is_empty() {
            bail!("give at least one --target");
        }
        match (self.mode, self.rate) {
            (Mode::Open, None) => bail!("--mode open needs --rate"),
            (Mode::Open, Some(r)) if !(r.is_finite() && r > 0.0) => {
                bail!("--rate must be a positive number")
            }
            (Mode::Closed | Mode::Rtt | Mode::KernelLoop | Mode::Startup, Some(_)) => {
                bail!("--rate only applies to --mode open")
            }
            _ => {}
        }
        if let Some(d) = self.duration
            && !(d.is_finite() && d > 0.0)
        {
            bail!("--duration must be a positive number of seconds");
        }
        if self.tasks == Some(0) {
            bail!("--tasks must be at least 1");
        }
        let params: serde_json::Value =
            serde_json::from_str(&self.params).context("--params is not JSON")?;
        if !(params.is_object() || params.is_null()) {
            bail!("--params must be a JSON object");
        }
        Ok(())
    }

    /// When the submit phase (closed, open) stops.
    pub fn limit(&self) -> Limit {
        match (self.tasks, self.duration) {
            (Some(n), _) => Limit::Tasks(n),
            (None, Some(secs)) => Limit::Duration(Duration::from_secs_f64(secs)),
            (None, None) => Limit::Duration(Duration::from_secs(10)),
        }
    }

    /// Iterations of rtt and kernel-loop.
    pub fn iterations(&self) -> u64 {
        self.tasks.unwrap_or(match self.mode {
            Mode::KernelLoop => 100,
            _ => 1000,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
            .expect("valid flags")
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn targets_split_on_commas_and_repeat() {
        let a = parse(&[
            "--target",
            "http://a:1,http://b:2",
            "--target",
            "http://c:3",
        ]);
        assert_eq!(a.targets, ["http://a:1", "http://b:2", "http://c:3"]);
    }

    #[test]
    fn verify_parses_all_none_and_sizes() {
        assert_eq!("all".parse(), Ok(Verify::All));
        assert_eq!("none".parse(), Ok(Verify::None));
        assert_eq!("250".parse(), Ok(Verify::Sample(250)));
        assert!("some".parse::<Verify>().is_err());
    }

    #[test]
    fn open_mode_needs_a_positive_rate() {
        assert!(parse(&["--mode", "open"]).validate().is_err());
        assert!(
            parse(&["--mode", "open", "--rate", "0"])
                .validate()
                .is_err()
        );
        assert!(
            parse(&["--mode", "open", "--rate", "100"])
                .validate()
                .is_ok()
        );
        assert!(parse(&["--rate", "100"]).validate().is_err());
    }

    #[test]
    fn params_must_be_a_json_object() {
        assert!(parse(&["--params", "[1]"]).validate().is_err());
        assert!(parse(&["--params", "{"]).validate().is_err());
        assert!(parse(&["--params", r#"{"ms": 5}"#]).validate().is_ok());
    }

    #[test]
    fn limit_defaults_to_ten_seconds() {
        assert_eq!(parse(&[]).limit(), Limit::Duration(Duration::from_secs(10)));
        assert_eq!(parse(&["--tasks", "5"]).limit(), Limit::Tasks(5));
        assert_eq!(parse(&["--mode", "rtt"]).iterations(), 1000);
    }
}
