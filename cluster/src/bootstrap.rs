//! Joining the cluster: the ractor_cluster `NodeServer`, and the dialer that keeps a
//! session open to every peer it can find.
//!
//! ```text
//! NodeServer (ractor_cluster, Isolated mode)
//!   ├── listener on --cluster-listen, cookie-authenticated sessions
//!   └── NodeSession per peer ── syncs process groups (the endpoint group)
//! Dialer task (here)
//!   every `interval`: resolve --peers and --discover → dial every address without a
//!   session, with exponential backoff per address
//! ```
//!
//! ractor_cluster never re-dials a dropped peer, and `client_connect` succeeds as soon as
//! TCP connects (a wrong cookie only shows as a disconnect), so the dialer treats an
//! address as connected only while a session to it exists, and retries the others.
//! Isolated mode does not forward process-group members to third nodes: the dialer makes
//! a full mesh instead (every node dials every address it discovers).
//!
//! ractor_cluster has no handshake timeout: a connection that never authenticates (a
//! port scanner, garbage, a wrong protocol) would hold its session, socket and actors
//! forever. Every session therefore gets a watchdog when it opens
//! ([`ClusterConfig::handshake_timeout`]): still unauthenticated then, its actors (the
//! session, its TCP session, reader and writer) are stopped, which closes the socket.
//!
//! With [`ClusterConfig::tls`] set, sessions are mutual TLS both ways: [`crate::tls`]
//! owns the cluster port and handshakes each incoming connection before the NodeServer
//! sees it, and the dialer handshakes each outgoing one; a peer that does not speak TLS
//! with a certificate of the cluster's CA is refused with a warning naming it.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef};
use ractor_cluster::{
    ClientConnectErr, IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage,
};
use tokio::task::JoinHandle;

pub use crate::discovery::{Discovery, DiscoveryError};
pub use crate::tls::ClusterTls;

/// How this node joins the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Where the NodeServer listens.
    pub listen: SocketAddr,
    /// The shared secret every node must present.
    pub cookie: String,
    /// `HOST:PORT` peers use to reach this node.
    pub advertise: String,
    /// Unique per process: the node id plus a generation.
    pub node_name: String,
    /// Where to find peers.
    pub discovery: Discovery,
    /// How often to re-resolve and re-dial.
    pub interval: Duration,
    /// The longest wait between two dials of one unreachable address.
    pub max_backoff: Duration,
    /// How long a session (incoming or outgoing) may take to authenticate before it is
    /// closed (with TLS on, the TLS handshake must also end within it).
    pub handshake_timeout: Duration,
    /// Mutual TLS between nodes; `None` for plain TCP.
    pub tls: Option<ClusterTls>,
}

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The NodeServer did not start (the port is taken, for instance).
    #[error("cluster listener failed to start: {0}")]
    Listen(String),
}

/// A running cluster membership: stop it with [`Cluster::stop`].
pub struct Cluster {
    server: ActorRef<NodeServerMessage>,
    dialer: JoinHandle<()>,
    /// The TLS front listener, when TLS is on.
    front: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

/// Logs session events and closes sessions that do not authenticate in time.
struct SessionEvents {
    handshake_timeout: Duration,
}

impl NodeEventSubscription for SessionEvents {
    fn node_session_opened(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        tracing::debug!(peer = %ses.peer_addr, "cluster session opened");
        let (session, timeout) = (ses.actor, self.handshake_timeout);
        let peer = ses.peer_addr;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let authenticated = ractor::call_t!(
                session,
                ractor_cluster::NodeSessionMessage::GetAuthenticationState,
                1000
            );
            // A session already gone answers nothing: stopping it again is harmless.
            if !matches!(authenticated, Ok(true)) {
                tracing::debug!(%peer, "cluster session did not authenticate in time; closed");
                stop_tree(&session.get_cell(), "handshake timeout");
            }
        });
    }
    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        match ses.peer_name {
            Some(n) => {
                tracing::info!(peer = %ses.peer_addr, name = %n.name, "cluster session closed")
            }
            // Never authenticated: not a peer. Logged per connection only at debug, so
            // garbage connections cannot flood the log.
            None => {
                tracing::debug!(peer = %ses.peer_addr, "unauthenticated cluster session closed")
            }
        }
    }
    fn node_session_authenticated(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        tracing::debug!(peer = %ses.peer_addr, "cluster session authenticated");
    }
    fn node_session_ready(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let name = ses.peer_name.map(|n| n.name).unwrap_or_default();
        tracing::info!(peer = %ses.peer_addr, %name, "cluster session ready");
    }
}

/// Stops an actor and everything under it, children first: ractor does not stop the
/// children of a stopped actor, and the socket closes only once the TCP session's
/// reader is gone too.
fn stop_tree(cell: &ractor::ActorCell, reason: &str) {
    for child in cell.get_children() {
        stop_tree(&child, reason);
    }
    cell.stop(Some(reason.to_owned()));
}

impl Cluster {
    /// Starts the NodeServer and the dialer (and, with TLS, the front listener).
    pub async fn start(config: ClusterConfig) -> Result<Self, ClusterError> {
        let host = config
            .advertise
            .rsplit_once(':')
            .map_or(config.advertise.as_str(), |(h, _)| h)
            .to_owned();
        let listen_failed = |e: std::io::Error| ClusterError::Listen(e.to_string());
        // With TLS, the front listener takes the cluster port and the NodeServer's own
        // listener (TLS too) a loopback port nobody dials.
        let (front, port, ip, encryption) = match &config.tls {
            None => (None, config.listen.port(), config.listen.ip(), None),
            Some(tls) => {
                let front = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(listen_failed)?;
                let port = front.local_addr().map_err(listen_failed)?.port();
                let encryption = IncomingEncryptionMode::Tls(tls.acceptor.clone());
                (
                    Some(front),
                    port,
                    Ipv4Addr::LOCALHOST.into(),
                    Some(encryption),
                )
            }
        };
        let server = NodeServer::new(
            if front.is_some() { 0 } else { port },
            config.cookie.clone(),
            config.node_name.clone(),
            host,
            encryption,
            Some(ractor_cluster::node::NodeConnectionMode::Isolated),
        )
        .with_listen_addr(ip);
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| ClusterError::Listen(e.to_string()))?;
        let _ = server.cast(NodeServerMessage::SubscribeToEvents {
            id: "taskmesh-log".into(),
            subscription: Box::new(SessionEvents {
                handshake_timeout: config.handshake_timeout,
            }),
        });
        let front = match (front, &config.tls) {
            (Some(listener), Some(tls)) => {
                // Peers learn the port from the name this node presents: the front's,
                // not the hidden listener's (which the NodeServer announced first).
                let _ = server.cast(NodeServerMessage::PortChanged { port });
                Some(tokio::spawn(crate::tls::accept_forever(
                    listener,
                    tls.acceptor.clone(),
                    server.clone(),
                    config.handshake_timeout,
                )))
            }
            _ => None,
        };
        let dialer = tokio::spawn(dial_forever(server.clone(), config));
        Ok(Self {
            server,
            dialer,
            front,
        })
    }

    /// The NodeServer actor.
    pub fn server(&self) -> &ActorRef<NodeServerMessage> {
        &self.server
    }

    /// Stops dialing and closes every session.
    pub fn stop(&self) {
        self.dialer.abort();
        if let Some(front) = &self.front {
            front.abort();
        }
        self.server.stop(Some("node stopping".into()));
    }
}

/// Addresses that have a live session: outgoing ones by the address dialled, and every
/// authenticated peer by the address it advertises.
async fn connected(server: &ActorRef<NodeServerMessage>) -> HashSet<SocketAddr> {
    let mut addrs = HashSet::new();
    let Ok(sessions) = ractor::call_t!(server, NodeServerMessage::GetSessions, 1000) else {
        return addrs;
    };
    for ses in sessions.values() {
        if !ses.is_server
            && let Ok(addr) = ses.peer_addr.parse::<SocketAddr>()
        {
            addrs.insert(addr);
        }
        if let Some(name) = &ses.peer_name
            && let Ok(resolved) = tokio::net::lookup_host(name.connection_string.as_str()).await
        {
            addrs.extend(resolved);
        }
    }
    addrs
}

struct Backoff {
    next: Instant,
    wait: Duration,
}

async fn dial_forever(server: ActorRef<NodeServerMessage>, config: ClusterConfig) {
    let mut backoff: HashMap<SocketAddr, Backoff> = HashMap::new();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let own: HashSet<SocketAddr> = tokio::net::lookup_host(config.advertise.as_str())
            .await
            .map(Iterator::collect)
            .unwrap_or_default();
        let targets = config.discovery.resolve().await;
        let live = connected(&server).await;
        let now = Instant::now();
        backoff.retain(|addr, _| !live.contains(addr));
        for addr in targets {
            if own.contains(&addr) || addr == config.listen || live.contains(&addr) {
                continue;
            }
            let entry = backoff.entry(addr).or_insert(Backoff {
                next: now,
                wait: config.interval,
            });
            if entry.next > now {
                continue;
            }
            entry.next = now + entry.wait;
            entry.wait = (entry.wait * 2).min(config.max_backoff);
            let (server, tls) = (server.clone(), config.tls.clone());
            tokio::spawn(async move {
                let dial = dial(&server, addr, tls);
                match tokio::time::timeout(Duration::from_secs(3), dial).await {
                    Ok(Ok(())) => tracing::debug!(%addr, "dialed peer"),
                    Ok(Err(ClientConnectErr::Encryption(e))) => tracing::warn!(
                        peer = %addr,
                        error = %e,
                        "cluster TLS handshake with the peer failed: it does not speak TLS, \
                         or its certificate is not issued by --cluster-tls-ca for \
                         --cluster-tls-server-name"
                    ),
                    Ok(Err(e)) => tracing::debug!(%addr, error = %e, "peer dial failed"),
                    Err(_) => tracing::debug!(%addr, "peer dial timed out"),
                }
            });
        }
    }
}

/// Opens a session to `addr`: over TLS when `tls` is set, plain TCP otherwise.
async fn dial(
    server: &ActorRef<NodeServerMessage>,
    addr: SocketAddr,
    tls: Option<ClusterTls>,
) -> Result<(), ClientConnectErr> {
    match tls {
        None => ractor_cluster::client_connect(server, addr).await,
        Some(tls) => {
            ractor_cluster::client_connect_enc(server, addr, tls.connector, tls.server_name).await
        }
    }
}
