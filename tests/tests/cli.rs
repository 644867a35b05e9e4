//! The client subcommands of `taskmesh` (`submit`, `get`, `wait`, `ls`, `cancel`,
//! `cluster`, `stats`), run as processes against a real node: what they print and every
//! exit code of the table in their `--help`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, ensure};
use integration_tests::{ONE_WORKER, TestNode, free_port, metric_sum, taskmesh_bin};
use serde_json::{Value, json};
use tokio::time::Instant;

/// How long one CLI run may take.
const RUN_WITHIN: Duration = Duration::from_secs(60);

/// An id no node has.
const UNKNOWN_ID: &str = "01a203b7-6b67-700f-83de-8aa71ec60d3e";

/// Params of a small, quick Monte-Carlo pricing.
const OPTION: &str = r#"{"s0":100,"k":100,"r":0.05,"sigma":0.2,"t":1,"paths":10000,"seed":7}"#;

/// A finished CLI run.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `taskmesh ARGS` in `dir` with no `TASKMESH_*` variable but `env`, to its exit.
async fn taskmesh_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<Run> {
    let mut command = tokio::process::Command::new(taskmesh_bin()?);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TASKMESH_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    let output = tokio::time::timeout(RUN_WITHIN, command.output())
        .await
        .with_context(|| format!("taskmesh {args:?} did not exit within {RUN_WITHIN:?}"))??;
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!("taskmesh {args:?} → {run:?}");
    Ok(run)
}

/// Runs `taskmesh ARGS --url <node>` in a fresh directory, with the node's data
/// directory as `TASKMESH_DATA_DIR`: the CLI reads the node's `admin.key` there.
async fn taskmesh(node: &TestNode, args: &[&str]) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let url = node.url("");
    let mut all = args.to_vec();
    all.extend(["--url", url.as_str()]);
    let data_dir = node.data_dir.display().to_string();
    taskmesh_in(dir.path(), &[("TASKMESH_DATA_DIR", &data_dir)], &all).await
}

#[tokio::test]
async fn submit_wait_prints_the_price_and_exits_0() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    let run = taskmesh(
        &node,
        &["submit", "monte_carlo_option", "--params", OPTION, "--wait"],
    )
    .await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "the id, then the result: {run:?}");
    let result: Value = serde_json::from_str(lines[1])?;
    let price = result["price"].as_f64().context("no price")?;
    assert!((9.0..12.0).contains(&price), "{result}");
    assert_eq!(node.task(lines[0]).await?["status"], "succeeded");

    // The same with JSON output, and a @file for the params: the final task view.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("params.json");
    std::fs::write(&file, OPTION)?;
    let at_file = format!("@{}", file.display());
    let run = taskmesh(
        &node,
        &[
            "submit",
            "monte_carlo_option",
            "--params",
            &at_file,
            "--priority",
            "high",
            "--wait",
            "--output",
            "json",
        ],
    )
    .await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let view: Value = serde_json::from_str(run.stdout.trim())?;
    assert_eq!(view["status"], "succeeded");
    assert_eq!(view["priority"], "high");
    assert_eq!(view["result"]["price"].as_f64(), Some(price));

    // `get` prints it readably; `cluster` and `stats` describe the node.
    let id = view["id"].as_str().context("no id")?;
    let run = taskmesh(&node, &["get", id]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("status:   succeeded"), "{run:?}");
    assert!(run.stdout.contains("\"price\""), "{run:?}");
    let run = taskmesh(&node, &["cluster"]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("NODE"), "{run:?}");
    assert!(run.stdout.contains("closed"), "{run:?}");
    let run = taskmesh(&node, &["stats", "--output", "json"]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let stats: Value = serde_json::from_str(run.stdout.trim())?;
    assert_eq!(stats["submitted"], 2, "{stats}");
    // Gauges appear with the pool's first load sample, so only the shape is certain.
    assert!(stats["workers"].is_object(), "{stats}");
    Ok(())
}

#[tokio::test]
async fn a_failed_task_exits_1_and_is_listed_as_json_lines() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    let params = json!({"message": "x marks the spot", "permanent": true}).to_string();
    let run = taskmesh(&node, &["submit", "fail", "--params", &params, "--wait"]).await?;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("x marks the spot"), "{run:?}");
    let failed_id = run.stdout.trim().to_owned();
    node.submit(&json!({"kind": "noop"})).await?;

    let run = taskmesh(&node, &["wait", &failed_id]).await?;
    assert_eq!(run.code, Some(1), "{run:?}");

    let run = taskmesh(&node, &["ls", "--status", "failed", "--output", "json"]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let tasks: Vec<Value> = run
        .stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(tasks.len(), 1, "{run:?}");
    assert_eq!(tasks[0]["id"], failed_id.as_str());
    assert_eq!(tasks[0]["status"], "failed");

    // `get` of a failed task printed it: exit 0.
    let run = taskmesh(&node, &["get", &failed_id]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("x marks the spot"), "{run:?}");
    Ok(())
}

#[tokio::test]
async fn unknown_ids_exit_3_and_usage_errors_exit_2() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    for args in [
        &["get", UNKNOWN_ID][..],
        &["cancel", UNKNOWN_ID],
        &["wait", UNKNOWN_ID],
    ] {
        let run = taskmesh(&node, args).await?;
        assert_eq!(run.code, Some(3), "{args:?}: {run:?}");
        assert!(run.stderr.contains("not_found"), "{run:?}");
    }
    let bad: [&[&str]; 5] = [
        &["submit", "noop", "--params", "{not json"],
        &["submit", "noop", "--params", "@/no/such/file.json"],
        &["submit", "noop", "--priority", "urgent"],
        &["submit", "no_such_kind"],
        &["get", "not-a-uuid"],
    ];
    for args in bad {
        let run = taskmesh(&node, args).await?;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    ensure!(
        node.list("").await?.is_empty(),
        "a usage error created a task"
    );
    Ok(())
}

#[tokio::test]
async fn keys_made_with_the_cli_submit_but_cannot_manage_keys_and_revoke_exits_0()
-> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    // Created with the node's admin key, read from its data directory.
    let run = taskmesh(
        &node,
        &["keys", "create", "--name", "ci", "--scope", "submit"],
    )
    .await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let key = run.stdout.trim().to_owned();
    ensure!(
        key.starts_with("tm_") && key.len() == 48 && !run.stdout.contains(' '),
        "stdout is the whole key: {run:?}"
    );
    let key_id = key[3..15].to_owned();
    ensure!(
        !run.stderr.contains(&key[16..]),
        "the secret is on stdout only"
    );

    let url = node.url("");
    let with_key = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        all.extend(["--url".into(), url.clone(), "--api-key".into(), key.clone()]);
        all
    };
    let dir = tempfile::tempdir()?;
    let as_ci = async |args: &[&str]| {
        let all = with_key(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        taskmesh_in(dir.path(), &[], &all).await
    };
    let run = as_ci(&["submit", "noop"]).await?;
    assert_eq!(run.code, Some(0), "the ci key submits: {run:?}");
    let id = run.stdout.trim().to_owned();
    let run = as_ci(&["get", &id]).await?;
    assert_eq!(run.code, Some(0), "and reads its own task: {run:?}");
    for args in [
        &["keys", "ls"][..],
        &["keys", "create", "--name", "escalate", "--scope", "admin"],
        &["keys", "revoke", &key_id],
    ] {
        let run = as_ci(args).await?;
        assert_eq!(run.code, Some(4), "the ci key may not {args:?}: {run:?}");
        assert!(run.stderr.contains("forbidden"), "{run:?}");
    }

    let run = taskmesh(&node, &["keys", "ls", "--output", "json"]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let listed: Vec<Value> = run
        .stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(listed.len() == 2, "the admin key and ci: {listed:?}");
    ensure!(
        listed.iter().any(|k| k["id"] == key_id.as_str()
            && k["name"] == "ci"
            && k["scopes"] == json!(["submit"])),
        "{listed:?}"
    );
    ensure!(!run.stdout.contains(&key[16..]), "no secret listed");
    let run = taskmesh(&node, &["keys", "ls"]).await?;
    assert!(run.stdout.starts_with("ID"), "a table: {run:?}");

    let run = taskmesh(
        &node,
        &[
            "keys",
            "create",
            "--name",
            "brief",
            "--scope",
            "read",
            "--scope",
            "submit",
            "--expires-in",
            "30d",
            "--output",
            "json",
        ],
    )
    .await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let created: Value = serde_json::from_str(run.stdout.trim())?;
    ensure!(
        created["scopes"] == json!(["submit", "read"]) && created["expires_at"].is_string(),
        "{created}"
    );
    ensure!(
        created["key"]
            .as_str()
            .is_some_and(|k| k.starts_with("tm_")),
        "{created}"
    );
    let run = taskmesh(
        &node,
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--scope",
            "read",
            "--expires-in",
            "30",
        ],
    )
    .await?;
    assert_eq!(run.code, Some(2), "a lifetime without a unit: {run:?}");

    let run = taskmesh(&node, &["keys", "revoke", &key_id]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.trim(), format!("{key_id}  revoked"));
    let run = taskmesh(&node, &["keys", "revoke", "nosuchkey000"]).await?;
    assert_eq!(run.code, Some(3), "an unknown key id: {run:?}");
    integration_tests::eventually(
        Duration::from_secs(5),
        "the revoked key is refused",
        async || {
            let run = as_ci(&["get", &id]).await?;
            Ok((run.code == Some(4)).then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn cancel_of_a_queued_task_exits_0_and_wait_times_out_with_124() -> anyhow::Result<()> {
    let node = TestNode::start_temp(ONE_WORKER).await?;
    let busy = node
        .submit(&json!({"kind": "sleep", "params": {"ms": 60_000}}))
        .await?;
    node.wait_status(&busy, "running", Duration::from_secs(20))
        .await?;

    let started = Instant::now();
    let run = taskmesh(&node, &["wait", &busy, "--timeout-secs", "1"]).await?;
    assert_eq!(run.code, Some(124), "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "{run:?}");

    let run = taskmesh(&node, &["submit", "sleep", "--params", r#"{"ms": 10}"#]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    let queued = run.stdout.trim().to_owned();
    assert_eq!(node.task(&queued).await?["status"], "queued");
    let run = taskmesh(&node, &["cancel", &queued]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("cancelled"), "{run:?}");
    assert_eq!(node.task(&queued).await?["status"], "cancelled");

    // `wait` on a cancelled task: exit 1. Cancelling it again: 409, exit 2.
    let run = taskmesh(&node, &["wait", &queued]).await?;
    assert_eq!(run.code, Some(1), "{run:?}");
    let run = taskmesh(&node, &["cancel", &queued]).await?;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("already_terminal"), "{run:?}");
    Ok(())
}

#[tokio::test]
async fn connection_refused_exits_5_after_retrying() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("http://127.0.0.1:{}", free_port()?);
    let started = Instant::now();
    let run = taskmesh_in(dir.path(), &[], &["get", UNKNOWN_ID, "--url", &url]).await?;
    assert_eq!(run.code, Some(5), "{run:?}");
    assert_eq!(run.stderr.matches("retrying").count(), 2, "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "{run:?}");
    Ok(())
}

#[tokio::test]
async fn a_batch_file_of_2500_lines_creates_2500_tasks() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("tasks.jsonl");
    let mut lines = String::new();
    for i in 0..2500 {
        lines.push_str(&json!({"kind": "echo", "params": {"value": i}}).to_string());
        lines.push('\n');
    }
    std::fs::write(&file, lines)?;
    let path = file.display().to_string();
    let run = taskmesh(&node, &["submit", "--batch", &path, "--priority", "low"]).await?;
    assert_eq!(run.code, Some(0), "{run:?}");
    // No terminal: no progress bar.
    assert!(run.stderr.is_empty(), "{run:?}");
    let ids: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(ids.len(), 2500);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 2500);
    let submitted = metric_sum(&node.metrics().await?, "taskmesh_tasks_submitted_total");
    assert_eq!(submitted, 2500.0);
    // In order, with the flag's priority.
    let last = node.task(ids[2499]).await?;
    assert_eq!(last["params"]["value"], 2499);
    assert_eq!(last["priority"], "low");
    Ok(())
}

/// A server that answers every request with `status` (a status line and headers) and an
/// error `code`, and records the request heads.
fn refusing_server(
    status: &'static str,
    code: &'static str,
) -> anyhow::Result<(String, Arc<Mutex<Vec<String>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let heads = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&heads);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(String::from_utf8_lossy(&head).into_owned());
            let body = json!({"error": {"code": code, "message": "no", "request_id": "r"}});
            let body = body.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok((url, heads))
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token_and_never_printed() -> anyhow::Result<()> {
    let (url, heads) = refusing_server("401 Unauthorized", "unauthorized")?;
    let dir = tempfile::tempdir()?;
    let key = "tm-secret-key-3f9a";
    let from_file = "tm-key-from-the-data-dir";
    let data_dir = dir.path().join("taskmesh-data");
    std::fs::create_dir(&data_dir)?;
    std::fs::write(data_dir.join("admin.key"), format!("{from_file}\n"))?;

    let runs = [
        taskmesh_in(
            dir.path(),
            &[],
            &["get", UNKNOWN_ID, "--url", &url, "--api-key", key],
        )
        .await?,
        taskmesh_in(
            dir.path(),
            &[("TASKMESH_API_KEY", key), ("TASKMESH_URL", &url)],
            &["ls"],
        )
        .await?,
        // Neither flag nor variable: ./taskmesh-data/admin.key.
        taskmesh_in(dir.path(), &[], &["stats", "--url", &url]).await?,
    ];
    for run in &runs {
        assert_eq!(run.code, Some(4), "{run:?}");
        assert!(run.stderr.contains("unauthorized"), "{run:?}");
        for secret in [key, from_file] {
            assert!(!run.stdout.contains(secret), "{run:?}");
            assert!(!run.stderr.contains(secret), "{run:?}");
        }
    }
    let heads = heads.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(heads.len(), 3, "{heads:?}");
    let bearer = |head: &str| {
        head.lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("authorization")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    assert_eq!(bearer(&heads[0]), format!("Bearer {key}"));
    assert_eq!(bearer(&heads[1]), format!("Bearer {key}"));
    assert_eq!(bearer(&heads[2]), format!("Bearer {from_file}"));
    Ok(())
}

#[tokio::test]
async fn rate_limits_and_unavailability_exit_5_after_honouring_retry_after() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (url, heads) = refusing_server("429 Too Many Requests\r\nretry-after: 1", "rate_limited")?;
    let started = Instant::now();
    let run = taskmesh_in(dir.path(), &[], &["submit", "noop", "--url", &url]).await?;
    assert_eq!(run.code, Some(5), "{run:?}");
    assert_eq!(run.stderr.matches("retrying in 1s").count(), 2, "{run:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "{run:?}");
    assert_eq!(heads.lock().unwrap_or_else(|e| e.into_inner()).len(), 3);

    // A submission whose outcome is unknown is not sent again: it could run twice.
    let (url, heads) = refusing_server("503 Service Unavailable", "outcome_unknown")?;
    let run = taskmesh_in(dir.path(), &[], &["submit", "noop", "--url", &url]).await?;
    assert_eq!(run.code, Some(5), "{run:?}");
    assert!(run.stderr.contains("outcome_unknown"), "{run:?}");
    assert_eq!(heads.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);
    Ok(())
}
