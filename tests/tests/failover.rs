//! Losing a node, black-box: real processes on loopback, a real `redis-server`, and
//! SIGKILL. Every task that got a 202 still reaches a terminal state.

use std::time::{Duration, Instant};

use anyhow::ensure;
use integration_tests::cluster::{TestCluster, cluster_view, peers, wait_peers_up};
use integration_tests::{TestNode, eventually, metric, metric_sum, taskmesh_bin};
use serde_json::{Value, json};

const DONE_WITHIN: Duration = Duration::from_secs(120);

/// Nodes with exactly two workers, so the tests control how much runs at once.
const TWO_WORKERS: &[&str] = &["--workers", "2", "--min-workers", "2", "--max-workers", "2"];

/// Fails unless every task view reads `succeeded`, naming the first that does not.
fn ensure_all_succeeded(views: &[Value]) -> anyhow::Result<()> {
    let not_ok: Vec<&Value> = views
        .iter()
        .filter(|v| v["status"] != "succeeded")
        .collect();
    ensure!(
        not_ok.is_empty(),
        "{} not succeeded: {:?}",
        not_ok.len(),
        not_ok.first()
    );
    Ok(())
}

/// Waits until `observer` shows `peer` in `state` (`up`, `down`, ...).
async fn wait_peer_state(observer: &TestNode, peer: &str, state: &str) -> anyhow::Result<()> {
    eventually(DONE_WITHIN, &format!("{peer} is {state}"), || async {
        let seen = peers(&cluster_view(observer).await?);
        Ok(seen
            .get(peer)
            .is_some_and(|(s, _)| s == state)
            .then_some(()))
    })
    .await
}

/// Waits until `observer` shows `peer` down; returns how long after `since` it first
/// showed it suspect (if a poll caught it) and down.
async fn time_to_down(
    observer: &TestNode,
    peer: &str,
    since: Instant,
) -> anyhow::Result<(Option<Duration>, Duration)> {
    let suspect = &std::cell::Cell::new(None);
    eventually(DONE_WITHIN, &format!("{peer} is down"), || async move {
        let seen = peers(&cluster_view(observer).await?);
        let state = seen.get(peer).map(|(s, _)| s.as_str()).unwrap_or_default();
        if state == "suspect" && suspect.get().is_none() {
            suspect.set(Some(since.elapsed()));
        }
        Ok((state == "down").then_some(()))
    })
    .await?;
    Ok((suspect.get(), since.elapsed()))
}

/// How many times `observer`'s failure detector judged `peer` to be `to`.
async fn liveness_changes(observer: &TestNode, peer: &str, to: &str) -> anyhow::Result<f64> {
    let text = observer.metrics().await?;
    let name = "taskmesh_peer_liveness_changes_total";
    Ok(metric(&text, name, &[("peer", peer), ("to", to)]).unwrap_or(0.0))
}

/// Waits until `node`'s own load shows a non-zero `field` (`running`, `queued`).
async fn wait_load(node: &TestNode, field: &str) -> anyhow::Result<()> {
    eventually(
        DONE_WITHIN,
        &format!("{} has {field} tasks", node.addr),
        || async {
            let view = cluster_view(node).await?;
            let n = view["node"]["load"][field].as_u64();
            Ok(n.is_some_and(|n| n > 0).then_some(()))
        },
    )
    .await
}

/// Tasks claimed from lost nodes, summed over `nodes`.
async fn reclaimed(nodes: &[&TestNode]) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for node in nodes {
        total += metric_sum(&node.metrics().await?, "taskmesh_tasks_reclaimed_total");
    }
    Ok(total)
}

fn sleep_task(ms: u64) -> Value {
    json!({"kind": "sleep", "params": {"ms": ms}})
}

/// Submits `n` sleep tasks to node `at` in batches of 50.
async fn submit(
    cluster: &TestCluster,
    at: usize,
    n: usize,
    ms: u64,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n / 50 {
        let batch: Vec<Value> = (0..50).map(|_| sleep_task(ms)).collect();
        ids.extend(cluster.nodes[at].submit_batch(&batch).await?);
    }
    Ok(ids)
}

/// Kills node `victim` once it is running tasks, then checks that every task
/// submitted through `entry` succeeds, read through `reader`.
async fn kill_mid_run(victim: usize, entry: usize, reader: usize) -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, TWO_WORKERS).await?;
    let ids = submit(&cluster, entry, 300, 60).await?;
    let victim_id = format!("n{}", victim + 1);
    wait_load(&cluster.nodes[victim], "running").await?;

    cluster.nodes[victim].kill();
    let killed = Instant::now();
    let reader_node = &cluster.nodes[reader];
    let (_, detected) = time_to_down(reader_node, &victim_id, killed).await?;
    // Every survivor sees it down (its session closed), not only the reader.
    let mut everywhere = detected;
    for (i, node) in cluster.nodes.iter().enumerate() {
        if i != victim && i != reader {
            everywhere = everywhere.max(time_to_down(node, &victim_id, killed).await?.1);
        }
    }
    let views = reader_node.wait_all_terminal(&ids, DONE_WITHIN).await?;
    let recovered = killed.elapsed();
    ensure_all_succeeded(&views)?;
    let survivors: Vec<&TestNode> = (cluster.nodes.iter().enumerate())
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n)
        .collect();
    let reclaimed = reclaimed(&survivors).await?;
    eprintln!(
        "killed {victim_id}: down on n{} after {detected:?}, on every survivor after \
         {everywhere:?}, all 300 tasks done {recovered:?} after the kill, {reclaimed} tasks \
         reclaimed",
        reader + 1
    );
    ensure!(reclaimed > 0.0, "no task was reclaimed from {victim_id}");

    // The victim comes back under the same id: the others see a new pool and send it
    // work again.
    cluster.nodes[victim].restart().await?;
    let entry_node = &cluster.nodes[entry];
    wait_peers_up(entry_node, 2, DONE_WITHIN).await?;
    let batch: Vec<Value> = (0..60).map(|_| sleep_task(100)).collect();
    let ids = entry_node.submit_batch(&batch).await?;
    let views = entry_node.wait_all_terminal(&ids, DONE_WITHIN).await?;
    let ran_on_victim = views
        .iter()
        .filter(|v| v["node"] == victim_id.as_str())
        .count();
    ensure!(ran_on_victim > 0, "the restarted {victim_id} got no work");
    Ok(())
}

#[tokio::test]
async fn a_killed_worker_node_loses_no_task() -> anyhow::Result<()> {
    kill_mid_run(1, 0, 0).await
}

#[tokio::test]
async fn killing_the_node_that_accepted_the_tasks_loses_none() -> anyhow::Result<()> {
    kill_mid_run(0, 0, 1).await
}

#[tokio::test]
async fn a_paused_node_loses_its_tasks_to_the_others_and_its_late_results_are_refused()
-> anyhow::Result<()> {
    let cluster = TestCluster::start(3, TWO_WORKERS).await?;
    let (n1, n3) = (&cluster.nodes[0], &cluster.nodes[2]);
    let ids = submit(&cluster, 0, 150, 400).await?;
    wait_load(n3, "running").await?;

    let n2 = &cluster.nodes[1];
    eventually(DONE_WITHIN, "n1 receives heartbeats", || async {
        let m = n1.metrics().await?;
        let received = metric_sum(&m, "taskmesh_heartbeats_received_total");
        Ok((received > 0.0).then_some(()))
    })
    .await?;
    n3.signal(nix::sys::signal::Signal::SIGSTOP)?;
    let paused = Instant::now();
    let (suspect, detected) = time_to_down(n1, "n3", paused).await?;
    let (_, detected_n2) = time_to_down(n2, "n3", paused).await?;
    // Its heartbeats stopped: the detectors judged it suspect before down.
    for observer in [n1, n2] {
        ensure!(
            liveness_changes(observer, "n3", "suspect").await? >= 1.0
                && liveness_changes(observer, "n3", "down").await? >= 1.0,
            "{} did not judge n3 suspect then down",
            observer.addr
        );
    }
    let views = n1.wait_all_terminal(&ids, DONE_WITHIN).await?;
    ensure_all_succeeded(&views)?;
    let recovered = paused.elapsed();

    // n3 wakes up: the attempts it was running finish, but their results are refused
    // (another node holds those tasks now), and it rejoins as up.
    n3.signal(nix::sys::signal::Signal::SIGCONT)?;
    let refused = eventually(DONE_WITHIN, "n3's late results are refused", || async {
        let m = n3.metrics().await?;
        let refused = metric_sum(&m, "taskmesh_duplicate_completions_total");
        Ok((refused >= 1.0).then_some(refused))
    })
    .await?;
    wait_peer_state(n1, "n3", "up").await?;
    // Every task still has the one terminal state it got while n3 slept.
    for (id, before) in ids.iter().zip(&views) {
        let now = n1.task(id).await?;
        ensure!(
            now["status"] == "succeeded" && now["node"] == before["node"],
            "{now}"
        );
    }
    eprintln!(
        "paused n3: suspect on n1 after {suspect:?}, down on n1 after {detected:?} and on n2 \
         after {detected_n2:?}, all 150 tasks done {recovered:?} after the pause, {refused} \
         late results refused on n3"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_under_load_hands_the_queue_to_the_others() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3, TWO_WORKERS).await?;
    let ids = submit(&cluster, 0, 300, 60).await?;
    wait_load(&cluster.nodes[1], "queued").await?;
    cluster.nodes[1].signal(nix::sys::signal::Signal::SIGTERM)?;
    let code = cluster.nodes[1].wait_exit(DONE_WITHIN).await?;
    ensure!(code == Some(0), "n2 exited with {code:?}");
    let views = cluster.nodes[0]
        .wait_all_terminal(&ids, DONE_WITHIN)
        .await?;
    ensure_all_succeeded(&views)?;
    let reclaimed = reclaimed(&[&cluster.nodes[0], &cluster.nodes[2]]).await?;
    ensure!(reclaimed > 0.0, "n2's queue was not taken over");
    Ok(())
}

/// Whether `GET /health/ready` answers 200.
async fn ready(node: &TestNode) -> anyhow::Result<bool> {
    Ok(node.get("/health/ready").await?.status == 200)
}

#[tokio::test]
async fn a_redis_restart_under_load_makes_nodes_unready_then_loses_nothing() -> anyhow::Result<()> {
    let redis = taskmesh_actors::store::redis::testing::RedisServer::start_durable()?;
    let mut cluster = TestCluster::start_on(redis, 3, TWO_WORKERS).await?;
    let ids = submit(&cluster, 0, 200, 50).await?;

    cluster.redis.kill();
    for node in &cluster.nodes {
        eventually(DONE_WITHIN, "the node reports not ready", || async {
            Ok((!ready(node).await?).then_some(()))
        })
        .await?;
    }
    cluster.redis.restart()?;
    for node in &cluster.nodes {
        eventually(DONE_WITHIN, "the node is ready again", || async {
            Ok(ready(node).await?.then_some(()))
        })
        .await?;
    }
    let views = cluster.nodes[2]
        .wait_all_terminal(&ids, DONE_WITHIN)
        .await?;
    ensure_all_succeeded(&views)?;
    Ok(())
}

#[tokio::test]
async fn after_every_node_is_killed_one_restarted_node_finishes_all_tasks() -> anyhow::Result<()> {
    let flags = [TWO_WORKERS, &["--lease-ttl-ms", "2000"]].concat();
    let mut cluster = TestCluster::start(3, &flags).await?;
    let ids = submit(&cluster, 0, 150, 100).await?;
    for node in &mut cluster.nodes {
        node.kill();
    }
    // Only n1 comes back: it takes back its own tasks, and n2's and n3's once their
    // leases lapse.
    cluster.nodes[0].restart().await?;
    let views = cluster.nodes[0]
        .wait_all_terminal(&ids, DONE_WITHIN)
        .await?;
    ensure_all_succeeded(&views)?;
    let reclaimed = reclaimed(&[&cluster.nodes[0]]).await?;
    ensure!(reclaimed > 0.0, "n1 claimed nothing from n2 and n3");
    Ok(())
}

/// Redis down for longer than the lease: every lease lapses at once, live nodes' too.
/// When it is back, nodes renew before anyone reaps (reaping waits one lease period of
/// reachable store), so no live node's tasks are claimed and each runs once. (Without
/// that rule the race is narrow here, since every node reconnects and renews at once;
/// `failover::decide::may_reap`'s unit test pins the rule, this run checks the outcome.)
#[tokio::test]
async fn a_store_away_longer_than_the_lease_takes_no_live_nodes_tasks() -> anyhow::Result<()> {
    let lease = Duration::from_millis(3000);
    let flags = [
        TWO_WORKERS,
        &["--lease-ttl-ms", "3000", "--lease-renew-ms", "500"],
    ]
    .concat();
    let redis = taskmesh_actors::store::redis::testing::RedisServer::start_durable()?;
    let mut cluster = TestCluster::start_on(redis, 3, &flags).await?;
    // Long enough to be running on every node while Redis is away.
    let batch: Vec<Value> = (0..12).map(|_| sleep_task(6000)).collect();
    let ids = cluster.nodes[0].submit_batch(&batch).await?;
    for node in &cluster.nodes {
        wait_load(node, "running").await?;
    }
    // Killed, not paused: a paused Redis would run the renewals queued in its sockets
    // the moment it resumes. The AOF keeps the leases' expiry times.
    cluster.redis.kill();
    let paused = Instant::now();
    for node in &cluster.nodes {
        eventually(DONE_WITHIN, "the node reports not ready", || async {
            Ok((!ready(node).await?).then_some(()))
        })
        .await?;
    }
    // What is awaited here is the lease's expiry itself, a span of time, not an event.
    tokio::time::sleep((lease + Duration::from_millis(500)).saturating_sub(paused.elapsed())).await;
    cluster.redis.restart()?;

    let views = cluster.nodes[0]
        .wait_all_terminal(&ids, DONE_WITHIN)
        .await?;
    ensure_all_succeeded(&views)?;
    let nodes: Vec<&TestNode> = cluster.nodes.iter().collect();
    let reclaimed = reclaimed(&nodes).await?;
    ensure!(
        reclaimed == 0.0,
        "{reclaimed} tasks of live nodes were claimed"
    );
    let reruns = views
        .iter()
        .filter(|v| v["attempts"].as_u64() != Some(1))
        .count();
    ensure!(reruns == 0, "{reruns} tasks ran more than once");
    Ok(())
}

/// `name` summed over `nodes`.
async fn sum_over(nodes: &[&TestNode], name: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for node in nodes {
        total += metric_sum(&node.metrics().await?, name);
    }
    Ok(total)
}

/// The ids of the tasks among `ids` that `node_id` holds and runs, as `reader` sees them.
async fn running_on(
    reader: &TestNode,
    ids: &[String],
    node_id: &str,
) -> anyhow::Result<Vec<String>> {
    let mut on = Vec::new();
    for id in ids {
        let view = reader.task(id).await?;
        if view["node"] == node_id && view["status"] == "running" {
            on.push(id.clone());
        }
    }
    Ok(on)
}

/// kill -9 of a node under load: its running tasks run on the survivor. Measures the
/// time from the kill to the claim (the survivor's reclaimed counter moving) and to the
/// first claimed task running there (after the survivor's own queue: claimed tasks are
/// placed like new ones). Reported, not asserted: the machine may be loaded; the bound
/// in the design is --claim-after-ms (1 s) plus one 100 ms poll.
#[tokio::test]
async fn failover_a_killed_nodes_running_tasks_run_elsewhere() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(2, TWO_WORKERS).await?;
    let ids = submit(&cluster, 0, 50, 1500).await?;
    wait_load(&cluster.nodes[1], "running").await?;
    let victims = eventually(DONE_WITHIN, "n2 runs some tasks", || async {
        let on = running_on(&cluster.nodes[0], &ids, "n2").await?;
        Ok((!on.is_empty()).then_some(on))
    })
    .await?;
    cluster.nodes[1].kill();
    let killed = Instant::now();
    let n1 = &cluster.nodes[0];
    let claimed_at = eventually(DONE_WITHIN, "n1 claims n2's tasks", || async {
        Ok((reclaimed(&[n1]).await? > 0.0).then(|| killed.elapsed()))
    })
    .await?;
    let (first, running_at) = eventually(DONE_WITHIN, "a task of n2 runs on n1", || async {
        let on = running_on(n1, &victims, "n1").await?;
        let done = any_finished_on_n1(n1, &victims).await?;
        Ok((!on.is_empty() || done).then(|| (on.first().cloned(), killed.elapsed())))
    })
    .await?;
    let views = n1.wait_all_terminal(&ids, DONE_WITHIN).await?;
    ensure_all_succeeded(&views)?;
    let reclaimed = reclaimed(&[n1]).await?;
    eprintln!(
        "kill -9 of n2: claimed by n1 {claimed_at:?} after the kill, first claimed task \
         ({first:?}) running on n1 {running_at:?} after it; {reclaimed} tasks reclaimed; all \
         {} tasks done {:?} after the kill",
        ids.len(),
        killed.elapsed()
    );
    for id in &victims {
        let view = n1.task(id).await?;
        ensure!(view["node"] == "n1", "{view}");
    }
    Ok(())
}

/// Whether any of `ids` is already terminal (claimed and finished between two polls).
async fn any_finished_on_n1(reader: &TestNode, ids: &[String]) -> anyhow::Result<bool> {
    for id in ids {
        let view = reader.task(id).await?;
        if view["status"] == "succeeded" && view["node"] == "n1" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A second node started with the id of a running node, on the same store, refuses to
/// start and names the id; the same id after a kill -9 starts and takes its tasks back.
#[tokio::test]
async fn failover_a_duplicate_node_id_is_refused_but_a_restart_after_kill_is_not()
-> anyhow::Result<()> {
    let redis = taskmesh_actors::store::redis::testing::RedisServer::start()?;
    let flags = ["--node-id", "dup-1", "--store", &redis.url()];
    let flags = [&flags[..], TWO_WORKERS].concat();
    let mut first = TestNode::start_temp(&flags).await?;

    let data = tempfile::tempdir()?;
    let port = integration_tests::free_port()?;
    let second = std::process::Command::new(taskmesh_bin()?)
        .args(["node", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data.path())
        .args(&flags)
        .env("TASKMESH_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let out = tokio::task::spawn_blocking(move || second.wait_with_output()).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the second dup-1 started: {stderr}");
    ensure!(
        stderr.contains("\"dup-1\"") && stderr.contains("in use"),
        "the error does not name the id: {stderr}"
    );
    ensure!(
        first.get("/health/ready").await?.status == 200,
        "the first node suffered"
    );

    // Tasks held by dup-1, then kill -9 and a restart under the same id.
    let batch: Vec<Value> = (0..20).map(|_| sleep_task(800)).collect();
    let ids = first.submit_batch(&batch).await?;
    wait_load(&first, "running").await?;
    first.kill();
    let killed = Instant::now();
    first.restart().await?;
    let started = killed.elapsed();
    let views = first.wait_all_terminal(&ids, DONE_WITHIN).await?;
    ensure_all_succeeded(&views)?;
    ensure!(
        views.iter().all(|v| v["node"] == "dup-1"),
        "tasks left dup-1"
    );
    eprintln!(
        "duplicate id refused ({}); restarted after kill -9, ready {started:?} after the \
         kill, all {} tasks done {:?} after it",
        stderr.trim(),
        ids.len(),
        killed.elapsed()
    );
    Ok(())
}

/// A node paused for 3 × --down-after-ms under load, with a lease longer than the
/// pause: its peers judge it down (no new work) but claim nothing, since its lease is
/// still live; once resumed it does not judge its peers by its own silence and claims
/// nothing either. No result is refused anywhere and every task ran once.
#[tokio::test]
async fn failover_a_paused_node_within_its_lease_keeps_its_tasks_and_claims_none()
-> anyhow::Result<()> {
    let flags = [
        TWO_WORKERS,
        &[
            "--lease-ttl-ms",
            "10000",
            "--suspect-after-ms",
            "500",
            "--down-after-ms",
            "1000",
        ],
    ]
    .concat();
    let cluster = TestCluster::start(2, &flags).await?;
    let (n1, n2) = (&cluster.nodes[0], &cluster.nodes[1]);
    let ids = submit(&cluster, 0, 100, 300).await?;
    wait_load(n2, "running").await?;
    n2.signal(nix::sys::signal::Signal::SIGSTOP)?;
    let paused = Instant::now();
    let (_, detected) = time_to_down(n1, "n2", paused).await?;
    // What is awaited is the pause itself, a span of time: 3 × --down-after-ms.
    tokio::time::sleep(Duration::from_millis(3000).saturating_sub(paused.elapsed())).await;
    n2.signal(nix::sys::signal::Signal::SIGCONT)?;
    let pause = paused.elapsed();
    wait_peer_state(n1, "n2", "up").await?;
    let views = n1.wait_all_terminal(&ids, DONE_WITHIN).await?;
    ensure_all_succeeded(&views)?;
    let nodes = [n1, n2];
    let reclaimed = reclaimed(&nodes).await?;
    let refused = sum_over(&nodes, "taskmesh_duplicate_completions_total").await?;
    let n2_saw_n1_down = liveness_changes(n2, "n1", "down").await?;
    eprintln!(
        "paused n2 for {pause:?} (down on n1 after {detected:?}): {reclaimed} tasks \
         reclaimed, {refused} results refused, n2 judged n1 down {n2_saw_n1_down} times"
    );
    ensure!(
        reclaimed == 0.0,
        "{reclaimed} tasks of a node that kept its lease were claimed"
    );
    ensure!(refused == 0.0, "{refused} results were refused");
    let reruns = views
        .iter()
        .filter(|v| v["attempts"].as_u64() != Some(1))
        .count();
    ensure!(reruns == 0, "{reruns} tasks ran more than once");
    Ok(())
}

/// Whether `peer` is in `node`'s cluster view, and `node`'s `taskmesh_peers` total.
async fn known(node: &TestNode, peer: &str) -> anyhow::Result<(bool, f64)> {
    let listed = peers(&cluster_view(node).await?).contains_key(peer);
    let gauge = metric_sum(&node.metrics().await?, "taskmesh_peers");
    Ok((listed, gauge))
}

/// A peer down for longer than --forget-peer-after-secs is forgotten (gone from
/// `GET /v1/cluster` and `taskmesh_peers`), and comes back as new when it returns.
#[tokio::test]
async fn failover_a_peer_down_past_the_forget_time_is_forgotten_and_returns_as_new()
-> anyhow::Result<()> {
    let flags = [TWO_WORKERS, &["--forget-peer-after-secs", "3"]].concat();
    let mut cluster = TestCluster::start(2, &flags).await?;
    cluster.nodes[1].kill();
    let killed = Instant::now();
    let n1 = &cluster.nodes[0];
    wait_peer_state(n1, "n2", "down").await?;
    ensure!(
        known(n1, "n2").await? == (true, 1.0),
        "n2 listed while down"
    );
    eventually(DONE_WITHIN, "n2 is forgotten", || async {
        Ok((known(n1, "n2").await? == (false, 0.0)).then_some(()))
    })
    .await?;
    let forgotten = killed.elapsed();
    cluster.nodes[1].restart().await?;
    wait_peers_up(&cluster.nodes[0], 1, DONE_WITHIN).await?;
    ensure!(known(&cluster.nodes[0], "n2").await? == (true, 1.0));
    eprintln!("n2 forgotten {forgotten:?} after the kill (forget time 3 s), then back up");
    Ok(())
}
