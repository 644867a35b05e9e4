//! `chaos`: runs a scenario against local processes or a compose project and writes its
//! report. Exits 1 when an invariant is violated, 2 when the run could not be made.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chaos::backend::Backend;
use chaos::backend::compose::{Compose, ComposeConfig};
use chaos::backend::loopback::{Loopback, LoopbackConfig, sibling_binary};
use chaos::client::Api;
use chaos::runner::{RunOptions, Runner};
use chaos::scenario::Scenario;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "chaos",
    about = "Kill, pause and partition taskmesh nodes; prove nothing accepted is lost"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario (a file, or the name of one in chaos/scenarios/).
    Run(Box<RunArgs>),
    /// List the shipped scenarios.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendKind {
    /// taskmesh processes and a redis-server on 127.0.0.1.
    Loopback,
    /// compose/docker-compose.yml under a project of its own.
    Compose,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario file, or a name from chaos/scenarios/ (e.g. `kill-random`).
    scenario: String,
    /// Where to run it.
    #[arg(long, value_enum, default_value = "loopback")]
    backend: BackendKind,
    /// Seed of every random choice; the report names it, and the same seed replays the
    /// same targets and fault schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Length of `random_faults` schedules (the soak), in seconds.
    #[arg(long)]
    duration_secs: Option<f64>,
    /// How long accepted tasks may take to finish after the faults.
    #[arg(long, default_value_t = 180.0)]
    settle_secs: f64,
    /// Where the JSON and Markdown reports go.
    #[arg(long, default_value = "chaos-reports")]
    out: PathBuf,
    /// The taskmesh binary (loopback; default: next to this one).
    #[arg(long)]
    taskmesh_bin: Option<PathBuf>,
    /// Extra flag for every loopback node (repeat for several).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_args: Vec<String>,
    /// Compose command (compose backend).
    #[arg(long, default_value = "docker compose")]
    compose: String,
    /// Compose file (compose backend).
    #[arg(long, default_value = "compose/docker-compose.yml")]
    compose_file: PathBuf,
    /// Compose project name (compose backend).
    #[arg(long, default_value = "taskmesh-chaos")]
    project: String,
    /// Host port range of the nodes (compose backend).
    #[arg(long, default_value = "18481-18490")]
    ports: String,
    /// Leave the compose project running afterwards.
    #[arg(long)]
    keep: bool,
}

fn scenario_path(name: &str) -> PathBuf {
    let path = PathBuf::from(name);
    if path.exists() {
        path
    } else {
        chaos::scenarios_dir().join(format!("{name}.toml"))
    }
}

fn backend(args: &RunArgs, api: Api) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match args.backend {
        BackendKind::Loopback => {
            let bin = match &args.taskmesh_bin {
                Some(bin) => bin.clone(),
                None => sibling_binary()?,
            };
            let work_dir = tempfile::Builder::new()
                .prefix("taskmesh-chaos-")
                .tempdir()?
                .keep();
            Box::new(Loopback::new(
                LoopbackConfig {
                    bin,
                    work_dir,
                    node_args: args.node_args.clone(),
                },
                api,
            ))
        }
        BackendKind::Compose => Box::new(Compose::new(
            ComposeConfig {
                command: args.compose.split_whitespace().map(str::to_owned).collect(),
                project: args.project.clone(),
                file: std::path::absolute(&args.compose_file)?,
                ports: args.ports.clone(),
                keep: args.keep,
            },
            api,
        )),
    })
}

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let scenario = Scenario::load(&scenario_path(&args.scenario))?;
    let api = Api::new(Duration::from_secs(2))?;
    let options = RunOptions {
        seed: args.seed,
        soak_secs: args.duration_secs,
        settle_secs: args.settle_secs,
    };
    let report = Runner::run(&scenario, backend(&args, api)?, &options).await?;
    let (json, md) = report.write(&args.out).context("writing the report")?;
    println!("{}", report.markdown());
    println!("report: {} and {}", md.display(), json.display());
    Ok(report.passed)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHAOS_LOG")
                .unwrap_or_else(|_| "chaos=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Cmd::List => {
            let mut names: Vec<String> = std::fs::read_dir(chaos::scenarios_dir())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".toml")
                        .map(str::to_owned)
                })
                .collect();
            names.sort();
            for name in names {
                let about = Scenario::load(&scenario_path(&name)).map(|s| s.about);
                println!(
                    "{name:24} {}",
                    about.unwrap_or_else(|e| format!("(invalid: {e:#})"))
                );
            }
            ExitCode::SUCCESS
        }
        Cmd::Run(args) => match run(*args).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("chaos: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
