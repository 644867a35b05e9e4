//! The cluster, black-box: real `taskmesh` processes on loopback sharing a real
//! `redis-server`, joined by `--peers` or by DNS discovery.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use integration_tests::cluster::{
    COOKIE, JOIN_WITHIN, TestCluster, cluster_flags, cluster_view, peers, wait_peers_up,
};
use integration_tests::{ONE_WORKER, TestNode, eventually, free_port, metric};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use taskmesh_actors::store::redis::testing::RedisServer;

const DONE_WITHIN: Duration = Duration::from_secs(180);

fn mc_task(paths: u64) -> Value {
    json!({
        "kind": "monte_carlo_option",
        "params": {"s0": 100, "k": 100, "r": 0.05, "sigma": 0.2, "t": 1, "paths": paths}
    })
}

fn sleep_task(ms: u64) -> Value {
    json!({"kind": "sleep", "params": {"ms": ms}})
}

/// How many of `views` ran on each node.
fn split(views: &[Value]) -> HashMap<String, usize> {
    let mut by_node = HashMap::new();
    for v in views {
        let node = v["node"].as_str().unwrap_or("none").to_owned();
        *by_node.entry(node).or_default() += 1;
    }
    by_node
}

#[tokio::test]
async fn three_nodes_joined_by_peers_share_a_burst_submitted_to_one() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, &["--workers", "2", "--min-workers", "2"]).await?;
    let n1 = &cluster.nodes[0];

    // Every node shows both others up, with their addresses.
    for node in &cluster.nodes {
        let view = cluster_view(node).await?;
        let addrs: Vec<&str> = view["peers"]
            .as_array()
            .context("peers")?
            .iter()
            .filter_map(|p| p["address"].as_str())
            .collect();
        ensure!(addrs.len() == 2, "{view}");
        ensure!(
            addrs
                .iter()
                .all(|a| cluster.cluster_addrs.iter().any(|c| c == a)),
            "{view}"
        );
    }

    // 1,000 CPU tasks, all submitted to n1 in batches of 100 sent at once.
    let batch: Vec<Value> = (0..100).map(|_| mc_task(20_000)).collect();
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (http, url, batch) = (n1.http.clone(), n1.url("/v1/tasks/batch"), batch.clone());
        sends.spawn(async move {
            let r = http
                .post(url)
                .json(&json!({ "tasks": batch }))
                .send()
                .await?;
            ensure!(r.status() == 202, "batch answered {}", r.status());
            let body: Value = r.json().await?;
            let ids: Vec<String> = body["ids"]
                .as_array()
                .context("ids")?
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect();
            Ok::<_, anyhow::Error>(ids)
        });
    }
    let mut ids = Vec::new();
    for sent in sends.join_all().await {
        ids.extend(sent?);
    }
    ensure!(ids.len() == 1000);

    let views = n1.wait_all_terminal(&ids, DONE_WITHIN).await?;
    ensure!(
        views.iter().all(|v| v["status"] == "succeeded"),
        "not all succeeded"
    );
    let by_node = split(&views);
    eprintln!("split of 1000 tasks submitted to n1: {by_node:?}");
    for id in ["n1", "n2", "n3"] {
        let ran = by_node.get(id).copied().unwrap_or(0);
        ensure!(ran >= 100, "{id} ran only {ran} of 1000: {by_node:?}");
    }
    // n1 handed work to its peers through the cluster, and counted it.
    let metrics = n1.metrics().await?;
    let remote = metric(
        &metrics,
        "taskmesh_dispatches_total",
        &[("target", "remote")],
    );
    ensure!(
        remote.unwrap_or(0.0) >= 200.0,
        "remote dispatches: {remote:?}"
    );

    // Any node answers for any task.
    for node in &cluster.nodes[1..] {
        for id in ids.iter().step_by(7) {
            let view = node.task(id).await?;
            ensure!(view["status"] == "succeeded", "{view}");
        }
    }
    Ok(())
}

/// The wrapper that runs a node with its own view of `/etc/hosts`: a private mount
/// namespace where `hosts` is bind-mounted over the system file, so the real resolver
/// (glibc's getaddrinfo) resolves the test's names.
fn with_hosts_file(hosts: &std::path::Path) -> Vec<String> {
    [
        "unshare",
        "--mount",
        "sh",
        "-c",
        r#"mount --bind "$0" /etc/hosts && exec "$@""#,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([hosts.display().to_string()])
    .collect()
}

#[tokio::test]
async fn nodes_find_each_other_through_dns_discovery() -> anyhow::Result<()> {
    let redis = RedisServer::start()?;
    let dir = tempfile::tempdir()?;
    let hosts = dir.path().join("hosts");
    // One name, three loopback addresses: what a compose service name resolves to.
    let ips = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];
    let mut text = String::from("127.0.0.1 localhost\n");
    for ip in ips {
        text.push_str(&format!("{ip} taskmesh-peers\n"));
    }
    std::fs::write(&hosts, text)?;
    let port = free_port()?;
    let wrapper = with_hosts_file(&hosts);
    let mut nodes = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let addr = format!("{ip}:{port}");
        let mut flags = cluster_flags(&format!("d{}", i + 1), &redis.url(), &addr, COOKIE, &[]);
        flags.extend(["--discover".into(), format!("dns:taskmesh-peers:{port}")]);
        flags.extend(ONE_WORKER.iter().map(|s| (*s).to_owned()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        nodes.push(TestNode::start_wrapped(&wrapper, &flags).await?);
    }
    for node in &nodes {
        wait_peers_up(node, 2, JOIN_WITHIN).await?;
    }
    // The joined cluster runs work everywhere: 30 sleeps on one-worker nodes.
    let tasks: Vec<Value> = (0..30).map(|_| sleep_task(200)).collect();
    let ids = nodes[0].submit_batch(&tasks).await?;
    let views = nodes[0].wait_all_terminal(&ids, DONE_WITHIN).await?;
    let by_node = split(&views);
    ensure!(
        by_node.len() == 3,
        "work did not reach every node: {by_node:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_node_with_the_wrong_cookie_never_joins_and_gets_no_tasks() -> anyhow::Result<()> {
    let cluster = TestCluster::start(2, ONE_WORKER).await?;
    let intruder_addr = format!("127.0.0.1:{}", free_port()?);
    let mut flags = cluster_flags(
        "intruder",
        &cluster.redis.url(),
        &intruder_addr,
        "not-the-cookie",
        &cluster.cluster_addrs,
    );
    flags.extend(ONE_WORKER.iter().map(|s| (*s).to_owned()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let intruder = TestNode::start_temp(&flags).await?;

    // While the intruder keeps dialling, the members run a burst: none of it reaches
    // the intruder, and nobody lists it.
    let tasks: Vec<Value> = (0..40).map(|_| sleep_task(100)).collect();
    let ids = cluster.nodes[0].submit_batch(&tasks).await?;
    let views = cluster.nodes[0]
        .wait_all_terminal(&ids, DONE_WITHIN)
        .await?;
    let by_node = split(&views);
    ensure!(!by_node.contains_key("intruder"), "{by_node:?}");
    ensure!(by_node.len() == 2, "{by_node:?}");
    for node in &cluster.nodes {
        let seen = peers(&cluster_view(node).await?);
        ensure!(!seen.contains_key("intruder"), "{seen:?}");
    }
    let seen = peers(&cluster_view(&intruder).await?);
    ensure!(seen.is_empty(), "the intruder sees {seen:?}");
    Ok(())
}

#[tokio::test]
async fn a_long_poll_on_one_node_is_answered_when_the_task_finishes_on_another()
-> anyhow::Result<()> {
    let cluster = TestCluster::start(2, ONE_WORKER).await?;
    // Keep n1's worker busy so the next task is placed on n2.
    let busy = cluster.nodes[0].submit(&sleep_task(3000)).await?;
    let id = cluster.nodes[0].submit(&sleep_task(300)).await?;
    let placed = cluster.nodes[0].task(&id).await?;
    ensure!(placed["node"] == "n2", "expected the task on n2: {placed}");
    // Ask n1, which does not run it.
    let other = &cluster.nodes[0];
    let wait = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let answer = other
        .get(&format!("/v1/tasks/{id}?wait_ms={}", wait.as_millis()))
        .await?;
    let waited = started.elapsed();
    ensure!(answer.body["status"] == "succeeded", "{}", answer.body);
    // Woken by the completion on the other node, not by the end of the wait.
    ensure!(waited < wait / 2, "the long-poll took {waited:?}");
    cluster.nodes[0].wait_terminal(&busy, DONE_WITHIN).await?;
    Ok(())
}

#[tokio::test]
async fn a_paused_peer_has_its_circuit_opened_then_closed_once_it_heals() -> anyhow::Result<()> {
    let mut flags = vec!["--peer-max-fails", "1", "--peer-fail-timeout-secs", "2"];
    flags.extend(ONE_WORKER);
    let cluster = TestCluster::start(3, &flags).await?;
    let (n1, n3) = (&cluster.nodes[0], &cluster.nodes[2]);

    // n3 stops answering; n1 still believes it idle for a moment and sends it work.
    n3.signal(Signal::SIGSTOP)?;
    let tasks: Vec<Value> = (0..12).map(|_| sleep_task(300)).collect();
    let mut ids = Vec::new();
    for task in &tasks {
        ids.push(n1.submit(task).await?);
    }
    eventually(JOIN_WITHIN, "n3's circuit opens on n1", || async {
        let m = n1.metrics().await?;
        let opened = metric(
            &m,
            "taskmesh_circuit_transitions_total",
            &[("peer", "n3"), ("to", "open")],
        );
        Ok(opened.is_some_and(|v| v >= 1.0).then_some(()))
    })
    .await?;
    // The tasks n3 did not acknowledge ran elsewhere; none is lost.
    let views = n1.wait_all_terminal(&ids, DONE_WITHIN).await?;
    ensure!(
        views.iter().all(|v| v["status"] == "succeeded"),
        "{views:?}"
    );
    ensure!(!split(&views).contains_key("n3"), "{:?}", split(&views));

    // n3 wakes: it is up again, a probe gets through and the circuit closes.
    n3.signal(Signal::SIGCONT)?;
    let healed = eventually(DONE_WITHIN, "n3 takes work again", || async {
        let ids = n1
            .submit_batch(&(0..6).map(|_| sleep_task(150)).collect::<Vec<_>>())
            .await?;
        let views = n1.wait_all_terminal(&ids, DONE_WITHIN).await?;
        let view = cluster_view(n1).await?;
        let closed = peers(&view)
            .get("n3")
            .is_some_and(|(state, circuit)| state == "up" && circuit == "closed");
        Ok((closed && split(&views).contains_key("n3")).then_some(view))
    })
    .await?;
    eprintln!("after healing: {}", healed["peers"]);
    let m = n1.metrics().await?;
    let closed = metric(
        &m,
        "taskmesh_circuit_transitions_total",
        &[("peer", "n3"), ("to", "closed")],
    );
    ensure!(closed.is_some_and(|v| v >= 1.0), "{closed:?}");
    Ok(())
}

fn rss_kib(node: &TestNode) -> anyhow::Result<u64> {
    let pid = node.pid().context("not running")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")
}

#[tokio::test]
async fn a_flood_beyond_cluster_capacity_gets_503s_and_loses_nothing_accepted() -> anyhow::Result<()>
{
    let mut flags = vec!["--queue-capacity", "20"];
    flags.extend(ONE_WORKER);
    let cluster = TestCluster::start(3, &flags).await?;
    let n1 = &cluster.nodes[0];
    let rss_before = rss_kib(n1)?;

    // 1,500 submissions, 64 at a time, against room for 60 queued plus 3 running.
    let mut flood = tokio::task::JoinSet::new();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for _ in 0..1500 {
        let (http, url, sem) = (n1.http.clone(), n1.url("/v1/tasks"), sem.clone());
        flood.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let r = http.post(url).json(&sleep_task(20)).send().await?;
            let status = r.status().as_u16();
            let retry_after = r.headers().contains_key("retry-after");
            let body: Value = r.json().await.unwrap_or(Value::Null);
            Ok::<_, anyhow::Error>((status, retry_after, body))
        });
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for answer in flood.join_all().await {
        let (status, retry_after, body) = answer?;
        match status {
            202 => accepted.push(body["id"].as_str().context("id")?.to_owned()),
            503 => {
                ensure!(retry_after, "503 without Retry-After: {body}");
                ensure!(body["error"]["code"] == "saturated", "{body}");
                refused += 1;
            }
            other => anyhow::bail!("unexpected {other}: {body}"),
        }
    }
    eprintln!("flood: {} accepted, {refused} refused", accepted.len());
    ensure!(refused > 0, "nothing was refused");
    ensure!(!accepted.is_empty(), "nothing was accepted");
    let views = n1.wait_all_terminal(&accepted, DONE_WITHIN).await?;
    ensure!(views.iter().all(|v| v["status"] == "succeeded"));
    let by_node = split(&views);
    ensure!(by_node.len() == 3, "{by_node:?}");
    // Refusing is cheap: the node did not grow with the flood.
    let rss_after = rss_kib(n1)?;
    eprintln!("n1 RSS {rss_before} KiB → {rss_after} KiB");
    ensure!(
        rss_after < rss_before + 200 * 1024,
        "{rss_before} → {rss_after} KiB"
    );
    Ok(())
}
