//! Accepted tasks survive the process: SIGKILL mid-run, and a clean SIGTERM.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use integration_tests::{ONE_WORKER, TestNode, eventually, metric};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// Deadline of any single wait in these tests (generous: CI machines are slow).
const WITHIN: Duration = Duration::from_secs(120);

/// How long a node may take to exit after SIGTERM once its grace period is over. The
/// flag promises running tasks get `--shutdown-grace-secs` "before the node exits
/// anyway"; this bound is far above the time the rest of the shutdown takes.
const EXIT_AFTER_GRACE: Duration = Duration::from_secs(20);

fn one_worker(grace_secs: &str) -> Vec<&str> {
    [ONE_WORKER, &["--shutdown-grace-secs", grace_secs]].concat()
}

/// Submits `count` copies of `task`, `parallel` requests at a time; returns the ids in
/// submission order.
async fn submit_many(
    node: &TestNode,
    task: &Value,
    count: usize,
    parallel: usize,
) -> anyhow::Result<Vec<String>> {
    let (url, task) = (node.url("/v1/tasks"), Arc::new(task.clone()));
    let mut ids = vec![String::new(); count];
    let mut inflight = JoinSet::new();
    for i in 0..count {
        if inflight.len() == parallel
            && let Some(done) = inflight.join_next().await
        {
            let (j, id): (usize, String) = done??;
            ids[j] = id;
        }
        let (http, url, task) = (node.http.clone(), url.clone(), Arc::clone(&task));
        inflight.spawn(async move {
            let r = http.post(url).json(&*task).send().await?;
            anyhow::ensure!(r.status() == 202, "submit answered {}", r.status());
            let body: Value = r.json().await?;
            let id = body["id"].as_str().unwrap_or_default().to_owned();
            anyhow::Ok((i, id))
        });
    }
    while let Some(done) = inflight.join_next().await {
        let (j, id) = done??;
        ids[j] = id;
    }
    Ok(ids)
}

#[tokio::test]
async fn sigkill_mid_run_loses_no_task_and_reruns_interrupted_ones() -> anyhow::Result<()> {
    let mut node =
        TestNode::start_temp(&["--workers", "4", "--min-workers", "4", "--max-workers", "4"])
            .await?;
    let sleep = json!({ "kind": "sleep", "params": { "ms": 200 } });
    let ids = submit_many(&node, &sleep, 200, 16).await?;
    // Probes that are certainly mid-run when the node dies: they jump the queue and run
    // for seconds, while the others take 200 ms each. The second may not be retried.
    let probe = |max_retries: u32| {
        json!({
            "kind": "sleep", "params": { "ms": 3_000 }, "priority": "high",
            "max_retries": max_retries,
        })
    };
    let last_chance = node.submit(&probe(0)).await?;
    let probe = node.submit(&probe(3)).await?;
    for id in [&probe, &last_chance] {
        let running = node.wait_status(id, "running", WITHIN).await?;
        assert_eq!(running["attempts"], 1, "{running}");
    }
    let queued = node.list("status=queued&limit=1").await?;
    assert!(
        !queued.is_empty(),
        "the node must die with work still queued"
    );

    node.kill();
    node.restart().await?;

    let views = node.wait_all_terminal(&ids, WITHIN).await?;
    for view in &views {
        assert_eq!(view["status"], "succeeded", "{view}");
        assert!(view["attempts"].as_u64().is_some_and(|n| n >= 1), "{view}");
    }
    let probe = node.wait_terminal(&probe, WITHIN).await?;
    assert_eq!(probe["status"], "succeeded", "{probe}");
    assert_eq!(probe["attempts"], 2, "interrupted, then run again: {probe}");
    let last_chance = node.wait_terminal(&last_chance, WITHIN).await?;
    assert_eq!(last_chance["status"], "failed", "{last_chance}");
    assert_eq!(last_chance["attempts"], 1, "{last_chance}");
    let error = last_chance["error"].as_str().unwrap_or_default();
    assert!(error.contains("node stopped"), "{last_chance}");

    // Recovery re-ran tasks; it did not duplicate them or finish any twice.
    let all = node.list("limit=1000").await?;
    assert_eq!(all.len(), 202);
    let unique: HashSet<&str> = all.iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(unique.len(), 202);
    let duplicates = metric(
        &node.metrics().await?,
        "taskmesh_duplicate_completions_total",
        &[],
    );
    assert_eq!(duplicates, Some(0.0));
    Ok(())
}

#[tokio::test]
async fn sigterm_finishes_running_tasks_and_keeps_queued_ones() -> anyhow::Result<()> {
    let mut node = TestNode::start_temp(&one_worker("30")).await?;
    let keyed = node
        .submit(&json!({ "kind": "noop", "idempotency_key": "survives" }))
        .await?;
    node.wait_terminal(&keyed, WITHIN).await?;

    let running = node
        .submit(&json!({ "kind": "sleep", "params": { "ms": 1_000 } }))
        .await?;
    node.wait_status(&running, "running", WITHIN).await?;
    let mut queued = Vec::new();
    for value in 0..5 {
        queued.push(
            node.submit(&json!({ "kind": "echo", "params": { "value": value } }))
                .await?,
        );
    }

    node.signal(Signal::SIGTERM)?;
    let code = node.wait_exit(WITHIN).await?;
    assert_eq!(code, Some(0), "a clean shutdown exits 0");

    node.restart().await?;
    // The running task was given its grace period and finished before the exit...
    let view = node.task(&running).await?;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["attempts"], 1, "{view}");
    // ...and the queued ones waited for the restart.
    for (value, id) in queued.iter().enumerate() {
        let view = node.wait_terminal(id, WITHIN).await?;
        assert_eq!(view["status"], "succeeded", "{view}");
        assert_eq!(view["attempts"], 1, "{view}");
        assert_eq!(view["result"]["value"], value);
    }
    // Records and idempotency keys survive too.
    assert_eq!(node.task(&keyed).await?["status"], "succeeded");
    let again = node
        .post(
            "/v1/tasks",
            &json!({ "kind": "noop", "idempotency_key": "survives" }),
        )
        .await?;
    assert_eq!((again.status, &again.body["id"]), (200, &json!(keyed)));
    Ok(())
}

#[tokio::test]
async fn sigterm_exits_soon_after_the_grace_period_even_if_a_task_still_runs() -> anyhow::Result<()>
{
    let mut node = TestNode::start_temp(&one_worker("1")).await?;
    let long = node
        .submit(&json!({ "kind": "sleep", "params": { "ms": 600_000 } }))
        .await?;
    node.wait_status(&long, "running", WITHIN).await?;

    node.signal(Signal::SIGTERM)?;
    let code = node.wait_exit(EXIT_AFTER_GRACE).await?;
    assert_eq!(code, Some(0));

    // The interrupted task is run again after the restart: its record still says
    // `running` from the first attempt until the second has run long enough (25 ms) to
    // be recorded, so wait for the second attempt's own record.
    node.restart().await?;
    let view = eventually(WITHIN, "the second attempt is recorded", || async {
        let view = node.task(&long).await?;
        Ok((view["attempts"] == 2).then_some(view))
    })
    .await?;
    assert_eq!(view["status"], "running", "{view}");
    let answer = node.delete(&format!("/v1/tasks/{long}")).await?;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(
        node.wait_terminal(&long, WITHIN).await?["status"],
        "cancelled"
    );
    Ok(())
}

#[tokio::test]
async fn a_task_that_keeps_killing_its_node_is_failed_after_its_retries() -> anyhow::Result<()> {
    let mut node = TestNode::start_temp(ONE_WORKER).await?;
    // The node may abort before it answers the submission: the idempotency key finds the
    // task again after the restart (200 with the first task's id).
    let task = json!({"kind": "abort", "params": {}, "max_retries": 1, "idempotency_key": "k"});
    let mut id: Option<String> = None;
    let mut crashes = 0;
    // Each run takes the process down; each restart runs it again until its attempts are
    // used up, when the recovery records it failed instead.
    let failed = loop {
        ensure!(crashes <= 8, "still crash-looping after {crashes} crashes");
        if node.pid().is_none() && node.restart().await.is_err() {
            node.kill(); // it died before it reported ready: one more crash
            crashes += 1;
            continue;
        }
        if id.is_none() {
            match node.post("/v1/tasks", &task).await {
                Ok(a) if a.status == 202 || a.status == 200 => {
                    id = a.body["id"].as_str().map(str::to_owned);
                }
                Ok(a) => anyhow::bail!("submit answered {}: {}", a.status, a.body),
                Err(_) => {} // the node aborted before answering
            }
        }
        // Now either the node dies (the task ran again) or the task is failed.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let seen_failed = loop {
            if let Ok(code) = node.wait_exit(Duration::from_millis(100)).await {
                ensure!(
                    code.is_none(),
                    "the node exited with {code:?} instead of aborting"
                );
                break None;
            }
            if let Some(id) = &id
                && let Ok(view) = node.task(id).await
                && view["status"] == "failed"
            {
                break Some(view);
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "neither a crash nor a failed task within 60 s"
            );
        };
        match seen_failed {
            Some(view) => break view,
            None => crashes += 1,
        }
    };
    eprintln!("failed after {crashes} crashes: {failed}");
    ensure!(failed["attempts"].as_u64() == Some(2), "{failed}");
    // The node survives the last one and keeps working.
    let ok = node.submit(&json!({"kind": "noop"})).await?;
    ensure!(node.wait_terminal(&ok, Duration::from_secs(60)).await?["status"] == "succeeded");
    Ok(())
}
