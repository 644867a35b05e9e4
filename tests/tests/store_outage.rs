//! What a client is told while the Redis store is away, black-box: a real `taskmesh`
//! node on a real `redis-server` that the test stops or freezes.
//!
//! - No answer carries the store's own words (Redis errors, OS errors); every error body
//!   has a stable code, a plain message and the request id.
//! - `503 store_unavailable` means nothing was accepted: a submission whose write landed
//!   while Redis was frozen is answered 202 (and runs), never 503.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use integration_tests::{Answer, TestNode, eventually, metric};
use serde_json::{Value, json};
use taskmesh_actors::store::redis::testing::RedisServer;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Deadline of any single wait in these tests (generous: CI machines are slow).
const WITHIN: Duration = Duration::from_secs(60);

/// Words of Redis, of the OS and of Rust's I/O errors that must never reach a client.
const STORE_WORDS: &[&str] = &[
    "redis",
    "connection refused",
    "os error",
    "broken pipe",
    "io error",
    "did not answer within",
    "store backend",
    "pipeline",
];

/// Fails if the answer's body (or its text) carries one of [`STORE_WORDS`].
fn assert_no_store_words(what: &str, answer: &Answer) -> anyhow::Result<()> {
    let text = answer.body.to_string().to_lowercase();
    for word in STORE_WORDS {
        ensure!(
            !text.contains(word),
            "{what}: body mentions {word:?}: {text}"
        );
    }
    Ok(())
}

/// Fails unless an error answer has `code`, `message` and the request's id.
fn assert_error_shape(what: &str, answer: &Answer) -> anyhow::Result<()> {
    let error = &answer.body["error"];
    ensure!(
        !answer.error_code().is_empty() && !answer.error_message().is_empty(),
        "{what}: {} without code and message: {}",
        answer.status,
        answer.body
    );
    let echoed = answer.header("x-request-id").context("no x-request-id")?;
    ensure!(
        error["request_id"] == echoed,
        "{what}: error.request_id is not the request's id {echoed:?}: {}",
        answer.body
    );
    Ok(())
}

#[tokio::test]
async fn with_redis_stopped_no_answer_carries_the_stores_words() -> anyhow::Result<()> {
    let mut redis = RedisServer::start()?;
    let url = redis.url();
    let node = TestNode::start_temp(&["--store", &url]).await?;
    let id = node.submit(&json!({ "kind": "noop" })).await?;
    node.wait_terminal(&id, WITHIN).await?;

    redis.kill();
    eventually(WITHIN, "readiness notices the store is gone", || async {
        let answer = node.get("/health/ready").await?;
        Ok((answer.status == 503).then_some(()))
    })
    .await?;

    let task = json!({ "kind": "noop" });
    let calls: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "POST /v1/tasks",
            node.http.post(node.url("/v1/tasks")).json(&task),
        ),
        (
            "POST /v1/tasks/batch",
            node.http
                .post(node.url("/v1/tasks/batch"))
                .json(&json!({ "tasks": [task.clone(), task.clone()] })),
        ),
        (
            "GET task",
            node.http.get(node.url(&format!("/v1/tasks/{id}"))),
        ),
        (
            "GET task wait_ms",
            node.http
                .get(node.url(&format!("/v1/tasks/{id}?wait_ms=500"))),
        ),
        ("GET list", node.http.get(node.url("/v1/tasks?limit=5"))),
        (
            "DELETE task",
            node.http.delete(node.url(&format!("/v1/tasks/{id}"))),
        ),
        ("GET /v1/cluster", node.http.get(node.url("/v1/cluster"))),
        ("GET /health", node.http.get(node.url("/health"))),
        (
            "GET /health/ready",
            node.http.get(node.url("/health/ready")),
        ),
        ("GET /metrics", node.http.get(node.url("/metrics"))),
    ];
    let mut store_errors = 0;
    for (what, request) in calls {
        // Twice: the first call after the loss can fail differently from later ones.
        for round in 0..2 {
            let request = request.try_clone().context("clone request")?;
            let request = request.header("x-request-id", format!("outage-{round}-{what}"));
            let raw = request.send().await?;
            let status = raw.status().as_u16();
            let headers = raw.headers().clone();
            let text = raw.text().await?;
            let lower = text.to_lowercase();
            for word in STORE_WORDS {
                ensure!(
                    !lower.contains(word),
                    "{what}: body mentions {word:?}: {text}"
                );
            }
            let answer = Answer {
                status,
                headers,
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
            };
            assert_no_store_words(what, &answer)?;
            if what == "GET /health/ready" {
                ensure!(status == 503, "ready while the store is down: {text}");
                let store = answer.body["checks"]["store"].as_str().unwrap_or_default();
                ensure!(
                    ["unreachable", "timeout"].contains(&store),
                    "readiness shows {store:?}, not a plain word"
                );
            } else if status >= 400 {
                assert_error_shape(what, &answer)?;
                let code = answer.error_code();
                if code == "store_unavailable" || code == "outcome_unknown" {
                    store_errors += 1;
                }
            }
        }
    }
    // The submissions, reads, listing and cancel all needed the store.
    ensure!(
        store_errors >= 12,
        "only {store_errors} store errors answered"
    );
    Ok(())
}

/// One submission of the frozen-Redis test and what the node answered.
#[derive(Debug)]
struct Outcome {
    key: String,
    status: u16,
    code: String,
    id: Option<String>,
}

#[tokio::test]
async fn a_503_during_a_frozen_redis_never_hides_an_accepted_task() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    // Without keys: with them, a request first reads its key from the store (at most once
    // a second), and behind the frozen pipeline that read, not the create this test is
    // about, is what meets the freeze. tests/tests/auth.rs covers keys; here the create
    // path alone is under test.
    let node = TestNode::start_temp(&["--store", &redis.url(), "--auth", "off"]).await?;
    let http = node.http.clone();
    let url = node.url("/v1/tasks");

    // Clients submit without pause, each task with its own idempotency key, from before
    // Redis is frozen until after it runs again. The freeze outlasts twice the store's
    // 5 s timeout, so writes sent into it time out and land once Redis resumes — even
    // a create that waited in the pipeline behind another write that timed out first.
    let stop_at = Instant::now() + Duration::from_secs(16);
    let mut clients = JoinSet::new();
    for c in 0..8 {
        let (http, url) = (http.clone(), url.clone());
        clients.spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = 0;
            while Instant::now() < stop_at {
                let key = format!("frozen-{c}-{i}");
                i += 1;
                let body = json!({ "kind": "noop", "idempotency_key": key });
                let answer = http.post(&url).json(&body).send().await?;
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap_or(Value::Null);
                outcomes.push(Outcome {
                    key,
                    status,
                    code: body["error"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    id: body["id"].as_str().map(str::to_owned),
                });
            }
            anyhow::Ok(outcomes)
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.pause()?;
    tokio::time::sleep(Duration::from_secs(12)).await;
    redis.resume()?;
    let mut outcomes = Vec::new();
    while let Some(done) = clients.join_next().await {
        outcomes.extend(done??);
    }

    let mut by_answer: HashMap<(u16, String), usize> = HashMap::new();
    for o in &outcomes {
        *by_answer.entry((o.status, o.code.clone())).or_default() += 1;
    }
    eprintln!("answers during the freeze: {by_answer:?}");
    let metrics = node.metrics().await?;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("taskmesh_store_errors"))
    {
        eprintln!("{line}");
    }
    let failed_creates = metric(&metrics, "taskmesh_store_errors_total", &[("op", "create")]);
    ensure!(
        failed_creates.unwrap_or(0.0) >= 1.0,
        "no create failed: the freeze did not hit a submission ({failed_creates:?})"
    );

    // Every 202 runs to success.
    let accepted: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status == 202)
        .filter_map(|o| o.id.clone())
        .collect();
    ensure!(!accepted.is_empty(), "nothing was accepted: {by_answer:?}");
    for view in node.wait_all_terminal(&accepted, WITHIN).await? {
        ensure!(view["status"] == "succeeded", "an accepted task: {view}");
    }
    // Every other answer is a 503 of the store, and a `store_unavailable` stored nothing:
    // the same key submitted again creates a new task (202), it does not find one (200).
    for o in outcomes.iter().filter(|o| o.status != 202) {
        ensure!(
            o.status == 503 && ["store_unavailable", "outcome_unknown"].contains(&o.code.as_str()),
            "unexpected answer during the freeze: {o:?}"
        );
        if o.code != "store_unavailable" {
            continue;
        }
        let again = json!({ "kind": "noop", "idempotency_key": o.key });
        let answer = node.post("/v1/tasks", &again).await?;
        ensure!(
            answer.status == 202,
            "{} was answered store_unavailable but its task exists: {} {}",
            o.key,
            answer.status,
            answer.body
        );
    }
    Ok(())
}
