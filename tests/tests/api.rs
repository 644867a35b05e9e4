//! The HTTP API of one node, end to end: results, idempotency, request ids, listings,
//! long-polls, batches, metrics and health.

use std::collections::HashSet;
use std::time::Duration;

use integration_tests::{ONE_WORKER, TestNode, eventually, is_terminal, metric};
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// Deadline of any single wait in these tests (generous: CI machines are slow).
const WITHIN: Duration = Duration::from_secs(60);

fn ids_of(tasks: &[Value]) -> Vec<String> {
    tasks
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect()
}

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

#[tokio::test]
async fn monte_carlo_price_is_within_three_standard_errors_of_black_scholes() -> anyhow::Result<()>
{
    // Black–Scholes price of this at-the-money call.
    const EXACT: f64 = 10.4506;
    let node = TestNode::start_temp(&[]).await?;
    let params = json!({
        "s0": 100.0, "k": 100.0, "r": 0.05, "sigma": 0.2, "t": 1.0,
        "paths": 1_000_000, "option": "call",
    });
    let id = node
        .submit(&json!({ "kind": "monte_carlo_option", "params": params }))
        .await?;
    let view = node.wait_terminal(&id, WITHIN).await?;

    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["id"], id.as_str());
    assert_eq!(view["kind"], "monte_carlo_option");
    assert_eq!(view["params"], params, "params are shown as submitted");
    let result = &view["result"];
    let price = result["price"].as_f64().expect("price");
    let std_error = result["std_error"].as_f64().expect("std_error");
    assert_eq!(result["paths"], 1_000_000);
    assert!(std_error > 0.0 && std_error < 0.1, "{result}");
    assert!(
        (price - EXACT).abs() <= 3.0 * std_error,
        "price {price} is more than 3 standard errors ({std_error}) from {EXACT}"
    );
    assert_eq!(view["attempts"], 1);
    assert!(view.get("error").is_none(), "{view}");

    let health = node.get("/health").await?;
    assert_eq!(view["node"], health.body["node"], "the node that ran it");
    // RFC 3339 with milliseconds and `Z`: fixed width, so text order is time order.
    let (created, started, finished) = (
        text(&view, "created_at"),
        text(&view, "started_at"),
        text(&view, "finished_at"),
    );
    assert!(created.ends_with('Z') && created.len() == 24, "{view}");
    assert!(created <= started && started <= finished, "{view}");
    Ok(())
}

#[tokio::test]
async fn health_reports_the_node_and_readiness() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    let health = node.get("/health").await?;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    assert!(text(&health.body, "node").len() > 1, "{}", health.body);

    let ready = node.get("/health/ready").await?;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["status"], "ready");
    assert_eq!(ready.body["checks"]["store"], "ok");
    assert_eq!(ready.body["checks"]["pool"], "ok");
    assert_eq!(ready.body["checks"]["draining"], false);
    Ok(())
}

#[tokio::test]
async fn a_repeated_idempotency_key_yields_the_first_task() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    let task = json!({ "kind": "noop", "idempotency_key": "order-42" });

    let first = node.post("/v1/tasks", &task).await?;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let id = text(&first.body, "id").to_owned();
    assert_eq!(
        first.header("location"),
        Some(format!("/v1/tasks/{id}").as_str())
    );

    let again = node.post("/v1/tasks", &task).await?;
    assert_eq!(
        again.status, 200,
        "a repeat is not a new acceptance: {:?}",
        again.body
    );
    assert_eq!(again.body["id"], id.as_str());

    // The key wins even when the rest of the submission differs.
    let other_kind =
        json!({ "kind": "echo", "params": { "value": 1 }, "idempotency_key": "order-42" });
    let answer = node.post("/v1/tasks", &other_kind).await?;
    assert_eq!((answer.status, &answer.body["id"]), (200, &json!(id)));

    let other_key = node
        .submit(&json!({ "kind": "noop", "idempotency_key": "order-43" }))
        .await?;
    assert_ne!(other_key, id);

    // Within one batch, and against a key stored earlier.
    let batch = node
        .submit_batch(&[
            json!({ "kind": "noop", "idempotency_key": "b-1" }),
            json!({ "kind": "noop", "idempotency_key": "b-1" }),
            json!({ "kind": "noop", "idempotency_key": "b-2" }),
            json!({ "kind": "noop", "idempotency_key": "order-42" }),
        ])
        .await?;
    assert_eq!(batch[0], batch[1], "a key repeated in a batch");
    assert_ne!(batch[0], batch[2]);
    assert_eq!(batch[3], id, "a key stored by an earlier submission");

    // Concurrent submissions with one key create one task.
    let mut racers = JoinSet::new();
    for _ in 0..8 {
        let (http, url) = (node.http.clone(), node.url("/v1/tasks"));
        racers.spawn(async move {
            let task = json!({ "kind": "noop", "idempotency_key": "race" });
            let r = http.post(url).json(&task).send().await?;
            let status = r.status().as_u16();
            let body: Value = r.json().await?;
            anyhow::Ok((status, text(&body, "id").to_owned()))
        });
    }
    let answers: Vec<(u16, String)> = racers
        .join_all()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let created = answers.iter().filter(|(s, _)| *s == 202).count();
    assert_eq!(created, 1, "exactly one acceptance: {answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 202 || *s == 200),
        "{answers:?}"
    );
    let race_ids: HashSet<&String> = answers.iter().map(|(_, id)| id).collect();
    assert_eq!(race_ids.len(), 1, "{answers:?}");

    // order-42, order-43, b-1, b-2, race: five tasks in all, and each runs.
    let all = node.list("limit=1000").await?;
    assert_eq!(all.len(), 5, "{all:?}");
    for id in ids_of(&all) {
        let view = node.wait_terminal(&id, WITHIN).await?;
        assert_eq!(view["status"], "succeeded", "{view}");
        assert_eq!(view["attempts"], 1, "{view}");
    }
    Ok(())
}

#[tokio::test]
async fn the_request_id_is_echoed_and_recorded() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;

    let request = node
        .http
        .post(node.url("/v1/tasks"))
        .header("x-request-id", "my-req-123")
        .json(&json!({ "kind": "noop" }));
    let answer = node.send(request).await?;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.header("x-request-id"), Some("my-req-123"));
    let view = node.wait_terminal(text(&answer.body, "id"), WITHIN).await?;
    assert_eq!(view["request_id"], "my-req-123");

    // Without one, the node makes one up, returns it and records it.
    let answer = node.post("/v1/tasks", &json!({ "kind": "noop" })).await?;
    let generated = answer.header("x-request-id").expect("generated request id");
    assert!(!generated.is_empty() && generated != "my-req-123");
    let view = node.wait_terminal(text(&answer.body, "id"), WITHIN).await?;
    assert_eq!(view["request_id"], generated);

    // Every task of a batch carries the batch's request id; error answers echo it too.
    let request = node
        .http
        .post(node.url("/v1/tasks/batch"))
        .header("x-request-id", "batch-7")
        .json(&json!({ "tasks": [{ "kind": "noop" }, { "kind": "noop" }] }));
    let answer = node.send(request).await?;
    assert_eq!(answer.status, 202);
    for id in answer.body["ids"].as_array().expect("ids") {
        let view = node.task(id.as_str().expect("id")).await?;
        assert_eq!(view["request_id"], "batch-7");
    }
    let request = node
        .http
        .get(node.url("/v1/tasks/nope"))
        .header("x-request-id", "bad-1");
    let answer = node.send(request).await?;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("x-request-id"), Some("bad-1"));
    assert_eq!(
        answer.body["error"]["request_id"], "bad-1",
        "{}",
        answer.body
    );
    // A generated id is in the error body too, and an unmatched route is an error.
    let answer = node.get("/no/such/route").await?;
    assert_eq!(answer.status, 404);
    let generated = answer.header("x-request-id").expect("generated request id");
    assert_eq!(answer.body["error"]["request_id"], generated);
    Ok(())
}

#[tokio::test]
async fn listings_filter_by_status_and_kind_newest_first() -> anyhow::Result<()> {
    let node = TestNode::start_temp(ONE_WORKER).await?;
    let mut done = Vec::new();
    for _ in 0..2 {
        let id = node.submit(&json!({ "kind": "noop" })).await?;
        node.wait_terminal(&id, WITHIN).await?;
        done.push(id);
    }
    let blocker = block_the_worker(&node).await?;
    let mut queued = Vec::new();
    for kind in ["echo", "noop", "echo", "noop"] {
        let params = if kind == "echo" {
            json!({ "value": 1 })
        } else {
            json!({})
        };
        queued.push(
            node.submit(&json!({ "kind": kind, "params": params }))
                .await?,
        );
    }
    let newest_first = |ids: &[String]| ids.iter().rev().cloned().collect::<Vec<_>>();

    let all = ids_of(&node.list("").await?);
    let everything = [&done[..], std::slice::from_ref(&blocker), &queued[..]].concat();
    assert_eq!(all, newest_first(&everything), "everything, newest first");

    let succeeded = ids_of(&node.list("status=succeeded").await?);
    assert_eq!(succeeded, newest_first(&done));
    let running = ids_of(&node.list("status=running").await?);
    assert_eq!(running, [blocker]);
    let waiting = ids_of(&node.list("status=queued").await?);
    assert_eq!(waiting, newest_first(&queued));

    let echoes = node.list("kind=echo").await?;
    assert_eq!(ids_of(&echoes), [queued[2].clone(), queued[0].clone()]);
    assert!(
        echoes
            .iter()
            .all(|t| t["kind"] == "echo" && t["status"] == "queued")
    );
    let queued_noops = ids_of(&node.list("status=queued&kind=noop").await?);
    assert_eq!(queued_noops, [queued[3].clone(), queued[1].clone()]);
    assert!(node.list("kind=matmul").await?.is_empty());

    let newest_three = ids_of(&node.list("limit=3").await?);
    assert_eq!(newest_three, newest_first(&queued[1..]));
    let one = ids_of(&node.list("status=queued&limit=1").await?);
    assert_eq!(one, [queued[3].clone()]);
    Ok(())
}

/// `GET /v1/tasks/{id}?wait_ms=60000` with a client timeout of 20 s: it only answers
/// if the node wakes the poll when the task ends, not when the wait runs out.
async fn long_poll(node: &TestNode, id: &str) -> anyhow::Result<Value> {
    let request = node
        .http
        .get(node.url(&format!("/v1/tasks/{id}?wait_ms=60000")))
        .timeout(Duration::from_secs(20));
    let answer = node.send(request).await?;
    anyhow::ensure!(answer.status == 200, "long-poll answered {}", answer.status);
    Ok(answer.body)
}

#[tokio::test]
async fn long_polls_return_as_soon_as_the_task_ends() -> anyhow::Result<()> {
    let node = TestNode::start_temp(ONE_WORKER).await?;

    // One call sees the task run and end: the node waited, then woke the poll.
    let id = node
        .submit(&json!({ "kind": "sleep", "params": { "ms": 300 } }))
        .await?;
    let view = long_poll(&node, &id).await?;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["result"]["slept_ms"], 300);

    // A terminal task answers at once; an unknown one is 404 even with a wait.
    assert_eq!(long_poll(&node, &id).await?["status"], "succeeded");
    let unknown = node
        .get("/v1/tasks/00000000-0000-7000-8000-000000000000?wait_ms=5000")
        .await?;
    assert_eq!((unknown.status, unknown.error_code()), (404, "not_found"));

    // A short wait on a task that does not end returns it unfinished.
    let blocker = block_the_worker(&node).await?;
    let answer = node.get(&format!("/v1/tasks/{blocker}?wait_ms=50")).await?;
    assert_eq!(
        (answer.status, &answer.body["status"]),
        (200, &json!("running"))
    );

    // Cancelling a queued task wakes its long-poll.
    let queued = node.submit(&json!({ "kind": "noop" })).await?;
    let poll = tokio::spawn({
        let (http, url) = (
            node.http.clone(),
            node.url(&format!("/v1/tasks/{queued}?wait_ms=60000")),
        );
        async move { http.get(url).timeout(Duration::from_secs(20)).send().await }
    });
    // Give the poll time to reach the node. If it has not by the cancel, the test still
    // passes (the poll then sees the cancelled task at once); it only proves less.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cancel = node.delete(&format!("/v1/tasks/{queued}")).await?;
    assert_eq!(cancel.status, 200, "{:?}", cancel.body);
    let answer: Value = poll.await??.json().await?;
    assert_eq!(answer["status"], "cancelled", "{answer}");

    // So does cancelling a running one.
    let poll = tokio::spawn({
        let (http, url) = (
            node.http.clone(),
            node.url(&format!("/v1/tasks/{blocker}?wait_ms=60000")),
        );
        async move { http.get(url).timeout(Duration::from_secs(20)).send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cancel = node.delete(&format!("/v1/tasks/{blocker}")).await?;
    assert_eq!(cancel.status, 202, "{:?}", cancel.body);
    let answer: Value = poll.await??.json().await?;
    assert_eq!(answer["status"], "cancelled", "{answer}");
    Ok(())
}

#[tokio::test]
async fn a_batch_of_a_thousand_tasks_all_succeed() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    let tasks = vec![json!({ "kind": "noop" }); 1000];
    let ids = node.submit_batch(&tasks).await?;
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 1000, "distinct ids");

    let succeeded = eventually(WITHIN, "1000 tasks succeeded", || async {
        let listed = node.list("status=succeeded&limit=1000").await?;
        Ok((listed.len() == 1000).then_some(listed))
    })
    .await?;
    let listed: HashSet<String> = ids_of(&succeeded).into_iter().collect();
    assert_eq!(listed, ids.iter().cloned().collect::<HashSet<_>>());
    assert!(succeeded.iter().all(|t| t["attempts"] == 1));
    Ok(())
}

#[tokio::test]
async fn metrics_count_tasks_workers_and_requests() -> anyhow::Result<()> {
    let node =
        TestNode::start_temp(&["--workers", "2", "--min-workers", "2", "--max-workers", "2"])
            .await?;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(node.submit(&json!({ "kind": "noop" })).await?);
    }
    for v in 0..2 {
        ids.push(
            node.submit(&json!({ "kind": "echo", "params": { "value": v } }))
                .await?,
        );
    }
    let fail = json!({ "kind": "fail", "params": { "message": "no" }, "max_retries": 0, "priority": "high" });
    ids.push(node.submit(&fail).await?);
    let views = node.wait_all_terminal(&ids, WITHIN).await?;
    assert!(views.iter().all(|v| is_terminal(text(v, "status"))));

    let completed =
        |kind: &'static str, outcome: &'static str| [("kind", kind), ("outcome", outcome)];
    // Counters are bumped right after the terminal write, so poll until they settle.
    let text = eventually(WITHIN, "metrics settled", || async {
        let text = node.metrics().await?;
        let settled = metric(
            &text,
            "taskmesh_tasks_completed_total",
            &completed("fail", "failed"),
        ) == Some(1.0)
            && metric(
                &text,
                "taskmesh_tasks_completed_total",
                &completed("noop", "succeeded"),
            ) == Some(5.0)
            && metric(&text, "taskmesh_workers", &[("state", "idle")]) == Some(2.0);
        Ok(settled.then_some(text))
    })
    .await?;

    let noop_normal = [("kind", "noop"), ("priority", "normal")];
    assert_eq!(
        metric(&text, "taskmesh_tasks_submitted_total", &noop_normal),
        Some(5.0)
    );
    let fail_high = [("kind", "fail"), ("priority", "high")];
    assert_eq!(
        metric(&text, "taskmesh_tasks_submitted_total", &fail_high),
        Some(1.0)
    );
    let echo_ok = completed("echo", "succeeded");
    assert_eq!(
        metric(&text, "taskmesh_tasks_completed_total", &echo_ok),
        Some(2.0)
    );
    let noop_runs = [("kind", "noop")];
    assert_eq!(
        metric(&text, "taskmesh_task_duration_seconds_count", &noop_runs),
        Some(5.0)
    );
    for p in ["high", "normal", "low"] {
        assert_eq!(
            metric(&text, "taskmesh_queue_depth", &[("priority", p)]),
            Some(0.0)
        );
    }
    assert_eq!(
        metric(&text, "taskmesh_workers", &[("state", "busy")]),
        Some(0.0)
    );
    let accepted = [
        ("route", "/v1/tasks"),
        ("method", "POST"),
        ("status", "202"),
    ];
    assert_eq!(
        metric(&text, "taskmesh_http_requests_total", &accepted),
        Some(8.0)
    );
    assert_eq!(metric(&text, "taskmesh_ready", &[]), Some(1.0));
    assert_eq!(
        metric(&text, "taskmesh_task_retries_total", &[("kind", "fail")]),
        None
    );
    assert!(text.contains("# TYPE taskmesh_task_duration_seconds histogram"));
    Ok(())
}

#[tokio::test]
async fn every_standard_kind_runs_over_http() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    let value = json!({ "nested": [1, 2.5, null, true], "text": "héllo \u{1F600}", "empty": {} });
    let matmul = json!({ "kind": "matmul", "params": { "n": 64, "seed": 7 } });
    let tasks = [
        json!({ "kind": "noop" }),
        json!({ "kind": "echo", "params": { "value": value } }),
        json!({ "kind": "echo", "params": { "value": null } }),
        json!({ "kind": "sleep", "params": { "ms": 1 } }),
        matmul.clone(),
        matmul,
        json!({ "kind": "portfolio_var", "params": { "assets": 10, "scenarios": 10_000, "confidence": 0.99 } }),
        json!({
            "kind": "monte_carlo_option",
            "params": { "s0": 100.0, "k": 100.0, "r": 0.05, "sigma": 0.2, "t": 1.0, "paths": 200_000, "option": "put" },
        }),
    ];
    let ids = node.submit_batch(&tasks).await?;
    let views = node.wait_all_terminal(&ids, WITHIN).await?;
    for view in &views {
        assert_eq!(view["status"], "succeeded", "{view}");
    }
    let results: Vec<&Value> = views.iter().map(|v| &v["result"]).collect();
    assert_eq!(results[0], &Value::Null);
    assert_eq!(
        results[1],
        &json!({ "value": value }),
        "echo returns its input exactly"
    );
    assert_eq!(results[2], &json!({ "value": null }));
    assert_eq!(results[3], &json!({ "slept_ms": 1 }));
    assert_eq!(results[4]["n"], 64);
    assert!(results[4]["checksum"].as_f64().is_some_and(f64::is_finite));
    assert_eq!(results[4], results[5], "seeded kernels are deterministic");
    let var = results[6]["var"].as_f64().expect("var");
    let cvar = results[6]["cvar"].as_f64().expect("cvar");
    assert!(var > 0.0 && cvar >= var, "{}", results[6]);
    // Black–Scholes price of the matching put.
    let put = results[7]["price"].as_f64().expect("price");
    let std_error = results[7]["std_error"].as_f64().expect("std_error");
    assert!((put - 5.5735).abs() <= 3.0 * std_error, "{}", results[7]);
    Ok(())
}

#[tokio::test]
async fn tasks_with_a_class_need_a_node_with_that_label() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&["--labels", "heavy,gpu"]).await?;
    let id = node
        .submit(&json!({ "kind": "noop", "class": "gpu" }))
        .await?;
    assert_eq!(
        node.wait_terminal(&id, WITHIN).await?["status"],
        "succeeded"
    );

    let answer = node
        .post("/v1/tasks", &json!({ "kind": "noop", "class": "tpu" }))
        .await?;
    assert_eq!((answer.status, answer.error_code()), (422, "unknown_class"));
    assert!(answer.error_message().contains("tpu"), "{:?}", answer.body);
    Ok(())
}
