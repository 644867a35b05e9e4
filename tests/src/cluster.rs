//! [`TestCluster`]: several `taskmesh` processes on loopback sharing one real
//! `redis-server`, joined by `--peers`, all given one admin key (`TASKMESH_ADMIN_KEY`),
//! and helpers to read `GET /v1/cluster`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use taskmesh_actors::auth::key::ApiKey;
use taskmesh_actors::store::redis::testing::RedisServer;

use crate::{TestNode, eventually, free_port};

/// The cookie every test node shares unless a test says otherwise.
pub const COOKIE: &str = "test-cookie";

/// How long nodes may take to see each other up.
pub const JOIN_WITHIN: Duration = Duration::from_secs(30);

/// The flags that make node `id` a cluster member listening on `cluster_addr` and
/// dialling `peers`.
pub fn cluster_flags(
    id: &str,
    redis_url: &str,
    cluster_addr: &str,
    cookie: &str,
    peers: &[String],
) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--node-id",
        id,
        "--store",
        redis_url,
        "--cluster-listen",
        cluster_addr,
        "--advertise",
        cluster_addr,
        "--cluster-cookie",
        cookie,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if !peers.is_empty() {
        flags.push("--peers".into());
        flags.push(peers.join(","));
    }
    flags
}

/// Nodes `n1`, `n2`, ... and the Redis they share.
pub struct TestCluster {
    /// The nodes, in order (`nodes[0]` is `n1`).
    pub nodes: Vec<TestNode>,
    /// Their cluster addresses, in the same order.
    pub cluster_addrs: Vec<String>,
    /// The shared store.
    pub redis: RedisServer,
    /// The admin key every node was given (`TASKMESH_ADMIN_KEY`) and sends.
    pub admin_key: String,
}

impl TestCluster {
    /// Starts a Redis and `n` nodes that all list every cluster address in `--peers`,
    /// with `extra` flags each; waits until every node sees every other one up.
    pub async fn start(n: usize, extra: &[&str]) -> anyhow::Result<Self> {
        let redis = RedisServer::start().context("starting redis-server")?;
        Self::start_on(redis, n, extra).await
    }

    /// Like [`TestCluster::start`] on a given Redis (e.g. a durable one to restart).
    pub async fn start_on(redis: RedisServer, n: usize, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_binaries(redis, &vec![None; n], extra).await
    }

    /// Like [`TestCluster::start_on`], one node per entry of `examples`: the workspace
    /// example of that name (a node built as a library, with kinds of its own), or
    /// `taskmesh` for `None`.
    pub async fn start_binaries(
        redis: RedisServer,
        examples: &[Option<&str>],
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let n = examples.len();
        let cluster_addrs: Vec<String> = (0..n)
            .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Result<_, _>>()?;
        let admin_key = ApiKey::generate().expose();
        let mut nodes = Vec::with_capacity(n);
        for (i, (addr, example)) in cluster_addrs.iter().zip(examples).enumerate() {
            let id = format!("n{}", i + 1);
            let mut flags = cluster_flags(&id, &redis.url(), addr, COOKIE, &cluster_addrs);
            flags.extend(extra.iter().map(|s| (*s).to_owned()));
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            nodes.push(TestNode::start_keyed(*example, &admin_key, &flags).await?);
        }
        let cluster = Self {
            nodes,
            cluster_addrs,
            redis,
            admin_key,
        };
        for node in &cluster.nodes {
            wait_peers_up(node, n - 1, JOIN_WITHIN).await?;
        }
        Ok(cluster)
    }
}

/// `GET /v1/cluster` of `node`.
pub async fn cluster_view(node: &TestNode) -> anyhow::Result<Value> {
    let answer = node.get("/v1/cluster").await?;
    anyhow::ensure!(
        answer.status == 200,
        "/v1/cluster answered {}",
        answer.status
    );
    Ok(answer.body)
}

/// Whether every peer in a cluster view is up and its load is known (so placement
/// can choose it).
fn all_up_with_load(view: &Value, count: usize) -> bool {
    view["peers"].as_array().is_some_and(|peers| {
        peers.len() == count
            && peers
                .iter()
                .all(|p| p["state"] == "up" && !p["load"].is_null())
    })
}

/// Each peer's id → (state, circuit) in a cluster view.
pub fn peers(view: &Value) -> HashMap<String, (String, String)> {
    view["peers"]
        .as_array()
        .map(|peers| {
            peers
                .iter()
                .map(|p| {
                    let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                    (s("id"), (s("state"), s("circuit")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `node` sees exactly `count` peers, all up with a known load.
pub async fn wait_peers_up(node: &TestNode, count: usize, within: Duration) -> anyhow::Result<()> {
    eventually(
        within,
        &format!("{count} peers up on {}", node.addr),
        || async {
            let view = cluster_view(node).await?;
            Ok(all_up_with_load(&view, count).then_some(()))
        },
    )
    .await
}
