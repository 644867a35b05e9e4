//! `get`, `wait`, `ls` and `cancel`: reading and cancelling tasks.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::time::Instant;

use super::args::{CancelArgs, GetArgs, LsArgs, Output, WaitArgs};
use super::client::{CliError, Client, REQUEST_TIMEOUT};
use super::output::{cell, compact, line, table, task_lines};
use super::{Exit, value_name};

/// The longest long-poll asked of the node (it caps `wait_ms` at 60 s and at its
/// request timeout minus 1 s).
const POLL: Duration = Duration::from_secs(30);

/// Tries of a cancel that the node answered `409 holder_changed` (the task moved while
/// it was being cancelled; the API says to retry).
const CANCEL_TRIES: u32 = 3;

/// Whether a status is terminal.
pub(crate) fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// Long-polls task `id` until it is terminal (its view) or `deadline` passes (`None`).
pub(crate) async fn wait_terminal(
    client: &Client,
    id: &str,
    deadline: Option<Instant>,
) -> Result<Option<Value>, CliError> {
    loop {
        let poll = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                left.min(POLL)
            }
            None => POLL,
        };
        let url = client.url(
            &["v1", "tasks", id],
            &[("wait_ms", poll.as_millis().to_string())],
        );
        let view = client
            .call(Method::GET, url, None, poll + REQUEST_TIMEOUT)
            .await?
            .into_ok()?;
        if view["status"].as_str().is_some_and(is_terminal) {
            return Ok(Some(view));
        }
    }
}

/// `taskmesh get ID`: prints the task, exit 0 whatever its status.
pub(crate) async fn get(args: GetArgs) -> Result<Exit, CliError> {
    let client = Client::new(&args.client)?;
    let view = client.get(&["v1", "tasks", &args.id], &[]).await?;
    match args.client.output {
        Output::Json => line(&compact(&view)),
        Output::Text => line(&task_lines(&view)),
    }
    Ok(Exit::Success)
}

/// The outcome of a finished task: printed, and `TaskFailed` unless it succeeded.
pub(crate) fn report_finished(view: &Value, output: Output) -> Exit {
    let status = view["status"].as_str().unwrap_or("");
    match output {
        Output::Json => line(&compact(view)),
        Output::Text => {
            let id = cell(&view["id"]);
            if status == "succeeded" {
                line(&format!("{id}  succeeded  {}", compact(&view["result"])));
            } else {
                line(&format!("{id}  {status}  {}", cell(&view["error"])));
            }
        }
    }
    if status == "succeeded" {
        Exit::Success
    } else {
        Exit::TaskFailed
    }
}

/// `taskmesh wait ID...`: long-polls each task until terminal.
pub(crate) async fn wait(args: WaitArgs) -> Result<Exit, CliError> {
    let client = Client::new(&args.client)?;
    let deadline = args
        .timeout_secs
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    let mut exit = Exit::Success;
    for id in &args.ids {
        match wait_terminal(&client, id, deadline).await? {
            Some(view) => {
                if report_finished(&view, args.client.output) == Exit::TaskFailed {
                    exit = Exit::TaskFailed;
                }
            }
            None => {
                eprintln!("taskmesh: task {id} not finished after the --timeout-secs");
                return Ok(Exit::TimedOut);
            }
        }
    }
    Ok(exit)
}

/// `taskmesh ls`: recent tasks, newest first.
pub(crate) async fn ls(args: LsArgs) -> Result<Exit, CliError> {
    let client = Client::new(&args.client)?;
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(status) = args.status {
        query.push(("status", value_name(status)));
    }
    if let Some(kind) = &args.kind {
        query.push(("kind", kind.clone()));
    }
    let body = client.get(&["v1", "tasks"], &query).await?;
    let tasks = body["tasks"].as_array().cloned().unwrap_or_default();
    match args.client.output {
        Output::Json => tasks.iter().for_each(|t| line(&compact(t))),
        Output::Text => {
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| {
                    ["id", "kind", "status", "attempts", "created_at"]
                        .iter()
                        .map(|f| cell(&t[*f]))
                        .collect()
                })
                .collect();
            line(&table(
                &["ID", "KIND", "STATUS", "ATTEMPTS", "CREATED"],
                &rows,
            ));
        }
    }
    Ok(Exit::Success)
}

/// `taskmesh cancel ID`.
pub(crate) async fn cancel(args: CancelArgs) -> Result<Exit, CliError> {
    let client = Client::new(&args.client)?;
    let url = client.url(&["v1", "tasks", &args.id], &[]);
    let mut tries = 0;
    let body = loop {
        tries += 1;
        let reply = client
            .call(Method::DELETE, url.clone(), None, REQUEST_TIMEOUT)
            .await?;
        if reply.body["error"]["code"] == "holder_changed" && tries < CANCEL_TRIES {
            continue;
        }
        break reply.into_ok()?;
    };
    match args.client.output {
        Output::Json => line(&compact(&body)),
        Output::Text if body["cancel"] == "requested" => {
            line(&format!("{}  cancel requested (running)", args.id));
        }
        Output::Text => line(&format!("{}  {}", args.id, cell(&body["status"]))),
    }
    Ok(Exit::Success)
}
