//! How a clustered node joins its peers: the cluster flags checked and turned into
//! [`ClusterSettings`] (cookie, addresses, discovery, circuit breaker, heartbeats and the
//! failure detector, forgetting peers).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use taskmesh_cluster::breaker::BreakerConfig;
use taskmesh_cluster::detector::DetectorConfig;
use taskmesh_cluster::discovery::{Discovery, Peer};

use super::{NodeArgs, hostname};

/// How a clustered node joins its peers.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Node-to-node listener.
    pub listen: SocketAddr,
    /// Shared secret.
    pub cookie: String,
    /// HOST:PORT peers dial.
    pub advertise: String,
    /// HOST:PORT of the HTTP API as peers see it.
    pub http_advertise: String,
    /// Where peers are.
    pub discovery: Discovery,
    /// Per-peer circuit breaker.
    pub breaker: BreakerConfig,
    /// Time between two heartbeats to each peer.
    pub heartbeat_interval: Duration,
    /// When a peer's silence makes it suspect, and down.
    pub detector: DetectorConfig,
    /// How long a peer stays down before it is forgotten.
    pub forget_peer_after: Duration,
}

/// The largest `params` a clustered node accepts: a quarter of ractor_cluster's 16 MiB
/// inbound frame limit, which tears down the whole session when exceeded.
const MAX_CLUSTER_PARAMS_BYTES: usize = 4 << 20;

/// The heartbeat interval and the failure detector's thresholds, checked.
pub(super) fn heartbeat_settings(a: &NodeArgs) -> anyhow::Result<(Duration, DetectorConfig)> {
    let (interval, suspect, down) = (a.heartbeat_interval_ms, a.suspect_after_ms, a.down_after_ms);
    if !(10..=10_000).contains(&interval) {
        bail!("--heartbeat-interval-ms must be between 10 and 10000, got {interval}");
    }
    if suspect < 2 * interval {
        bail!(
            "--suspect-after-ms must be at least two heartbeat intervals \
             (2 × --heartbeat-interval-ms = {}), got {suspect}",
            2 * interval
        );
    }
    if down <= suspect {
        bail!("--down-after-ms must be more than --suspect-after-ms ({suspect}), got {down}");
    }
    Ok((
        Duration::from_millis(interval),
        DetectorConfig {
            suspect_after: Duration::from_millis(suspect),
            down_after: Duration::from_millis(down),
        },
    ))
}

/// The cluster settings, or `None` for a node on its own (no cookie, peers or DNS
/// names given).
pub(super) fn cluster_settings(a: &NodeArgs) -> anyhow::Result<Option<ClusterSettings>> {
    let wants = a.cluster_cookie.is_some() || !a.peers.is_empty() || !a.discover.is_empty();
    if !wants {
        return Ok(None);
    }
    let Some(cookie) = a.cluster_cookie.clone().filter(|c| !c.is_empty()) else {
        bail!(
            "joining a cluster (--peers, --discover or --cluster-cookie) needs a non-empty \
             shared secret: set --cluster-cookie or TASKMESH_CLUSTER_COOKIE on every node"
        );
    };
    if a.store.0 == "embedded" {
        bail!(
            "a cluster needs a shared task store: pass --store redis://HOST:PORT/DB \
             (the embedded store is private to one node)"
        );
    }
    if a.max_params_bytes > MAX_CLUSTER_PARAMS_BYTES {
        bail!(
            "--max-params-bytes is at most {MAX_CLUSTER_PARAMS_BYTES} on a clustered node: \
             tasks travel between nodes in frames that peers refuse above 16 MiB"
        );
    }
    if a.peer_max_fails == 0 {
        bail!("--peer-max-fails must be at least 1");
    }
    let advertise = match &a.advertise {
        Some(adv) => {
            adv.parse::<Peer>()
                .map_err(|_| anyhow::anyhow!("--advertise must be HOST:PORT, got `{adv}`"))?;
            adv.clone()
        }
        None => format!("{}:{}", hostname(), a.cluster_listen.port()),
    };
    let host = advertise.rsplit_once(':').map_or("localhost", |(h, _)| h);
    let http_advertise = match &a.http_advertise {
        Some(h) => {
            h.parse::<Peer>()
                .map_err(|_| anyhow::anyhow!("--http-advertise must be HOST:PORT, got `{h}`"))?;
            h.clone()
        }
        None => format!("{host}:{}", a.listen.port()),
    };
    let (heartbeat_interval, detector) = heartbeat_settings(a)?;
    Ok(Some(ClusterSettings {
        listen: a.cluster_listen,
        cookie,
        advertise,
        http_advertise,
        discovery: Discovery {
            peers: a.peers.iter().map(|p| p.0.clone()).collect(),
            dns: a.discover.iter().map(|d| d.0.clone()).collect(),
        },
        breaker: BreakerConfig {
            max_fails: a.peer_max_fails,
            open_for: Duration::from_secs(a.peer_fail_timeout_secs),
        },
        heartbeat_interval,
        detector,
        forget_peer_after: Duration::from_secs(a.forget_peer_after_secs),
    }))
}

/// `--forget-peer-after-secs`, checked: at least one second, and longer than
/// `--down-after-ms` (a peer is forgotten only after it was down).
pub(super) fn check_forget(a: &NodeArgs) -> anyhow::Result<()> {
    let secs = a.forget_peer_after_secs;
    if secs == 0 || secs.saturating_mul(1000) <= a.down_after_ms || secs > 7 * 24 * 3600 {
        bail!(
            "--forget-peer-after-secs must be longer than --down-after-ms ({} ms) and at \
             most a week, got {secs}",
            a.down_after_ms
        );
    }
    Ok(())
}
