//! `submit`: one task (optionally waiting for it), or a JSON Lines file in batches.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::args::{Output, SubmitArgs};
use super::client::{CliError, Client, REQUEST_TIMEOUT};
use super::output::{cell, compact, line};
use super::tasks::{report_finished, wait_terminal};
use super::{Exit, value_name};

/// Most tasks in one `POST /v1/tasks/batch` (the API's limit).
const BATCH: usize = 1000;

/// `taskmesh submit`.
pub(crate) async fn submit(args: SubmitArgs) -> Result<Exit, CliError> {
    let defaults = defaults(&args);
    if let Some(file) = &args.batch {
        let tasks = read_batch(file, &defaults)?;
        let client = Client::new(&args.client)?;
        return submit_batch(&client, &tasks, args.client.output).await;
    }
    let kind = args
        .kind
        .clone()
        .ok_or_else(|| CliError::Usage("a task KIND (or --batch FILE) is required".into()))?;
    let mut task = defaults;
    task.insert("kind".into(), Value::String(kind));
    if let Some(params) = &args.params {
        task.insert("params".into(), parse_params(params)?);
    }
    if let Some(key) = &args.idempotency_key {
        task.insert("idempotency_key".into(), Value::String(key.clone()));
    }
    let client = Client::new(&args.client)?;
    let url = client.url(&["v1", "tasks"], &[]);
    let body = client
        .call(
            Method::POST,
            url,
            Some(&Value::Object(task)),
            REQUEST_TIMEOUT,
        )
        .await?
        .into_ok()?;
    let id = body["id"]
        .as_str()
        .ok_or_else(|| CliError::Unavailable(format!("no task id in the answer: {body}")))?
        .to_owned();
    if !args.wait {
        match args.client.output {
            Output::Json => line(&compact(&body)),
            Output::Text => line(&id),
        }
        return Ok(Exit::Success);
    }
    if args.client.output == Output::Text {
        line(&id);
    }
    let view = wait_terminal(&client, &id, None)
        .await?
        .ok_or_else(|| CliError::Unavailable("the wait ended without a deadline".into()))?;
    Ok(match args.client.output {
        Output::Json => report_finished(&view, Output::Json),
        Output::Text if view["status"] == "succeeded" => {
            line(&compact(&view["result"]));
            Exit::Success
        }
        Output::Text => {
            eprintln!(
                "taskmesh: task {id} {}: {}",
                cell(&view["status"]),
                cell(&view["error"])
            );
            Exit::TaskFailed
        }
    })
}

/// The fields of the flags that every submitted task gets (unless its line sets them).
fn defaults(args: &SubmitArgs) -> Map<String, Value> {
    let mut task = Map::new();
    if let Some(priority) = args.priority {
        task.insert("priority".into(), Value::String(value_name(priority)));
    }
    if let Some(class) = &args.class {
        task.insert("class".into(), Value::String(class.clone()));
    }
    if let Some(ms) = args.timeout_ms {
        task.insert("timeout_ms".into(), json!(ms));
    }
    if let Some(n) = args.max_retries {
        task.insert("max_retries".into(), json!(n));
    }
    task
}

/// `--params`: a JSON object, or `@FILE` holding one.
fn parse_params(params: &str) -> Result<Value, CliError> {
    let (text, origin) = match params.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("--params @{path}: {e}")))?,
            format!("@{path}"),
        ),
        None => (params.to_owned(), "JSON".to_owned()),
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("--params: {origin} is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(CliError::Usage(format!(
            "--params: {origin} is not a JSON object"
        )));
    }
    Ok(value)
}

/// The tasks of a JSON Lines file, each completed with `defaults`; all checked before
/// anything is sent.
fn read_batch(file: &Path, defaults: &Map<String, Value>) -> Result<Vec<Value>, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Usage(format!("--batch {}: {e}", file.display())))?;
    let mut tasks = Vec::new();
    for (n, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let mut task: Map<String, Value> = serde_json::from_str(text).map_err(|e| {
            CliError::Usage(format!(
                "{} line {}: not a JSON object: {e}",
                file.display(),
                n + 1
            ))
        })?;
        for (key, value) in defaults {
            task.entry(key.clone()).or_insert_with(|| value.clone());
        }
        tasks.push(Value::Object(task));
    }
    if tasks.is_empty() {
        return Err(CliError::Usage(format!(
            "--batch {}: no task",
            file.display()
        )));
    }
    Ok(tasks)
}

/// Sends `tasks` in batches of [`BATCH`]; prints each id in order. A refused batch stops
/// the run; the ids of the batches before it were printed.
async fn submit_batch(client: &Client, tasks: &[Value], output: Output) -> Result<Exit, CliError> {
    let progress = if std::io::stderr().is_terminal() {
        let bar =
            ProgressBar::with_draw_target(Some(tasks.len() as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} tasks, {eta} left") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let url = client.url(&["v1", "tasks", "batch"], &[]);
    for (chunk_index, chunk) in tasks.chunks(BATCH).enumerate() {
        let body = json!({ "tasks": chunk });
        let answer = client
            .call(Method::POST, url.clone(), Some(&body), REQUEST_TIMEOUT)
            .await
            .and_then(|reply| reply.into_ok())
            .map_err(|e| {
                progress.abandon();
                let first = chunk_index * BATCH;
                let note = format!(
                    "tasks {}–{} not submitted ({first} submitted before): ",
                    first + 1,
                    first + chunk.len()
                );
                match e {
                    CliError::Usage(m) => CliError::Usage(note + &m),
                    CliError::NotFound(m) => CliError::NotFound(note + &m),
                    CliError::Auth(m) => CliError::Auth(note + &m),
                    CliError::Unavailable(m) => CliError::Unavailable(note + &m),
                }
            })?;
        let ids = answer["ids"].as_array().cloned().unwrap_or_default();
        for id in &ids {
            match output {
                Output::Json => line(&compact(&json!({ "id": id }))),
                Output::Text => line(&cell(id)),
            }
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish();
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_must_be_a_json_object() {
        assert!(parse_params(r#"{"ms": 5}"#).is_ok());
        assert!(matches!(parse_params("{nope"), Err(CliError::Usage(_))));
        assert!(matches!(parse_params("[1]"), Err(CliError::Usage(_))));
        assert!(matches!(
            parse_params("@/no/such/file.json"),
            Err(CliError::Usage(_))
        ));
    }
}
