//! The docs, run as printed: the commands and outputs that `README.md` and `docs/*.md`
//! quote are checked against the real binary, so a changed message or flag fails here
//! instead of misleading a reader.
//!
//! - every ` ```text ` block that starts with `$ taskmesh …` is run, and the binary must
//!   exit with an error whose stderr holds the rest of the block, line for line;
//! - the flags table of `docs/operations.md` lists exactly the flags (and environment
//!   variables) of `taskmesh node --help`;
//! - a `--log-format json` line logged inside an actor parses as JSON with the actor's
//!   name in `span.actor`, as `docs/operations.md` shows.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use integration_tests::{free_port, taskmesh_bin};
use serde_json::Value;

/// The documents whose quoted commands are checked, with their text.
const DOCS: &[(&str, &str)] = &[
    ("README.md", include_str!("../../README.md")),
    (
        "docs/operations.md",
        include_str!("../../docs/operations.md"),
    ),
    ("docs/deploy.md", include_str!("../../docs/deploy.md")),
    ("docs/api.md", include_str!("../../docs/api.md")),
    (
        "docs/architecture.md",
        include_str!("../../docs/architecture.md"),
    ),
    ("docs/store.md", include_str!("../../docs/store.md")),
    ("docs/extending.md", include_str!("../../docs/extending.md")),
];

/// How long a command that must fail at start may take.
const EXIT_WITHIN: Duration = Duration::from_secs(20);

/// A quoted shell session: the command after `$ ` and the output lines after it.
#[derive(Debug)]
struct Quoted {
    doc: &'static str,
    command: String,
    output: Vec<String>,
}

/// Every ` ```text ` block of `text` whose first line is `$ taskmesh …`, with the
/// block's indentation (a block inside a list item) removed.
fn quoted_runs(doc: &'static str, text: &str) -> Vec<Quoted> {
    let mut found = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        if line.trim_start() != "```text" {
            continue;
        }
        let block: Vec<String> = lines
            .by_ref()
            .take_while(|l| l.trim_start() != "```")
            .map(|l| l.get(indent..).unwrap_or("").to_owned())
            .collect();
        if let Some((first, rest)) = block.split_first()
            && let Some(command) = first.strip_prefix("$ taskmesh ")
        {
            found.push(Quoted {
                doc,
                command: command.to_owned(),
                output: rest.to_vec(),
            });
        }
    }
    found
}

/// The `taskmesh` binary with `args`, in an environment without any `TASKMESH_*`
/// variable (the docs' commands assume none is set) and with a fresh data directory.
fn taskmesh(args: &[&str]) -> anyhow::Result<Command> {
    let mut command = Command::new(taskmesh_bin()?);
    command.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TASKMESH_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    // The docs quote errors without anyhow's backtrace.
    command
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0");
    Ok(command)
}

/// Kills the process when dropped, so a failing test leaves nothing behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `args` to its exit; its exit code and stderr.
fn run_to_exit(args: &[&str], dir: &std::path::Path) -> anyhow::Result<(Option<i32>, String)> {
    let child = taskmesh(args)?
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning taskmesh")?;
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + EXIT_WITHIN;
    let status = loop {
        if let Some(status) = child.0.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            bail!(
                "`taskmesh {}` still runs after {EXIT_WITHIN:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.0.stderr.take() {
        pipe.read_to_string(&mut stderr)?;
    }
    Ok((status.code(), stderr))
}

#[test]
fn every_quoted_error_is_what_the_binary_prints() -> anyhow::Result<()> {
    let runs: Vec<Quoted> = DOCS
        .iter()
        .flat_map(|(doc, text)| quoted_runs(doc, text))
        .collect();
    // The flag check, the cookie and the store of docs/operations.md at least.
    ensure!(runs.len() >= 3, "too few quoted runs found: {runs:#?}");
    let dir = tempfile::tempdir()?;
    for run in &runs {
        let args: Vec<&str> = run.command.split_whitespace().collect();
        let (code, stderr) = run_to_exit(&args, dir.path())?;
        ensure!(
            code.is_some_and(|c| c != 0),
            "{}: `taskmesh {}` exited with {code:?}, not an error",
            run.doc,
            run.command
        );
        let printed: Vec<&str> = stderr.lines().collect();
        let quoted: Vec<&str> = run.output.iter().map(String::as_str).collect();
        ensure!(
            printed
                .windows(quoted.len())
                .any(|w| w == quoted.as_slice()),
            "{}: `taskmesh {}` printed\n{stderr}\nbut the doc quotes\n{}",
            run.doc,
            run.command,
            quoted.join("\n")
        );
    }
    Ok(())
}

/// `--flag` and its `TASKMESH_*` variable in each row of the flags table of
/// docs/operations.md (rows of the form ``| `--flag` | `ENV` | …``).
fn documented_flags() -> BTreeSet<(String, String)> {
    let (_, operations) = DOCS
        .iter()
        .find(|(doc, _)| *doc == "docs/operations.md")
        .copied()
        .unwrap_or_default();
    operations
        .lines()
        .filter_map(|line| {
            let mut cells = line.split('|').map(|c| c.trim().trim_matches('`'));
            let _ = cells.next()?;
            let flag = cells.next()?;
            let env = cells.next()?;
            (flag.starts_with("--") && env.starts_with("TASKMESH_"))
                .then(|| (flag.to_owned(), env.to_owned()))
        })
        .collect()
}

/// `--flag` and its `[env: TASKMESH_*=…]` from `taskmesh node --help`.
fn help_flags(help: &str) -> BTreeSet<(String, String)> {
    let mut flags = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--") || trimmed.starts_with('-') && trimmed.contains(", --") {
            let flag = trimmed
                .split(|c: char| c.is_whitespace() || c == '=' || c == '<')
                .find(|w| w.starts_with("--"))
                .map(str::to_owned);
            current = flag;
        }
        if let (Some(flag), Some(at)) = (&current, line.find("[env: ")) {
            let env = line[at + "[env: ".len()..]
                .split(['=', ']'])
                .next()
                .unwrap_or_default();
            flags.insert((flag.clone(), env.to_owned()));
        }
    }
    flags
}

#[test]
fn the_flags_table_lists_exactly_the_flags_of_the_help() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = taskmesh(&["node", "--help"])?
        .current_dir(dir.path())
        .output()?;
    ensure!(out.status.success(), "`taskmesh node --help` failed");
    let help = String::from_utf8(out.stdout)?;
    let in_help = help_flags(&help);
    ensure!(in_help.len() >= 20, "too few flags parsed from:\n{help}");
    let documented = documented_flags();
    let undocumented: Vec<_> = in_help.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&in_help).collect();
    ensure!(
        undocumented.is_empty() && unknown.is_empty(),
        "docs/operations.md's flags table is out of date.\n\
         In --help, not in the table: {undocumented:?}\n\
         In the table, not in --help: {unknown:?}"
    );
    Ok(())
}

#[test]
fn a_json_log_line_names_the_actor_it_was_logged_in() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let data = dir.path().join("data");
    let data = data.to_str().context("temp path is not UTF-8")?;
    let args = [
        "node",
        "--listen",
        &listen,
        "--data-dir",
        data,
        "--node-id",
        "docs-json",
        "--log-format",
        "json",
        "--log",
        "info",
    ];
    let mut child = KillOnDrop(
        taskmesh(&args)?
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning taskmesh")?,
    );
    let stdout = child.0.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let in_actor = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            bail!(
                "no log line with span.actor within 30 s; lines:\n{}",
                seen.join("\n")
            );
        };
        let parsed: Value = serde_json::from_str(&line)
            .with_context(|| format!("a log line is not JSON: {line}"))?;
        ensure!(parsed.is_object(), "a log line is not an object: {line}");
        seen.push(line);
        // Named actors only: a pool's Workers have no name.
        if parsed["span"]["actor"].is_string() {
            break parsed;
        }
    };
    let actor = in_actor["span"]["actor"].as_str().unwrap_or_default();
    ensure!(
        in_actor["span"]["name"] == "Actor",
        "not an actor's span: {in_actor}"
    );
    let roles = [
        "supervisor",
        "dispatcher",
        "worker-pool",
        "health-monitor",
        "autoscaler",
        "http-ingress",
        "endpoint",
        "heartbeat",
    ];
    ensure!(
        actor
            .strip_prefix("docs-json/")
            .is_some_and(|role| roles.contains(&role)),
        "span.actor is not one of this node's actors: {in_actor}"
    );
    Ok(())
}
