//! The HTTP worker API, spoken call by call to a real node: leases, heartbeats,
//! reports, and the fences that refuse every earlier attempt.

use std::time::Duration;

use integration_tests::cluster::TestCluster;
use integration_tests::workers::{HttpWorker, complete, fail};
use integration_tests::{TestNode, eventually, metric};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(60);

/// A node with the external kind `py` and a 1 s worker lease, unless `extra` sets one.
async fn node(extra: &[&str]) -> anyhow::Result<TestNode> {
    let mut flags = vec!["--external-kinds", "py"];
    if !extra.contains(&"--worker-lease-ms") {
        flags.extend(["--worker-lease-ms", "1000"]);
    }
    flags.extend_from_slice(extra);
    TestNode::start_temp(&flags).await
}

fn py(x: i64) -> Value {
    json!({ "kind": "py", "params": { "x": x } })
}

#[tokio::test]
async fn a_worker_leases_reports_progress_and_completes_a_task() -> anyhow::Result<()> {
    let node = node(&[]).await?;
    let worker = HttpWorker::register(&node, &["py"], 4).await?;
    assert_eq!(worker.lease_ms, 1000);
    let id = node.submit(&py(7)).await?;
    let leased = worker.lease_one(&node).await?;
    assert_eq!(leased.id, id);
    assert_eq!(leased.attempt, 1);
    assert_eq!(leased.view["kind"], "py");
    assert_eq!(leased.view["params"], json!({ "x": 7 }));
    let view = node.wait_status(&id, "running", WITHIN).await?;
    assert_eq!(view["attempts"], 1, "{view}");

    let progress = json!({ &leased.token: { "fraction": 0.5, "message": "half way" } });
    let states = worker
        .heartbeat(&node, &[&leased.token, "nope"], progress)
        .await?;
    assert_eq!(states, ["ok", "stale"]);
    let reported = json!({ "fraction": 0.5, "message": "half way" });
    eventually(WITHIN, "the progress is stored", async || {
        Ok((node.task(&id).await?["progress"] == reported).then_some(()))
    })
    .await?;

    let answer = complete(&node, &id, &leased.token, json!({ "y": 49 })).await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(
        (view["status"].as_str(), &view["result"]),
        (Some("succeeded"), &json!({ "y": 49 }))
    );
    let again = complete(&node, &id, &leased.token, json!({ "y": 0 })).await?;
    assert_eq!(
        (again.status, again.error_code()),
        (409, "already_terminal")
    );
    let states = worker.heartbeat(&node, &[&leased.token], json!({})).await?;
    assert_eq!(states, ["stale"], "a reported lease is over");
    Ok(())
}

#[tokio::test]
async fn a_parked_poll_gets_a_task_the_moment_it_is_queued() -> anyhow::Result<()> {
    let node = node(&[]).await?;
    let worker = HttpWorker::register(&node, &["py"], 1).await?;
    let poll = node
        .fresh_client()?
        .post(node.url(&format!("/v1/workers/{}/poll", worker.id)))
        .json(&json!({ "max": 1, "wait_ms": 20_000 }))
        .send();
    let parked = tokio::spawn(async move { anyhow::Ok(poll.await?.json::<Value>().await?) });
    eventually(WITHIN, "the poll is parked", async || {
        let text = node.metrics().await?;
        Ok((metric(&text, "taskmesh_external_parked_polls", &[]) == Some(1.0)).then_some(()))
    })
    .await?;
    let id = node.submit(&py(1)).await?;
    let answer = parked.await??;
    assert_eq!(answer["tasks"][0]["id"], json!(id), "{answer}");
    Ok(())
}

#[tokio::test]
async fn a_silent_worker_loses_its_lease_and_its_late_report_is_refused() -> anyhow::Result<()> {
    let node = node(&[]).await?;
    let first = HttpWorker::register(&node, &["py"], 1).await?;
    let id = node.submit(&py(2)).await?;
    let old = first.lease_one(&node).await?;
    // The first worker goes silent; after its lease the task is queued again and the
    // second worker gets attempt 2, whose record names the first attempt's fate.
    let second = HttpWorker::register(&node, &["py"], 1).await?;
    let new = second.lease_one(&node).await?;
    assert_eq!((new.id.as_str(), new.attempt), (id.as_str(), 2));
    assert_ne!(new.token, old.token);
    let view = node.task(&id).await?;
    let error = view["error"].as_str().unwrap_or_default();
    assert!(error.contains("lease_expired"), "{view}");

    let late = complete(&node, &id, &old.token, json!("first")).await?;
    assert_eq!(
        (late.status, late.error_code()),
        (409, "stale_token"),
        "{:?}",
        late.body
    );
    let late = fail(&node, &id, &old.token, "first", true).await?;
    assert_eq!((late.status, late.error_code()), (409, "stale_token"));
    let text = node.metrics().await?;
    let stale = [("outcome", "stale_token")];
    assert_eq!(
        metric(&text, "taskmesh_external_refused_reports_total", &stale),
        Some(2.0)
    );
    let answer = complete(&node, &id, &new.token, json!("second")).await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(
        (view["result"].clone(), view["attempts"].clone()),
        (json!("second"), json!(2))
    );
    let text = node.metrics().await?;
    assert_eq!(
        metric(
            &text,
            "taskmesh_external_lease_expiries_total",
            &[("kind", "py")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "taskmesh_external_refused_reports_total",
            &[("outcome", "stale_token")]
        ),
        Some(2.0),
        "both late reports are counted"
    );
    // The silent worker was forgotten: its calls answer 404 and it registers again.
    assert_eq!(first.poll_raw(&node, 1, 0).await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn failures_retry_while_retries_last_and_permanent_ones_do_not() -> anyhow::Result<()> {
    let node = node(&[]).await?;
    let worker = HttpWorker::register(&node, &["py"], 1).await?;
    let id = node
        .submit(&json!({ "kind": "py", "params": {}, "max_retries": 1 }))
        .await?;
    let first = worker.lease_one(&node).await?;
    let answer = fail(&node, &id, &first.token, "flaky", true).await?;
    assert_eq!(
        (answer.status, &answer.body["will_retry"]),
        (200, &json!(true)),
        "{:?}",
        answer.body
    );
    let second = worker.lease_one(&node).await?;
    assert_eq!(second.attempt, 2);
    let answer = fail(&node, &id, &second.token, "flaky again", true).await?;
    assert_eq!(answer.body["will_retry"], json!(false), "{:?}", answer.body);
    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(
        (view["status"].as_str(), view["error"].as_str()),
        (Some("failed"), Some("flaky again"))
    );

    let id = node
        .submit(&json!({ "kind": "py", "max_retries": 5 }))
        .await?;
    let leased = worker.lease_one(&node).await?;
    let answer = fail(&node, &id, &leased.token, "bad input", false).await?;
    assert_eq!(answer.body["will_retry"], json!(false));
    let view = node.wait_terminal(&id, WITHIN).await?;
    assert_eq!(
        (view["status"].as_str(), view["attempts"].as_u64()),
        (Some("failed"), Some(1))
    );
    Ok(())
}

#[tokio::test]
async fn a_worker_that_leaves_returns_its_leases_without_using_an_attempt() -> anyhow::Result<()> {
    let node = node(&[]).await?;
    let leaving = HttpWorker::register(&node, &["py"], 2).await?;
    let id = node
        .submit(&json!({ "kind": "py", "max_retries": 0 }))
        .await?;
    let old = leaving.lease_one(&node).await?;
    assert_eq!(
        node.delete(&format!("/v1/workers/{}", leaving.id))
            .await?
            .status,
        204
    );
    assert_eq!(
        node.delete(&format!("/v1/workers/{}", leaving.id))
            .await?
            .status,
        404
    );
    let staying = HttpWorker::register(&node, &["py"], 1).await?;
    let new = staying.lease_one(&node).await?;
    assert_eq!(
        (new.id.as_str(), new.attempt),
        (id.as_str(), 1),
        "no attempt was used"
    );
    let late = complete(&node, &id, &old.token, json!(1)).await?;
    assert_eq!(late.error_code(), "stale_token");
    assert_eq!(
        complete(&node, &id, &new.token, json!(2)).await?.status,
        200
    );
    assert_eq!(
        node.wait_terminal(&id, WITHIN).await?["status"],
        "succeeded"
    );
    Ok(())
}

#[tokio::test]
async fn a_cancel_reaches_the_worker_in_its_next_heartbeat() -> anyhow::Result<()> {
    let node = node(&[]).await?;
    let worker = HttpWorker::register(&node, &["py"], 1).await?;
    let id = node.submit(&py(3)).await?;
    let leased = worker.lease_one(&node).await?;
    let answer = node.delete(&format!("/v1/tasks/{id}")).await?;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let states = worker.heartbeat(&node, &[&leased.token], json!({})).await?;
    assert_eq!(states, ["cancel_requested"]);
    // Whatever the worker reports then, the task ends cancelled.
    assert_eq!(
        complete(&node, &id, &leased.token, json!(null))
            .await?
            .status,
        200
    );
    assert_eq!(
        node.wait_terminal(&id, WITHIN).await?["status"],
        "cancelled"
    );
    Ok(())
}

#[tokio::test]
async fn a_timeout_ends_the_attempt_whatever_the_heartbeats() -> anyhow::Result<()> {
    let node = node(&["--worker-lease-ms", "5000"]).await?;
    let worker = HttpWorker::register(&node, &["py"], 1).await?;
    let id = node
        .submit(&json!({ "kind": "py", "timeout_ms": 300, "max_retries": 0 }))
        .await?;
    let leased = worker.lease_one(&node).await?;
    let view = eventually(WITHIN, "the attempt times out", async || {
        let states = worker.heartbeat(&node, &[&leased.token], json!({})).await?;
        let view = node.task(&id).await?;
        Ok((view["status"] == "failed").then_some((states, view)))
    })
    .await?;
    assert!(
        view.1["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out after 300 ms")),
        "{}",
        view.1
    );
    assert_eq!(
        worker.heartbeat(&node, &[&leased.token], json!({})).await?,
        ["stale"]
    );
    Ok(())
}

#[tokio::test]
async fn bad_worker_input_gets_clear_4xx_answers_and_keeps_leases() -> anyhow::Result<()> {
    let node = node(&["--max-result-bytes", "100"]).await?;
    let not_external = node
        .post(
            "/v1/workers",
            &json!({ "name": "w", "kinds": ["noop"], "slots": 1 }),
        )
        .await?;
    assert_eq!(
        (not_external.status, not_external.error_code()),
        (422, "not_external")
    );
    let no_slots = node
        .post(
            "/v1/workers",
            &json!({ "name": "w", "kinds": ["py"], "slots": 0 }),
        )
        .await?;
    assert_eq!(no_slots.status, 422);
    let garbage = node
        .post_raw("/v1/workers", "application/json", "{\"name\":")
        .await?;
    assert_eq!(garbage.status, 400);
    for path in ["/v1/workers/w-nope/poll", "/v1/workers/w-nope/heartbeat"] {
        let answer = node.post(path, &json!({ "max": 1 })).await?;
        assert!(
            matches!(answer.status, 404 | 422),
            "{path}: {}",
            answer.status
        );
    }
    assert_eq!(
        node.post("/v1/workers/w-nope/heartbeat", &json!({}))
            .await?
            .status,
        404
    );
    assert_eq!(node.delete("/v1/workers/w-nope").await?.status, 404);

    let worker = HttpWorker::register(&node, &["py"], 2).await?;
    let id = node.submit(&py(4)).await?;
    // More than its slots: at most its free slots.
    let leased = worker.poll(&node, 50, 5000).await?;
    assert_eq!(leased.len(), 1);
    let token = leased[0].token.clone();
    let big = complete(&node, &id, &token, json!("x".repeat(200))).await?;
    assert_eq!((big.status, big.error_code()), (413, "too_large"));
    assert_eq!(
        worker.heartbeat(&node, &[&token], json!({})).await?,
        ["ok"],
        "the lease stays valid"
    );
    let unknown = complete(
        &node,
        "0191d5a4-0000-7000-8000-000000000000",
        &token,
        json!(1),
    )
    .await?;
    assert_eq!(unknown.status, 404);
    assert_eq!(complete(&node, &id, &token, json!("ok")).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn results_are_reported_in_batches() -> anyhow::Result<()> {
    let node = node(&[]).await?;
    let worker = HttpWorker::register(&node, &["py"], 8).await?;
    let ids = node.submit_batch(&[py(1), py(2), py(3)]).await?;
    let mut leased = Vec::new();
    while leased.len() < 3 {
        leased.extend(worker.poll(&node, 8, 5000).await?);
    }
    let mut results: Vec<Value> = leased
        .iter()
        .map(|l| json!({ "id": l.id, "token": l.token, "result": { "done": l.id } }))
        .collect();
    results.push(json!({ "id": leased[0].id, "token": "stale", "result": 1 }));
    results.push(json!({ "id": "nope", "token": "t", "result": 1 }));
    let path = format!("/v1/workers/{}/results", worker.id);
    let answer = node.post(&path, &json!({ "results": results })).await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let outcomes: Vec<&str> = answer.body["results"]
        .as_array()
        .map(|r| r.iter().filter_map(|e| e["outcome"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        outcomes,
        [
            "recorded",
            "recorded",
            "recorded",
            "already_terminal",
            "invalid"
        ]
    );
    for view in node.wait_all_terminal(&ids, WITHIN).await? {
        assert_eq!(view["result"], json!({ "done": view["id"] }));
    }
    Ok(())
}

#[tokio::test]
async fn in_a_cluster_external_tasks_go_where_the_workers_are() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, &["--external-kinds", "py"]).await?;
    let (n1, n2, n3) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let worker = HttpWorker::register(n2, &["py"], 16).await?;
    // n1 hears that n2 serves `py` in n2's next load report.
    eventually(WITHIN, "n1 sees that n2 serves py", async || {
        let view = integration_tests::cluster::cluster_view(n1).await?;
        let n2_view = view["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["id"] == "n2"))
            .cloned();
        let n1_waits = view["node"]["unserved"] == json!(["py"]);
        Ok(n2_view
            .filter(|p| p["unserved"] == json!([]) && n1_waits)
            .map(|_| ()))
    })
    .await?;
    let all = n1
        .submit_batch(&(0..10).map(py).collect::<Vec<_>>())
        .await?;
    let mut done = 0;
    while done < all.len() {
        for task in worker.poll(n2, 16, 5000).await? {
            assert_eq!(
                complete(n2, &task.id, &task.token, json!({ "by": "n2" }))
                    .await?
                    .status,
                200
            );
            done += 1;
        }
    }
    for view in n3.wait_all_terminal(&all, WITHIN).await? {
        assert_eq!(
            (view["status"].as_str(), &view["result"]),
            (Some("succeeded"), &json!({ "by": "n2" }))
        );
    }
    // A kind nobody declares is refused; one declared with no worker anywhere waits.
    let answer = n1.post("/v1/tasks", &json!({ "kind": "nope" })).await?;
    assert_eq!((answer.status, answer.error_code()), (422, "unknown_kind"));
    Ok(())
}

#[tokio::test]
async fn when_the_granting_node_dies_its_task_fails_over_and_the_old_token_is_refused()
-> anyhow::Result<()> {
    let mut cluster = TestCluster::start(2, &["--external-kinds", "py"]).await?;
    let old_worker = HttpWorker::register(&cluster.nodes[0], &["py"], 1).await?;
    // n1 has a worker for `py`, so it keeps the task it accepts.
    let id = cluster.nodes[0].submit(&py(6)).await?;
    let old = old_worker.lease_one(&cluster.nodes[0]).await?;
    assert_eq!(old.id, id);
    cluster.nodes[0].kill();

    let n2 = &cluster.nodes[1];
    let new_worker = HttpWorker::register(n2, &["py"], 1).await?;
    let new = new_worker.lease_one(n2).await?;
    assert_eq!((new.id.as_str(), new.attempt), (id.as_str(), 2));
    let late = complete(n2, &id, &old.token, json!("old")).await?;
    assert_eq!(
        (late.status, late.error_code()),
        (409, "stale_token"),
        "{:?}",
        late.body
    );
    assert_eq!(
        complete(n2, &id, &new.token, json!("new")).await?.status,
        200
    );
    let view = n2.wait_terminal(&id, WITHIN).await?;
    assert_eq!(
        (view["result"].clone(), view["node"].clone()),
        (json!("new"), json!("n2"))
    );
    Ok(())
}
