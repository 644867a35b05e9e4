//! Rate limits (`--auth on`), black-box: a key flooded past its limit gets 429s with
//! `Retry-After` and the `RateLimit-Policy` / `RateLimit` headers and creates nothing
//! more, while another key is unaffected; requests without a valid key are limited per
//! client IP (`X-Forwarded-For` only from trusted proxies), the probes never; a batch of
//! N costs N; the CLI waits out a 429; and on three nodes sharing Redis a key's limit
//! holds for the whole cluster.
//!
//! Every request here goes through a plain client of this file's own, so which key (if
//! any) a request carries is exactly what the test says.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use integration_tests::cluster::TestCluster;
use integration_tests::{Answer, TestNode, metric, taskmesh_bin};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::Instant;

/// A well-formed admin key every node of a test is given (`--admin-key-file`).
const ADMIN: &str = "tm_ratelimitadm_0123456789abcdef0123456789abcdef";

/// A quick task.
fn noop() -> Value {
    json!({"kind": "sleep", "params": {"ms": 1}})
}

/// Writes [`ADMIN`] to a file in `dir` and answers the node flags: auth on with it.
fn auth_flags(dir: &Path) -> anyhow::Result<Vec<String>> {
    let file = dir.join("admin.key");
    std::fs::write(&file, ADMIN)?;
    Ok(vec![
        "--auth".into(),
        "on".into(),
        "--admin-key-file".into(),
        file.display().to_string(),
    ])
}

/// Sends `method path` to `node` with `key` (if any), `body` (if any) and extra headers.
async fn call(
    http: &reqwest::Client,
    node: &TestNode,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> anyhow::Result<Answer> {
    let mut request = http.request(method, node.url(path));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = serde_json::from_slice(&r.bytes().await?).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Creates a key with `scopes` and, if given, its own rate limit; answers the whole key.
async fn create_key(
    http: &reqwest::Client,
    node: &TestNode,
    scopes: &[&str],
    rate_limit: Option<Value>,
) -> anyhow::Result<String> {
    let mut body = json!({"name": "limited", "scopes": scopes});
    if let Some(limit) = rate_limit {
        body["rate_limit"] = limit;
    }
    // The admin key the node's own client sends: `ADMIN`, or a cluster's key.
    let answer = call(
        http,
        node,
        node.api_key(),
        Method::POST,
        "/v1/keys",
        Some(&body),
        &[],
    )
    .await?;
    ensure!(
        answer.status == 201,
        "create key: {} {}",
        answer.status,
        answer.body
    );
    Ok(answer.body["key"].as_str().context("key")?.to_owned())
}

/// How many tasks the store holds, as the admin lists them.
async fn task_count(http: &reqwest::Client, node: &TestNode) -> anyhow::Result<usize> {
    let answer = call(
        http,
        node,
        Some(ADMIN),
        Method::GET,
        "/v1/tasks?limit=1000",
        None,
        &[],
    )
    .await?;
    ensure!(
        answer.status == 200,
        "list: {} {}",
        answer.status,
        answer.body
    );
    Ok(answer.body["tasks"].as_array().context("tasks")?.len())
}

/// Checks a 429 of `scope`: the error body, `Retry-After` and both draft headers.
fn check_refusal(answer: &Answer, scope: &str, burst: u32) -> anyhow::Result<()> {
    ensure!(answer.status == 429, "{} {}", answer.status, answer.body);
    ensure!(answer.error_code() == "rate_limited", "{}", answer.body);
    ensure!(
        answer.body["error"]["request_id"].is_string(),
        "{}",
        answer.body
    );
    let retry: u64 = answer
        .header("retry-after")
        .context("Retry-After")?
        .parse()?;
    ensure!(retry >= 1, "Retry-After {retry}");
    let policy = answer
        .header("ratelimit-policy")
        .context("RateLimit-Policy")?;
    ensure!(
        policy.starts_with(&format!("\"{scope}\";q={burst};w=")),
        "RateLimit-Policy: {policy}"
    );
    // `r` is what is left: 0 after a flood, more when a large batch was refused.
    let state = answer.header("ratelimit").context("RateLimit")?;
    ensure!(
        state.starts_with(&format!("\"{scope}\";r=")) && state.contains(";t="),
        "RateLimit: {state}"
    );
    Ok(())
}

#[tokio::test]
async fn a_flooding_key_gets_429s_with_headers_and_creates_nothing_more() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut flags = auth_flags(dir.path())?;
    flags.extend(["--key-rate-limit".into(), "1000/1000".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = TestNode::start_temp(&flags).await?;
    let http = reqwest::Client::new();
    let limited = create_key(
        &http,
        &node,
        &["submit"],
        Some(json!({"per_sec": 1, "burst": 5})),
    )
    .await?;
    let other = create_key(&http, &node, &["submit"], None).await?;

    // 25 submissions at once: 5 times the burst.
    let start = Instant::now();
    let mut answers = Vec::new();
    for _ in 0..25 {
        answers.push(
            call(
                &http,
                &node,
                Some(&limited),
                Method::POST,
                "/v1/tasks",
                Some(&noop()),
                &[],
            )
            .await?,
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status != 202).collect();
    // The burst, and one more per second the flood took: count, not time, decides.
    let allowance = 5 + elapsed.ceil() as usize;
    ensure!(
        (5..=allowance).contains(&accepted),
        "accepted {accepted} of 25 in {elapsed:.2} s; allowed 5..={allowance}"
    );
    for answer in &refused {
        check_refusal(answer, "key", 5)?;
        ensure!(
            answer
                .header("ratelimit")
                .is_some_and(|v| v.starts_with("\"key\";r=0;")),
            "{:?}",
            answer.headers
        );
    }
    let first = &answers[0];
    ensure!(
        first.header("ratelimit-policy") == Some("\"key\";q=5;w=5")
            && first.header("ratelimit") == Some("\"key\";r=4;t=1"),
        "an allowed answer carries the headers too: {:?}",
        first.headers
    );
    ensure!(
        task_count(&http, &node).await? == accepted,
        "a 429 created nothing"
    );

    // Another key, under the default limit, is unaffected.
    let answer = call(
        &http,
        &node,
        Some(&other),
        Method::POST,
        "/v1/tasks",
        Some(&noop()),
        &[],
    )
    .await?;
    ensure!(answer.status == 202, "{} {}", answer.status, answer.body);
    ensure!(
        answer.header("ratelimit-policy") == Some("\"key\";q=1000;w=1"),
        "{:?}",
        answer.headers
    );

    let text = node.metrics().await?;
    let counted = metric(&text, "taskmesh_rate_limited_total", &[("scope", "key")]);
    ensure!(
        counted == Some(refused.len() as f64),
        "metric {counted:?}, refused {}",
        refused.len()
    );
    Ok(())
}

#[tokio::test]
async fn requests_without_a_valid_key_are_limited_per_client_ip() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut flags = auth_flags(dir.path())?;
    flags.extend(["--ip-rate-limit".into(), "1/3".into()]);
    let direct: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = TestNode::start_temp(&direct).await?;
    let http = reqwest::Client::new();

    // Three guesses get their 401 (counted), the rest 429, whatever X-Forwarded-For says.
    let bad_key = "tm_aaaaaaaaaaaa_ffffffffffffffffffffffffffffffff";
    let mut statuses = Vec::new();
    for i in 0..10 {
        let forged = format!("203.0.113.{i}");
        let key = (i % 2 == 0).then_some(bad_key);
        let answer = call(
            &http,
            &node,
            key,
            Method::GET,
            "/v1/tasks",
            None,
            &[("x-forwarded-for", &forged)],
        )
        .await?;
        if answer.status == 429 {
            check_refusal(&answer, "ip", 3)?;
        } else {
            ensure!(answer.status == 401, "{} {}", answer.status, answer.body);
            ensure!(
                answer.header("ratelimit-policy") == Some("\"ip\";q=3;w=3"),
                "{:?}",
                answer.headers
            );
        }
        statuses.push(answer.status);
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    ensure!((3..=5).contains(&unauthorized), "{statuses:?}");
    ensure!(statuses.ends_with(&[429, 429, 429]), "{statuses:?}");

    // A valid key from the same address passes; the probes are never limited.
    let answer = call(
        &http,
        &node,
        Some(ADMIN),
        Method::GET,
        "/v1/tasks",
        None,
        &[],
    )
    .await?;
    ensure!(answer.status == 200, "{} {}", answer.status, answer.body);
    for path in ["/health", "/health/ready", "/metrics"] {
        for _ in 0..10 {
            let answer = call(&http, &node, None, Method::GET, path, None, &[]).await?;
            ensure!(answer.status == 200, "{path}: {}", answer.status);
        }
    }
    let text = node.metrics().await?;
    let counted = metric(&text, "taskmesh_rate_limited_total", &[("scope", "ip")]);
    ensure!(
        counted == Some((10 - unauthorized) as f64),
        "metric {counted:?}"
    );

    // Behind a trusted proxy, each forwarded client has its own bucket.
    let dir2 = tempfile::tempdir()?;
    let mut flags = auth_flags(dir2.path())?;
    flags.extend([
        "--ip-rate-limit".into(),
        "1/3".into(),
        "--trusted-proxies".into(),
        "127.0.0.0/8".into(),
    ]);
    let proxied: Vec<&str> = flags.iter().map(String::as_str).collect();
    let behind = TestNode::start_temp(&proxied).await?;
    for i in 0..10 {
        let client = format!("6.6.6.6, 203.0.113.{i}");
        let answer = call(
            &http,
            &behind,
            None,
            Method::GET,
            "/v1/tasks",
            None,
            &[("x-forwarded-for", &client)],
        )
        .await?;
        ensure!(
            answer.status == 401,
            "client {i}: {} {}",
            answer.status,
            answer.body
        );
    }
    let mut last = 0;
    for _ in 0..6 {
        let answer = call(
            &http,
            &behind,
            None,
            Method::GET,
            "/v1/tasks",
            None,
            &[("x-forwarded-for", "198.51.100.7")],
        )
        .await?;
        last = answer.status;
    }
    ensure!(last == 429, "one forwarded client is still limited: {last}");
    Ok(())
}

#[tokio::test]
async fn a_batch_of_n_tasks_costs_n() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let flags = auth_flags(dir.path())?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = TestNode::start_temp(&flags).await?;
    let http = reqwest::Client::new();
    let key = create_key(
        &http,
        &node,
        &["submit"],
        Some(json!({"per_sec": 1, "burst": 50})),
    )
    .await?;
    let batch = |n: usize| json!({"tasks": vec![noop(); n]});
    let send = async |n: usize| {
        call(
            &http,
            &node,
            Some(&key),
            Method::POST,
            "/v1/tasks/batch",
            Some(&batch(n)),
            &[],
        )
        .await
    };

    // More than the burst can never pass: 422, not a 429 to retry forever. (The request
    // itself costs 1, like every request: 49 left.)
    let never = send(51).await?;
    ensure!(never.status == 422, "{} {}", never.status, never.body);
    ensure!(
        never.error_code() == "over_rate_limit_burst",
        "{}",
        never.body
    );
    let first = send(30).await?;
    ensure!(first.status == 202, "{} {}", first.status, first.body);
    ensure!(
        first
            .header("ratelimit")
            .is_some_and(|v| v.starts_with("\"key\";r=19;")),
        "31 of 50 spent: {:?}",
        first.headers
    );
    // 25 more do not fit in the 19 left (plus the one a second refills).
    let over = send(25).await?;
    check_refusal(&over, "key", 50)?;
    ensure!(
        over.header("ratelimit")
            .is_some_and(|v| v.starts_with("\"key\";r=18;")),
        "the refused batch took nothing but its request's 1: {:?}",
        over.headers
    );
    ensure!(
        task_count(&http, &node).await? == 30,
        "the refused batches created nothing"
    );
    let fits = send(18).await?;
    ensure!(fits.status == 202, "{} {}", fits.status, fits.body);
    ensure!(task_count(&http, &node).await? == 48);
    Ok(())
}

#[tokio::test]
async fn the_cli_waits_out_a_429_and_then_submits() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let flags = auth_flags(dir.path())?;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = TestNode::start_temp(&flags).await?;
    let http = reqwest::Client::new();
    let key = create_key(
        &http,
        &node,
        &["submit"],
        Some(json!({"per_sec": 1, "burst": 1})),
    )
    .await?;
    let work = tempfile::tempdir()?;
    let url = node.url("");
    // The CLI must start within the second the bucket takes to refill; on a machine too
    // busy for that, spend the bucket and try again.
    for attempt in 1..=3 {
        let spent = call(
            &http,
            &node,
            Some(&key),
            Method::POST,
            "/v1/tasks",
            Some(&noop()),
            &[],
        )
        .await?;
        ensure!(matches!(spent.status, 202 | 429), "{}", spent.status);
        let output = tokio::process::Command::new(taskmesh_bin()?)
            .args(["submit", "sleep", "--params", r#"{"ms":1}"#, "--url", &url])
            .env("TASKMESH_API_KEY", &key)
            .current_dir(work.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(
            output.status.code() == Some(0),
            "exit {:?}: {stderr}",
            output.status.code()
        );
        if stderr.contains("429 rate_limited, retrying in 1s") {
            return Ok(());
        }
        eprintln!("attempt {attempt}: the CLI was not refused: {stderr}");
    }
    anyhow::bail!("the CLI never met a 429")
}

/// The issue's acceptance figure: over 10 s at 5 × a key's limit, spread over three
/// nodes sharing Redis, the accepted requests are within ±15 % of what the limit allows
/// (rate × time + burst). The allowance is computed from the flood's measured length, so
/// the assertion counts requests and does not depend on how fast the machine is.
#[tokio::test]
async fn a_keys_limit_holds_across_a_three_node_cluster() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, &[]).await?;
    let nodes = &cluster.nodes;
    let http = reqwest::Client::new();
    let (rate, burst) = (10.0, 20.0);
    let key = create_key(
        &http,
        &nodes[0],
        &["submit"],
        Some(json!({"per_sec": 10, "burst": 20})),
    )
    .await?;

    let accepted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut sent = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let start = Instant::now();
    let mut last_sent = start;
    for i in 0..500 {
        tick.tick().await;
        last_sent = Instant::now();
        let node = nodes[i % 3].url("/v1/tasks");
        let (http, key) = (http.clone(), key.clone());
        let (accepted, refused) = (Arc::clone(&accepted), Arc::clone(&refused));
        sent.spawn(async move {
            let answer = http
                .post(node)
                .bearer_auth(key)
                .json(&noop())
                .send()
                .await?;
            match answer.status().as_u16() {
                202 => accepted.fetch_add(1, Ordering::Relaxed),
                429 => refused.fetch_add(1, Ordering::Relaxed),
                other => anyhow::bail!("answered {other}"),
            };
            anyhow::Ok(())
        });
    }
    while let Some(done) = sent.join_next().await {
        done??;
    }
    let window = (last_sent - start).as_secs_f64();
    let accepted = accepted.load(Ordering::Relaxed) as f64;
    let allowed = rate * window + burst;
    let error = (accepted - allowed) / allowed;
    eprintln!(
        "cluster-wide limit: {accepted} accepted, {} refused over {window:.2} s; the limit \
         allows {allowed:.1}; error {:+.1} %",
        refused.load(Ordering::Relaxed),
        error * 100.0
    );
    ensure!(
        error.abs() <= 0.15,
        "accepted {accepted}, allowed {allowed:.1}"
    );
    let per_node = 500.0 / 3.0;
    ensure!(accepted < per_node, "not three times the limit");
    Ok(())
}
