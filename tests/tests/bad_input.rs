//! Every way a request can be wrong, as a table: each gets the documented status and
//! `error.code`, none creates a task, and the node keeps working afterwards.

use std::time::Duration;

use integration_tests::TestNode;
use reqwest::Method;
use serde_json::{Value, json};

/// Small limits keep the oversized requests cheap.
const MAX_BODY: usize = 64 * 1024;
const MAX_PARAMS: usize = 1024;

/// A valid id that names no task.
const UNKNOWN_ID: &str = "00000000-0000-7000-8000-000000000000";

/// One bad request and the answer it must get.
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    /// `None`: no `Content-Type` header.
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    code: &'static str,
    /// Text the error message must contain (field names, known kinds).
    mentions: &'static [&'static str],
}

fn case(name: &'static str, method: Method, path: &str) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        content_type: None,
        body: String::new(),
        status: 0,
        code: "",
        mentions: &[],
    }
}

impl Case {
    fn json(mut self, body: impl Into<String>) -> Self {
        self.content_type = Some("application/json");
        self.body = body.into();
        self
    }

    fn content_type(mut self, content_type: Option<&'static str>) -> Self {
        self.content_type = content_type;
        self
    }

    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }

    fn mentioning(mut self, mentions: &'static [&'static str]) -> Self {
        self.mentions = mentions;
        self
    }
}

/// A submission with `task` as the body.
fn submit(name: &'static str, task: &Value) -> Case {
    case(name, Method::POST, "/v1/tasks").json(task.to_string())
}

/// A batch submission of `tasks`.
fn batch(name: &'static str, tasks: &[Value]) -> Case {
    case(name, Method::POST, "/v1/tasks/batch").json(json!({ "tasks": tasks }).to_string())
}

fn cases() -> Vec<Case> {
    use Method as M;
    let mc = |paths: i64| {
        json!({
            "kind": "monte_carlo_option",
            "params": { "s0": 100.0, "k": 100.0, "r": 0.05, "sigma": 0.2, "t": 1.0, "paths": paths },
        })
    };
    let big_params = json!({ "kind": "echo", "params": { "value": "x".repeat(MAX_PARAMS) } });
    let huge_body = json!({ "kind": "echo", "params": { "value": "x".repeat(MAX_BODY) } });
    let noop = json!({ "kind": "noop" });
    let task_path = format!("/v1/tasks/{UNKNOWN_ID}");
    vec![
        // Bodies that are not a submission at all.
        case("malformed JSON", M::POST, "/v1/tasks")
            .json(r#"{"kind": "noop""#)
            .expect(400, "malformed_json"),
        case("not JSON", M::POST, "/v1/tasks")
            .json("hello")
            .expect(400, "malformed_json"),
        case("text/plain", M::POST, "/v1/tasks")
            .json(noop.to_string())
            .content_type(Some("text/plain"))
            .expect(415, "unsupported_media_type"),
        case("no content type", M::POST, "/v1/tasks")
            .json(noop.to_string())
            .content_type(None)
            .expect(415, "unsupported_media_type"),
        case("batch as text/plain", M::POST, "/v1/tasks/batch")
            .json(json!({ "tasks": [noop] }).to_string())
            .content_type(Some("text/plain"))
            .expect(415, "unsupported_media_type"),
        submit("body over --max-body-bytes", &huge_body).expect(413, "too_large"),
        submit("params over --max-params-bytes", &big_params)
            .expect(413, "too_large")
            .mentioning(&["params"]),
        submit("an array", &json!([])).expect(422, "invalid_request"),
        // Kinds and params.
        submit("unknown kind", &json!({ "kind": "quantum_annealing" }))
            .expect(422, "unknown_kind")
            .mentioning(&["quantum_annealing", "monte_carlo_option", "noop"]),
        submit("missing kind", &json!({ "params": {} }))
            .expect(422, "invalid_request")
            .mentioning(&["kind"]),
        submit("paths: 0", &mc(0))
            .expect(422, "invalid_params")
            .mentioning(&["paths"]),
        submit("paths: -1", &mc(-1))
            .expect(422, "invalid_params")
            .mentioning(&["paths"]),
        submit("missing param", &json!({ "kind": "sleep", "params": {} }))
            .expect(422, "invalid_params")
            .mentioning(&["ms"]),
        submit(
            "param of the wrong type",
            &json!({ "kind": "sleep", "params": { "ms": "soon" } }),
        )
        .expect(422, "invalid_params")
        .mentioning(&["ms"]),
        submit(
            "unknown param",
            &json!({ "kind": "sleep", "params": { "ms": 1, "s": 2 } }),
        )
        .expect(422, "invalid_params"),
        submit(
            "params not an object",
            &json!({ "kind": "echo", "params": [1] }),
        )
        .expect(422, "invalid_params"),
        // Task options.
        submit("priority: 5", &json!({ "kind": "noop", "priority": 5 }))
            .expect(422, "invalid_request")
            .mentioning(&["priority"]),
        submit(
            "priority: urgent",
            &json!({ "kind": "noop", "priority": "urgent" }),
        )
        .expect(422, "invalid_request")
        .mentioning(&["priority"]),
        submit(
            "max_retries: \"x\"",
            &json!({ "kind": "noop", "max_retries": "x" }),
        )
        .expect(422, "invalid_request")
        .mentioning(&["max_retries"]),
        submit(
            "max_retries: 1000",
            &json!({ "kind": "noop", "max_retries": 1000 }),
        )
        .expect(422, "invalid_request")
        .mentioning(&["max_retries"]),
        submit(
            "max_retries over u32",
            &json!({ "kind": "noop", "max_retries": 1u64 << 40 }),
        )
        .expect(422, "invalid_request")
        .mentioning(&["max_retries"]),
        submit(
            "max_retries: -1",
            &json!({ "kind": "noop", "max_retries": -1 }),
        )
        .expect(422, "invalid_request")
        .mentioning(&["max_retries"]),
        submit("timeout_ms: 0", &json!({ "kind": "noop", "timeout_ms": 0 }))
            .expect(422, "invalid_request")
            .mentioning(&["timeout_ms"]),
        submit(
            "timeout_ms: -5",
            &json!({ "kind": "noop", "timeout_ms": -5 }),
        )
        .expect(422, "invalid_request")
        .mentioning(&["timeout_ms"]),
        submit("unknown field", &json!({ "kind": "noop", "retries": 2 }))
            .expect(422, "invalid_request")
            .mentioning(&["retries"]),
        submit(
            "empty idempotency key",
            &json!({ "kind": "noop", "idempotency_key": "" }),
        )
        .expect(422, "invalid_request")
        .mentioning(&["idempotency_key"]),
        submit("unknown class", &json!({ "kind": "noop", "class": "gpu" }))
            .expect(422, "unknown_class")
            .mentioning(&["gpu"]),
        // Batches: validated all or nothing.
        batch("empty batch", &[]).expect(422, "invalid_batch"),
        batch("1001 tasks", &vec![noop.clone(); 1001])
            .expect(422, "invalid_batch")
            .mentioning(&["1000"]),
        batch(
            "one unknown kind",
            &[noop.clone(), noop.clone(), json!({ "kind": "nope" })],
        )
        .expect(422, "unknown_kind")
        .mentioning(&["tasks[2]"]),
        batch("one invalid param", &[noop.clone(), mc(0)])
            .expect(422, "invalid_params")
            .mentioning(&["tasks[1]", "paths"]),
        batch(
            "one bad priority",
            &[noop.clone(), json!({ "kind": "noop", "priority": 5 })],
        )
        .expect(422, "invalid_request")
        .mentioning(&["priority"]),
        batch("one oversized params", &[noop.clone(), big_params.clone()])
            .expect(413, "too_large")
            .mentioning(&["tasks[1]"]),
        case("batch without `tasks`", M::POST, "/v1/tasks/batch")
            .json(json!([noop]).to_string())
            .expect(422, "invalid_request"),
        // Ids and queries.
        case("invalid id", M::GET, "/v1/tasks/not-a-uuid").expect(400, "invalid_id"),
        case("cancel invalid id", M::DELETE, "/v1/tasks/12345").expect(400, "invalid_id"),
        case("unknown id", M::GET, &task_path).expect(404, "not_found"),
        case("cancel unknown id", M::DELETE, &task_path).expect(404, "not_found"),
        case(
            "non-numeric wait_ms",
            M::GET,
            &format!("{task_path}?wait_ms=soon"),
        )
        .expect(400, "invalid_query")
        .mentioning(&["wait_ms"]),
        case(
            "negative wait_ms",
            M::GET,
            &format!("{task_path}?wait_ms=-1"),
        )
        .expect(400, "invalid_query")
        .mentioning(&["wait_ms"]),
        case("invalid status filter", M::GET, "/v1/tasks?status=done")
            .expect(400, "invalid_query")
            .mentioning(&["status"]),
        case("non-numeric limit", M::GET, "/v1/tasks?limit=all")
            .expect(400, "invalid_query")
            .mentioning(&["limit"]),
        // Routes and methods.
        case("PUT /v1/tasks", M::PUT, "/v1/tasks").expect(405, "method_not_allowed"),
        case("DELETE /v1/tasks", M::DELETE, "/v1/tasks").expect(405, "method_not_allowed"),
        case("GET /v1/tasks/batch", M::GET, "/v1/tasks/batch").expect(405, "method_not_allowed"),
        case("POST /v1/tasks/{id}", M::POST, &task_path).expect(405, "method_not_allowed"),
        case("POST /health", M::POST, "/health").expect(405, "method_not_allowed"),
        case("unknown route", M::GET, "/v2/tasks").expect(404, "not_found"),
        case("root", M::GET, "/").expect(404, "not_found"),
    ]
}

#[tokio::test]
async fn bad_requests_get_precise_errors_and_change_nothing() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[
        "--max-body-bytes",
        &MAX_BODY.to_string(),
        "--max-params-bytes",
        &MAX_PARAMS.to_string(),
    ])
    .await?;

    let mut failures = Vec::new();
    for case in cases() {
        let mut request = node.http.request(case.method.clone(), node.url(&case.path));
        if let Some(content_type) = case.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if !case.body.is_empty() {
            request = request.body(case.body.clone());
        }
        let answer = node.send(request).await?;
        let message = answer.error_message();
        let missing: Vec<_> = case
            .mentions
            .iter()
            .filter(|m| !message.contains(*m))
            .collect();
        if answer.status != case.status || answer.error_code() != case.code || !missing.is_empty() {
            failures.push(format!(
                "{}: expected {} {} mentioning {:?}, got {} {}",
                case.name, case.status, case.code, case.mentions, answer.status, answer.body
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Not one of them created a task (batches are all or nothing).
    assert_eq!(node.list("limit=1000").await?, Vec::<Value>::new());

    // And the node is fine.
    let ready = node.get("/health/ready").await?;
    assert_eq!(ready.status, 200, "{:?}", ready.body);
    let echo = json!({ "kind": "echo", "params": { "value": "still here" } });
    let id = node.submit(&echo).await?;
    let view = node.wait_terminal(&id, Duration::from_secs(60)).await?;
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(view["result"]["value"], "still here");
    Ok(())
}

#[tokio::test]
async fn a_charset_in_the_content_type_is_accepted() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&[]).await?;
    let answer = node
        .post_raw(
            "/v1/tasks",
            "application/json; charset=utf-8",
            r#"{"kind":"noop"}"#,
        )
        .await?;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    Ok(())
}
