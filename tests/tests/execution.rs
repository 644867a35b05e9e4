//! How tasks run: cancellation, timeouts, retries, worker panics, admission control and
//! priorities, each against a real node.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use integration_tests::{ONE_WORKER, TestNode, eventually, metric};
use serde_json::{Value, json};

/// Deadline of any single wait in these tests (generous: CI machines are slow).
const WITHIN: Duration = Duration::from_secs(60);

fn text<'a>(view: &'a Value, field: &str) -> &'a str {
    view[field].as_str().unwrap_or_default()
}

/// Occupies the single worker of a [`ONE_WORKER`] node until the task is cancelled.
async fn block_the_worker(node: &TestNode) -> anyhow::Result<String> {
    let blocker = node
        .submit(&json!({ "kind": "sleep", "params": { "ms": 600_000 } }))
        .await?;
    node.wait_status(&blocker, "running", WITHIN).await?;
    Ok(blocker)
}

/// Waits until `name{labels}` in `/metrics` is at least `min`; returns its value.
async fn metric_at_least(
    node: &TestNode,
    name: &str,
    labels: &[(&str, &str)],
    min: f64,
) -> anyhow::Result<f64> {
    eventually(WITHIN, &format!("{name}{labels:?} ≥ {min}"), || async {
        let value = metric(&node.metrics().await?, name, labels).unwrap_or(0.0);
        Ok((value >= min).then_some(value))
    })
    .await
}

#[tokio::test]
async fn cancelling_queued_and_running_tasks() -> anyhow::Result<()> {
    let node = TestNode::start_temp(ONE_WORKER).await?;
    let sleeper = block_the_worker(&node).await?;
    let noop = node.submit(&json!({ "kind": "noop" })).await?;
    assert_eq!(node.task(&noop).await?["status"], "queued");

    // Queued: removed at once.
    let answer = node.delete(&format!("/v1/tasks/{noop}")).await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body, json!({ "id": noop, "status": "cancelled" }));
    let again = node.delete(&format!("/v1/tasks/{noop}")).await?;
    assert_eq!(
        (again.status, again.error_code()),
        (409, "already_terminal")
    );

    // Running: the kernel is asked to stop, and the record follows.
    let answer = node.delete(&format!("/v1/tasks/{sleeper}")).await?;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(
        answer.body,
        json!({ "id": sleeper, "status": "running", "cancel": "requested" })
    );
    let view = node.wait_terminal(&sleeper, WITHIN).await?;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert_eq!(view["attempts"], 1);
    assert!(view.get("result").is_none(), "{view}");
    let again = node.delete(&format!("/v1/tasks/{sleeper}")).await?;
    assert_eq!(
        (again.status, again.error_code()),
        (409, "already_terminal")
    );

    // The worker is free again, and the cancelled noop was skipped, not run.
    let next = node.submit(&json!({ "kind": "noop" })).await?;
    assert_eq!(
        node.wait_terminal(&next, WITHIN).await?["status"],
        "succeeded"
    );
    let view = node.task(&noop).await?;
    assert_eq!(view["status"], "cancelled", "{view}");
    assert_eq!(view["attempts"], 0, "{view}");
    assert!(view.get("started_at").is_none(), "{view}");
    assert!(view.get("finished_at").is_some(), "{view}");

    let text = node.metrics().await?;
    for kind in ["noop", "sleep"] {
        let labels = [("kind", kind), ("outcome", "cancelled")];
        assert_eq!(
            metric(&text, "taskmesh_tasks_completed_total", &labels),
            Some(1.0)
        );
    }
    assert_eq!(
        metric(
            &text,
            "taskmesh_task_duration_seconds_count",
            &[("kind", "noop")]
        ),
        Some(1.0)
    );
    Ok(())
}

#[tokio::test]
async fn a_timed_out_attempt_fails_the_task_and_frees_the_worker() -> anyhow::Result<()> {
    let node = TestNode::start_temp(ONE_WORKER).await?;
    let sleepy = |max_retries: u32| json!({ "kind": "sleep", "params": { "ms": 60_000 }, "timeout_ms": 100, "max_retries": max_retries });
    let id = node.submit(&sleepy(0)).await?;
    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["attempts"], 1);
    assert!(text(&view, "error").contains("timed out"), "{view}");

    // With the only worker, so it must have been given back.
    let noop = node.submit(&json!({ "kind": "noop" })).await?;
    assert_eq!(
        node.wait_terminal(&noop, WITHIN).await?["status"],
        "succeeded"
    );

    // A timeout counts as a failed attempt: it is retried.
    let id = node.submit(&sleepy(1)).await?;
    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(
        (&view["status"], &view["attempts"]),
        (&json!("failed"), &json!(2)),
        "{view}"
    );
    let retries = metric(
        &node.metrics().await?,
        "taskmesh_task_retries_total",
        &[("kind", "sleep")],
    );
    assert_eq!(retries, Some(1.0));
    Ok(())
}

#[tokio::test]
async fn failed_attempts_are_retried_up_to_max_retries() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    let flaky = node
        .submit(&json!({ "kind": "flaky", "params": { "fail_attempts": 2 }, "max_retries": 3 }))
        .await?;
    let fail = node
        .submit(&json!({ "kind": "fail", "params": { "message": "boom" }, "max_retries": 1 }))
        .await?;
    let default_retries = node
        .submit(&json!({ "kind": "fail", "params": { "message": "again" } }))
        .await?;
    let exhausted = node
        .submit(&json!({ "kind": "flaky", "params": { "fail_attempts": 5 }, "max_retries": 1 }))
        .await?;

    let view = node.wait_terminal(&flaky, WITHIN).await?;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["attempts"], 3);
    assert_eq!(view["result"], json!({ "attempt": 3 }));

    let view = node.wait_terminal(&fail, WITHIN).await?;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["attempts"], 2);
    assert!(text(&view, "error").contains("boom"), "{view}");
    assert!(view.get("result").is_none());

    let view = node.wait_terminal(&default_retries, WITHIN).await?;
    assert_eq!(
        (&view["status"], &view["attempts"]),
        (&json!("failed"), &json!(4)),
        "{view}"
    );
    assert_eq!(view["max_retries"], 3, "the default");

    let view = node.wait_terminal(&exhausted, WITHIN).await?;
    assert_eq!(
        (&view["status"], &view["attempts"]),
        (&json!("failed"), &json!(2)),
        "{view}"
    );
    assert!(text(&view, "error").contains("flaky attempt 2"), "{view}");

    let text = node.metrics().await?;
    let retries = |kind| metric(&text, "taskmesh_task_retries_total", &[("kind", kind)]);
    assert_eq!(
        retries("flaky"),
        Some(3.0),
        "2 for the first flaky task, 1 for the second"
    );
    assert_eq!(retries("fail"), Some(4.0), "1 + the default 3");
    Ok(())
}

#[tokio::test]
async fn a_panicking_kernel_fails_its_task_and_the_node_carries_on() -> anyhow::Result<()> {
    let node =
        TestNode::start_temp(&["--workers", "2", "--min-workers", "2", "--max-workers", "2"])
            .await?;
    let id = node
        .submit(&json!({ "kind": "panic", "max_retries": 1 }))
        .await?;
    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["attempts"], 2);
    assert!(text(&view, "error").contains("panic"), "{view}");

    metric_at_least(&node, "taskmesh_worker_restarts_total", &[], 2.0).await?;
    // The crashed workers were replaced.
    metric_at_least(&node, "taskmesh_workers", &[("state", "idle")], 2.0).await?;
    let ready = node.get("/health/ready").await?;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    let noop = node.submit(&json!({ "kind": "noop" })).await?;
    assert_eq!(
        node.wait_terminal(&noop, WITHIN).await?["status"],
        "succeeded"
    );
    Ok(())
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[ONE_WORKER, &["--queue-capacity", "5"]].concat()).await?;
    let task = json!({ "kind": "sleep", "params": { "ms": 100 } });
    let mut accepted = Vec::new();
    let mut refusal = None;
    for _ in 0..200 {
        let answer = node.post("/v1/tasks", &task).await?;
        match answer.status {
            202 => accepted.push(text(&answer.body, "id").to_owned()),
            503 => {
                refusal = Some(answer);
                break;
            }
            other => panic!("unexpected {other}: {:?}", answer.body),
        }
    }
    let refusal = refusal.expect("no 503 after 200 submissions to a queue of 5");
    assert_eq!(refusal.error_code(), "saturated", "{:?}", refusal.body);
    let retry_after: u64 = refusal
        .header("retry-after")
        .expect("Retry-After")
        .parse()?;
    assert!(retry_after >= 1);
    assert!(
        accepted.len() >= 5,
        "the queue holds 5: {} accepted",
        accepted.len()
    );

    // A batch larger than the queue can never fit: refused whole, nothing created.
    let before = node.list("limit=1000").await?.len();
    let answer = node
        .post(
            "/v1/tasks/batch",
            &json!({ "tasks": vec![task.clone(); 10] }),
        )
        .await?;
    assert_eq!(
        (answer.status, answer.error_code()),
        (503, "saturated"),
        "{:?}",
        answer.body
    );
    assert_eq!(node.list("limit=1000").await?.len(), before);

    let saturated = [("reason", "saturated")];
    let rejected = metric(
        &node.metrics().await?,
        "taskmesh_tasks_rejected_total",
        &saturated,
    );
    assert_eq!(rejected, Some(2.0), "the single task and the batch");

    // Everything accepted runs, and then there is room again.
    for view in node.wait_all_terminal(&accepted, WITHIN).await? {
        assert_eq!(view["status"], "succeeded", "{view}");
    }
    let id = eventually(WITHIN, "a submission is accepted again", || async {
        let answer = node.post("/v1/tasks", &json!({ "kind": "noop" })).await?;
        Ok((answer.status == 202).then(|| text(&answer.body, "id").to_owned()))
    })
    .await?;
    assert_eq!(
        node.wait_terminal(&id, WITHIN).await?["status"],
        "succeeded"
    );
    Ok(())
}

/// Sends `POST /v1/tasks` with `body` and the key `key` on a fresh connection and hangs
/// up after `delay`, without reading the answer.
fn submit_and_hang_up(
    addr: SocketAddr,
    key: &str,
    body: &str,
    delay: Duration,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "POST /v1/tasks HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    std::thread::sleep(delay);
    Ok(())
}

#[tokio::test]
async fn an_idle_node_accepts_one_task_at_a_time_beyond_its_queue_capacity() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[ONE_WORKER, &["--queue-capacity", "5"]].concat()).await?;
    // Never more than one task waits: each is finished before the next is submitted.
    for i in 0..20 {
        let answer = node.post("/v1/tasks", &json!({ "kind": "noop" })).await?;
        assert_eq!(
            answer.status, 202,
            "submission {i} to an idle node with an empty queue: {:?}",
            answer.body
        );
        let view = node.wait_terminal(text(&answer.body, "id"), WITHIN).await?;
        assert_eq!(view["status"], "succeeded", "{view}");
    }
    Ok(())
}

#[tokio::test]
async fn clients_hanging_up_mid_submission_leak_neither_tasks_nor_capacity() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[ONE_WORKER, &["--queue-capacity", "5"]].concat()).await?;
    // Hang up at many points of the submission's life: before the node reads it, while
    // it is admitted, while it is written, after it is answered.
    let addr = node.addr;
    let key = node.api_key().unwrap_or_default().to_owned();
    tokio::task::spawn_blocking(move || {
        (0..200u64).try_for_each(|i| {
            let delay = Duration::from_micros((i % 40) * 100);
            submit_and_hang_up(addr, &key, r#"{"kind":"noop"}"#, delay)
        })
    })
    .await??;

    // Whatever the node stored, it runs: no task stays queued behind an idle worker.
    let unfinished = || async {
        let tasks = node.list("limit=1000").await?;
        let unfinished: Vec<Value> = tasks
            .into_iter()
            .filter(|t| !integration_tests::is_terminal(text(t, "status")))
            .collect();
        anyhow::Ok(unfinished)
    };
    let within = Duration::from_secs(30);
    let finished = eventually(within, "every stored task finished", || async {
        Ok(unfinished().await?.is_empty().then_some(()))
    })
    .await;
    if finished.is_err() {
        let stuck = unfinished().await?;
        let ids: Vec<&str> = stuck.iter().map(|t| text(t, "id")).collect();
        panic!("{} stored tasks never ran: {ids:?}", ids.len());
    }
    // And the queue's room came back: an idle node takes new work.
    let accepted = eventually(within, "a new submission is accepted", || async {
        let answer = node.post("/v1/tasks", &json!({ "kind": "noop" })).await?;
        Ok((answer.status == 202).then_some(()))
    })
    .await;
    assert!(accepted.is_ok(), "{accepted:#?}");
    Ok(())
}

#[tokio::test]
async fn higher_priorities_start_first() -> anyhow::Result<()> {
    let node = TestNode::start_temp(ONE_WORKER).await?;
    let blocker = block_the_worker(&node).await?;
    // Each takes a little while, so their start times differ.
    let task =
        |priority: &str| json!({ "kind": "sleep", "params": { "ms": 20 }, "priority": priority });
    let low = node.submit(&task("low")).await?;
    let normal = node.submit(&task("normal")).await?;
    let high = node.submit(&task("high")).await?;
    let answer = node.delete(&format!("/v1/tasks/{blocker}")).await?;
    assert_eq!(answer.status, 202, "{:?}", answer.body);

    let ids = [high, normal, low];
    let views = node.wait_all_terminal(&ids, WITHIN).await?;
    for view in &views {
        assert_eq!(view["status"], "succeeded", "{view}");
    }
    let started: Vec<&str> = views.iter().map(|v| text(v, "started_at")).collect();
    let finished: Vec<&str> = views.iter().map(|v| text(v, "finished_at")).collect();
    // One worker: each starts once the one before it has finished.
    assert!(
        finished[0] <= started[1] && finished[1] <= started[2],
        "{views:?}"
    );
    assert!(
        started[0] < started[1] && started[1] < started[2],
        "{views:?}"
    );
    assert_eq!(views[0]["priority"], "high");
    assert_eq!(views[2]["priority"], "low");
    Ok(())
}

#[tokio::test]
async fn the_pool_grows_under_a_backlog_and_shrinks_when_idle() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[
        "--workers",
        "1",
        "--min-workers",
        "1",
        "--max-workers",
        "3",
        "--scale-down-after-secs",
        "1",
    ])
    .await?;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(
            node.submit(&json!({ "kind": "sleep", "params": { "ms": 600_000 } }))
                .await?,
        );
    }
    // Up to --max-workers, running tasks side by side.
    eventually(WITHIN, "3 tasks running at once", || async {
        Ok((node.list("status=running").await?.len() == 3).then_some(()))
    })
    .await?;
    metric_at_least(&node, "taskmesh_workers", &[("state", "busy")], 3.0).await?;
    assert_eq!(node.list("status=queued").await?.len(), 3);

    // Queued ones first, so no cancelled task frees a worker for another.
    for id in ids.iter().rev() {
        let answer = node.delete(&format!("/v1/tasks/{id}")).await?;
        assert!(matches!(answer.status, 200 | 202), "{:?}", answer.body);
    }
    for view in node.wait_all_terminal(&ids, WITHIN).await? {
        assert_eq!(view["status"], "cancelled", "{view}");
    }
    // Down to --min-workers once idle for the cool-down.
    eventually(WITHIN, "the pool shrank to 1 worker", || async {
        let text = node.metrics().await?;
        let busy = metric(&text, "taskmesh_workers", &[("state", "busy")]);
        let idle = metric(&text, "taskmesh_workers", &[("state", "idle")]);
        Ok((busy == Some(0.0) && idle == Some(1.0)).then_some(()))
    })
    .await?;
    Ok(())
}
