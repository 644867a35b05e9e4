//! Bounded everything, seen from outside: slowloris connections, the connection cap,
//! the limit on requests in flight, the request timeout, and garbage on the cluster
//! port (handshake timeout, bounded log lines).

use std::time::Duration;

use anyhow::{Context, ensure};
use integration_tests::cluster::TestCluster;
use integration_tests::{TestNode, eventually};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Deadline of any single wait (generous: CI machines are slow).
const WITHIN: Duration = Duration::from_secs(60);

/// Raises this test process's open-files limit to the hard limit (thousands of sockets);
/// returns the hard limit.
fn raise_fd_limit(needed: u64) -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    ensure!(
        hard >= needed,
        "the hard open-files limit ({hard}) is below the {needed} this test needs"
    );
    Ok(hard)
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // an answer (e.g. 408) before the close
        }
    }
}

/// A submit-and-read round trip of a normal client on fresh connections.
async fn normal_client_works(node: &TestNode) -> anyhow::Result<()> {
    let client = node.fresh_client()?;
    let answer = client
        .post(node.url("/v1/tasks"))
        .json(&json!({"kind": "noop", "params": {}}))
        .send()
        .await?;
    ensure!(
        answer.status() == 202,
        "submit answered {}",
        answer.status()
    );
    let id = answer.json::<serde_json::Value>().await?["id"]
        .as_str()
        .context("no id")?
        .to_owned();
    eventually(WITHIN, "the task is read back succeeded", || async {
        let view: serde_json::Value = client
            .get(node.url(&format!("/v1/tasks/{id}")))
            .send()
            .await?
            .json()
            .await?;
        Ok((view["status"] == "succeeded").then_some(()))
    })
    .await
}

#[tokio::test]
async fn two_thousand_slowloris_connections_do_not_stop_a_normal_client() -> anyhow::Result<()> {
    const SLOW: usize = 2000;
    let hard = raise_fd_limit(SLOW as u64 + 1024)?;
    // Default bounds: the test checks what a node gets out of the box, started with the
    // common default soft limit of 1024 open files (which the node raises itself).
    let wrapper = ["prlimit".to_owned(), format!("--nofile=1024:{hard}")];
    let node = TestNode::start_wrapped(&wrapper, &[]).await?;
    let (alive_tx, alive) = tokio::sync::watch::channel(0usize);
    let alive_tx = std::sync::Arc::new(alive_tx);
    let mut slow = JoinSet::new();
    for _ in 0..SLOW {
        let (addr, alive_tx) = (node.addr, alive_tx.clone());
        slow.spawn(async move {
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return;
            };
            // A request head that never ends: one header line every 500 ms.
            if stream
                .write_all(b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\n")
                .await
                .is_err()
            {
                return;
            }
            alive_tx.send_modify(|n| *n += 1);
            let mut i = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                i += 1;
                if stream
                    .write_all(format!("X-Slow-{i}: x\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            alive_tx.send_modify(|n| *n -= 1);
        });
    }
    let mut alive_rx = alive.clone();
    tokio::time::timeout(WITHIN, alive_rx.wait_for(|n| *n >= SLOW * 9 / 10))
        .await
        .context("the slow connections did not open")??;
    normal_client_works(&node).await?;
    let still = *alive.borrow();
    ensure!(
        still >= SLOW * 9 / 10,
        "the slow connections must still be open while the normal client is served: {still}"
    );
    // Readiness and listing work too.
    ensure!(node.get("/health/ready").await?.status == 200);
    ensure!(!node.list("limit=10").await?.is_empty());
    slow.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_connection_that_does_not_send_its_head_in_time_is_closed() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&["--header-read-timeout-ms", "1000"]).await?;
    // Idle: nothing sent.
    let mut idle = TcpStream::connect(node.addr).await?;
    // Trickling: a byte of the head every 100 ms, never finishing it.
    let mut trickle = TcpStream::connect(node.addr).await?;
    trickle.write_all(b"GET /health HTTP/1.1\r\n").await?;
    let trickler = tokio::spawn(async move {
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle.write_all(b"X").await.is_err() {
                return true;
            }
        }
        false
    });
    ensure!(
        closed_within(&mut idle, WITHIN).await,
        "an idle connection must be closed after the header-read timeout"
    );
    ensure!(
        tokio::time::timeout(WITHIN, trickler).await??,
        "a trickling connection must be closed after the header-read timeout"
    );
    normal_client_works(&node).await
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_room_comes_back() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&["--max-connections", "20"]).await?;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(node.addr).await?);
    }
    // Once the node has accepted all 20, the next connection is closed unanswered.
    eventually(WITHIN, "a connection past the cap is closed", || async {
        let mut extra = TcpStream::connect(node.addr).await?;
        extra
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut buf)).await;
        Ok(matches!(read, Ok(Ok(_)) | Ok(Err(_)) if buf.is_empty()).then_some(()))
    })
    .await?;
    drop(held);
    eventually(WITHIN, "room comes back once connections close", || async {
        Ok((node.get("/health").await?.status == 200).then_some(()))
    })
    .await?;
    normal_client_works(&node).await
}

#[tokio::test]
async fn requests_past_the_concurrency_limit_get_503_but_probes_answer() -> anyhow::Result<()> {
    let node = TestNode::start_temp(&["--max-concurrent-requests", "2"]).await?;
    let id = node
        .submit(&json!({"kind": "sleep", "params": {"ms": 30000}}))
        .await?;
    // Two long-polls hold both slots. A poll can lose its race for a slot to the probing
    // request below and be refused itself: it is replaced, so the slots end up held.
    let poll_url = node.url(&format!("/v1/tasks/{id}?wait_ms=30000"));
    let poll = |polls: &mut JoinSet<_>| {
        let http = node.fresh_client().expect("a client of the node");
        let url = poll_url.clone();
        polls.spawn(async move { http.get(url).send().await.map(|r| r.status()) });
    };
    let mut polls = JoinSet::new();
    for _ in 0..2 {
        poll(&mut polls);
    }
    let refused = eventually(WITHIN, "a third request is refused", async || {
        while polls.try_join_next().is_some() {
            poll(&mut polls);
        }
        let answer = node
            .fresh_client()?
            .get(node.url(&format!("/v1/tasks/{id}")))
            .send()
            .await?;
        let status = answer.status().as_u16();
        let retry = answer.headers().get("retry-after").is_some();
        let header_id = answer
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        Ok((status == 503).then_some((retry, body, header_id)))
    })
    .await?;
    ensure!(refused.0, "a 503 carries Retry-After");
    ensure!(
        refused.1["error"]["code"] == "overloaded",
        "the 503's body: {}",
        refused.1
    );
    // The refusal is an answer like any other: it carries the request id.
    ensure!(
        refused.2.is_some() && refused.1["error"]["request_id"].as_str() == refused.2.as_deref(),
        "request id of the 503: header {:?}, body {}",
        refused.2,
        refused.1
    );
    for probe in ["/health", "/health/ready", "/metrics"] {
        let status = reqwest::Client::new()
            .get(node.url(probe))
            .send()
            .await?
            .status();
        ensure!(status == 200, "{probe} must answer while busy: {status}");
    }
    polls.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_gets_504() -> anyhow::Result<()> {
    // 5 s, not less: under a loaded CI machine a normal submission (fsync) must still fit.
    let node = TestNode::start_temp(&["--request-timeout-ms", "5000"]).await?;
    let mut stream = TcpStream::connect(node.addr).await?;
    // A whole head, with a valid key, announcing a body that never comes.
    let key = node.api_key().unwrap_or_default();
    let head = format!(
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {key}\r\nContent-Length: 100\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let head = tokio::time::timeout(WITHIN, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        anyhow::Ok(())
    })
    .await;
    ensure!(head.is_ok(), "no answer to a stalled upload");
    let text = String::from_utf8_lossy(&answer);
    ensure!(text.starts_with("HTTP/1.1 504"), "answer: {text}");
    ensure!(
        text.to_ascii_lowercase().contains("x-request-id:"),
        "the 504 carries the request id: {text}"
    );
    normal_client_works(&node).await
}

#[tokio::test]
async fn garbage_on_the_cluster_port_is_closed_and_logs_a_bounded_number_of_lines()
-> anyhow::Result<()> {
    raise_fd_limit(2048)?;
    let cluster = TestCluster::start(
        1,
        &["--log", "info", "--cluster-handshake-timeout-ms", "1000"],
    )
    .await?;
    let node = &cluster.nodes[0];
    let port: std::net::SocketAddr = cluster.cluster_addrs[0].parse()?;
    let lines = || node.log_excerpt().lines().count();
    let before = lines();
    let mut garbage = JoinSet::new();
    for i in 0..500u32 {
        garbage.spawn(async move {
            let mut stream = TcpStream::connect(port).await?;
            // Random-looking bytes, different per connection.
            let bytes: Vec<u8> = (0..64u32)
                .map(|j| (i.wrapping_mul(2_654_435_761).wrapping_add(j * 97) >> 7) as u8)
                .collect();
            stream.write_all(&bytes).await?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = garbage.join_next().await {
        done??;
    }
    // An idle connection that never authenticates is closed after the timeout.
    let mut idle = TcpStream::connect(port).await?;
    ensure!(
        closed_within(&mut idle, WITHIN).await,
        "an unauthenticated cluster connection must be closed after the handshake timeout"
    );
    ensure!(
        node.get("/health/ready").await?.status == 200,
        "the node stays ready"
    );
    normal_client_works(node).await?;
    let written = lines().saturating_sub(before);
    ensure!(
        written < 50,
        "500 garbage connections wrote {written} log lines\n{}",
        node.log_excerpt()
    );
    Ok(())
}
