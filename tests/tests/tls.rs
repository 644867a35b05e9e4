//! Encrypted links, black-box: a node on a TLS-only `redis-server` with an ACL user
//! (and the password in no log line or error), two nodes clustered over mutual TLS (and
//! a plaintext node refused), HTTPS on the API (and plain HTTP refused), and the CLI
//! over HTTPS. Every certificate is made by the test (`integration_tests::tls`).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use integration_tests::cluster::{COOKIE, JOIN_WITHIN, cluster_flags, cluster_view, wait_peers_up};
use integration_tests::tls::{TestPki, TlsRedis};
use integration_tests::{TestNode, eventually, free_port, taskmesh_bin};
use nix::sys::signal::Signal;
use serde_json::json;
use taskmesh_actors::store::redis::testing::RedisServer;

const PASSWORD: &str = "Pw-never-logged-7f3a";
const DONE_WITHIN: Duration = Duration::from_secs(60);
const LOG_WITHIN: Duration = Duration::from_secs(30);

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The cluster flags of node `id` on `cluster_addr` dialling `peers`, with mutual TLS
/// when `pki` is given (a certificate of its own, issued by the test CA).
fn node_flags(
    id: &str,
    redis_url: &str,
    cluster_addr: &str,
    peers: &[String],
    pki: Option<&TestPki>,
) -> anyhow::Result<Vec<String>> {
    let mut flags = cluster_flags(id, redis_url, cluster_addr, COOKIE, peers);
    flags.extend(["--auth".into(), "off".into()]);
    if let Some(pki) = pki {
        let files = pki.issue(id)?;
        for (flag, path) in [
            ("--cluster-tls-cert", files.cert),
            ("--cluster-tls-key", files.key),
            ("--cluster-tls-ca", pki.ca()),
        ] {
            flags.push(flag.into());
            flags.push(path.display().to_string());
        }
    }
    Ok(flags)
}

/// Runs `taskmesh node ARGS` to its exit (it must exit within a minute); returns its
/// exit code and everything it printed.
async fn run_node_to_exit(args: &[&str]) -> anyhow::Result<(Option<i32>, String)> {
    let dir = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(taskmesh_bin()?);
    command
        .arg("node")
        .args(["--listen", &format!("127.0.0.1:{}", free_port()?)])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--log-format", "text", "--log", "debug", "--auth", "off"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .context("the node did not exit within 60 s")??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("taskmesh node {args:?} → {:?}\n{text}", output.status);
    Ok((output.status.code(), text))
}

#[tokio::test]
async fn a_node_runs_tasks_on_a_tls_redis_with_an_acl_user() -> anyhow::Result<()> {
    let pki = TestPki::new()?;
    let redis = TlsRedis::start(&pki, "taskmesh", PASSWORD)?;
    let ca = pki.ca().display().to_string();
    let url = redis.url("taskmesh", PASSWORD);
    let node = TestNode::start_temp(&[
        "--store",
        &url,
        "--redis-ca-file",
        &ca,
        "--auth",
        "off",
        "--log",
        "info",
    ])
    .await?;
    let ids = node.submit_batch(&vec![json!({"kind": "noop"}); 5]).await?;
    for view in node.wait_all_terminal(&ids, DONE_WITHIN).await? {
        ensure!(view["status"] == "succeeded", "{view}");
    }
    let log = node.log_lines().join("\n");
    ensure!(
        log.contains("taskmesh:***@127.0.0.1"),
        "the store shows, masked, at start:\n{log}"
    );
    ensure!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_password_or_no_redis_stops_the_start_with_an_error_without_the_password()
-> anyhow::Result<()> {
    let pki = TestPki::new()?;
    let redis = TlsRedis::start(&pki, "taskmesh", "the-right-one")?;
    let ca = pki.ca().display().to_string();
    let nobody = format!("rediss://taskmesh:{PASSWORD}@127.0.0.1:{}/0", free_port()?);
    for url in [redis.url("taskmesh", PASSWORD), nobody] {
        let (code, text) = run_node_to_exit(&["--store", &url, "--redis-ca-file", &ca]).await?;
        ensure!(code.is_some_and(|c| c != 0), "exit {code:?}");
        ensure!(
            text.contains("connecting to the Redis task store at rediss://taskmesh:***@"),
            "a clear error naming the store: {text}"
        );
        ensure!(
            !text.contains(PASSWORD),
            "the password is in the output: {text}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn two_nodes_join_over_mutual_tls_and_a_task_crosses() -> anyhow::Result<()> {
    let pki = TestPki::new()?;
    let redis = RedisServer::start()?;
    let addrs = [free_port()?, free_port()?].map(|p| format!("127.0.0.1:{p}"));
    // n1 dials no one: n2 joins through n1's listener only.
    let mut n1 = node_flags("n1", &redis.url(), &addrs[0], &[], Some(&pki))?;
    n1.extend(["--log".into(), "info".into()]);
    let mut n2 = node_flags("n2", &redis.url(), &addrs[1], &addrs, Some(&pki))?;
    n2.extend(["--labels".into(), "gpu".into()]);
    let n1 = TestNode::start_temp(&strs(&n1)).await?;
    // A connection that never says a word must not hold up the peers behind it.
    let _silent = std::net::TcpStream::connect(&addrs[0])?;
    let n2 = TestNode::start_temp(&strs(&n2)).await?;
    wait_peers_up(&n1, 1, JOIN_WITHIN).await?;
    wait_peers_up(&n2, 1, JOIN_WITHIN).await?;
    // Only n2 has the label: submitted to n1, the task must run on n2.
    let id = n1.submit(&json!({"kind": "noop", "class": "gpu"})).await?;
    let view = n1.wait_terminal(&id, DONE_WITHIN).await?;
    ensure!(view["status"] == "succeeded", "{view}");
    ensure!(view["node"] == "n2", "the task ran on n2: {view}");
    let log = n1.log_lines().join("\n");
    ensure!(log.contains("cluster_tls=true"), "start line: {log}");
    Ok(())
}

#[tokio::test]
async fn a_plaintext_node_and_a_tls_node_refuse_each_other_with_a_log_line() -> anyhow::Result<()> {
    let pki = TestPki::new()?;
    let redis = RedisServer::start()?;
    let addrs = [free_port()?, free_port()?].map(|p| format!("127.0.0.1:{p}"));
    let secure = node_flags("secure", &redis.url(), &addrs[0], &addrs, Some(&pki))?;
    let plain = node_flags("plain", &redis.url(), &addrs[1], &addrs, None)?;
    let secure = TestNode::start_temp(&strs(&secure)).await?;
    let plain = TestNode::start_temp(&strs(&plain)).await?;
    // The TLS node refuses the plaintext dialer, and fails its own dial to the
    // plaintext node: both at warn (the test nodes log warnings only).
    eventually(LOG_WITHIN, "both refusals logged", || async {
        let log = secure.log_lines().join("\n");
        let refused_incoming = log.contains("cluster connection refused: TLS handshake failed")
            && log.contains("peer=127.0.0.1:");
        let refused_outgoing = log.contains("cluster TLS handshake with the peer failed")
            && log.contains(&format!("peer={}", addrs[1]));
        Ok((refused_incoming && refused_outgoing).then_some(()))
    })
    .await?;
    for node in [&secure, &plain] {
        let view = cluster_view(node).await?;
        let peers = view["peers"].as_array().context("peers")?;
        ensure!(peers.is_empty(), "nobody joins: {view}");
    }
    Ok(())
}

#[tokio::test]
async fn a_node_whose_certificate_another_ca_issued_never_joins() -> anyhow::Result<()> {
    let (pki, other) = (TestPki::new()?, TestPki::new()?);
    let redis = RedisServer::start()?;
    let addrs = [free_port()?, free_port()?].map(|p| format!("127.0.0.1:{p}"));
    let member = node_flags("member", &redis.url(), &addrs[0], &addrs, Some(&pki))?;
    // The intruder trusts the cluster's CA (so it would accept the member) but presents
    // a certificate of another CA: the member must refuse it as a client too.
    let mut intruder = node_flags("intruder", &redis.url(), &addrs[1], &addrs, Some(&other))?;
    let ca_at = intruder
        .iter()
        .position(|f| f == "--cluster-tls-ca")
        .context("--cluster-tls-ca")?;
    intruder[ca_at + 1] = pki.ca().display().to_string();
    let member = TestNode::start_temp(&strs(&member)).await?;
    let intruder = TestNode::start_temp(&strs(&intruder)).await?;
    eventually(LOG_WITHIN, "the intruder's certificate refused", || async {
        let log = member.log_lines().join("\n");
        let refused = log.contains("cluster connection refused: TLS handshake failed")
            && log.contains("invalid peer certificate");
        Ok(refused.then_some(()))
    })
    .await?;
    for node in [&member, &intruder] {
        let view = cluster_view(node).await?;
        let peers = view["peers"].as_array().context("peers")?;
        ensure!(peers.is_empty(), "nobody joins: {view}");
    }
    Ok(())
}

#[tokio::test]
async fn the_api_speaks_https_only_and_stops_gracefully() -> anyhow::Result<()> {
    let pki = TestPki::new()?;
    let files = pki.issue("api")?;
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let mut node = TestNode::start_https(
        &["--tls-cert", &cert, "--tls-key", &key, "--auth", "off"],
        &pki.ca(),
    )
    .await?;
    ensure!(node.url("/").starts_with("https://"), "{}", node.url("/"));
    let id = node.submit(&json!({"kind": "noop"})).await?;
    let view = node.wait_terminal(&id, DONE_WITHIN).await?;
    ensure!(view["status"] == "succeeded", "{view}");

    let plain = reqwest::Client::new()
        .get(format!("http://{}/health", node.addr))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    ensure!(plain.is_err(), "plain HTTP must fail: {plain:?}");
    let untrusted = reqwest::Client::new()
        .get(node.url("/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    ensure!(
        untrusted.is_err(),
        "a client without the CA must fail: {untrusted:?}"
    );

    node.signal(Signal::SIGTERM)?;
    let code = node.wait_exit(Duration::from_secs(60)).await?;
    ensure!(code == Some(0), "exit code {code:?} after SIGTERM");
    Ok(())
}

#[tokio::test]
async fn the_cli_talks_https_with_ca_file() -> anyhow::Result<()> {
    let pki = TestPki::new()?;
    let files = pki.issue("api")?;
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let node = TestNode::start_https(
        &["--tls-cert", &cert, "--tls-key", &key, "--auth", "off"],
        &pki.ca(),
    )
    .await?;
    let url = node.url("");
    let ca = pki.ca().display().to_string();
    let run = |args: Vec<String>| async move {
        let output = tokio::process::Command::new(taskmesh_bin()?)
            .args(&args)
            .env_remove("TASKMESH_CA_FILE")
            .env_remove("TASKMESH_API_KEY")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(60), output).await??;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        eprintln!("taskmesh {args:?} → {:?}\n{stdout}{stderr}", output.status);
        anyhow::Ok((output.status.code(), stdout, stderr))
    };
    let submit = |ca: Option<&str>| {
        let mut args: Vec<String> = [
            "submit",
            "noop",
            "--wait",
            "--output",
            "json",
            "--url",
            url.as_str(),
        ]
        .map(str::to_owned)
        .into();
        if let Some(ca) = ca {
            args.extend(["--ca-file".to_owned(), ca.to_owned()]);
        }
        args
    };
    let (code, stdout, _) = run(submit(Some(&ca))).await?;
    ensure!(
        code == Some(0),
        "submit --wait over https: {code:?} {stdout}"
    );
    ensure!(stdout.contains("succeeded"), "{stdout}");
    // Without the CA the node's certificate is not trusted: unavailable (exit 5).
    let (code, _, stderr) = run(submit(None)).await?;
    ensure!(code == Some(5), "without --ca-file: {code:?} {stderr}");
    ensure!(
        stderr.contains("certificate"),
        "the error says why: {stderr}"
    );
    Ok(())
}
