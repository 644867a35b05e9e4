//! Node-to-node TLS: the front listener that handshakes incoming connections before
//! ractor_cluster sees them, and the settings both sides use.
//!
//! ractor_cluster can handshake TLS itself (`IncomingEncryptionMode::Tls`), but its
//! listener does so inline, one connection at a time and with no timeout: one peer that
//! opens a connection and sends nothing would stop every later peer from joining, and a
//! failed handshake is logged without the peer's address. So with TLS on, this module
//! owns the cluster port: every connection is handshaken on its own task within the
//! handshake timeout, a failure is logged naming the peer (at most once per
//! [`WARN_EVERY`] per address), and only an encrypted, verified stream is handed to the
//! NodeServer. The NodeServer's own listener then listens on a loopback port nobody is
//! told about, in TLS mode too, and the port this node announces to its peers is set to
//! the front's (`NodeServerMessage::PortChanged`). Should ractor_cluster ever respawn its
//! failed listener, it would announce the new loopback port again; peers still reach the
//! node, as the dialer uses the addresses from discovery, not the announced one.
//!
//! Both sides verify each other (mutual TLS): a connection is encrypted only between
//! holders of a certificate issued by the cluster's CA. The cookie is still checked on
//! top, by ractor_cluster's handshake.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::ActorRef;
use ractor_cluster::{NetworkStream, NodeServerMessage};
use tokio::net::TcpListener;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// At most one warning per peer address per this period about failed handshakes.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// How many addresses [`WarnLimiter`] remembers before it forgets them all.
const LIMITER_CAPACITY: usize = 1024;

/// TLS between nodes: the acceptor for incoming sessions (it asks for and verifies the
/// peer's certificate), the connector for outgoing ones (it presents this node's), and
/// the name a peer's certificate must carry.
#[derive(Clone)]
pub struct ClusterTls {
    /// Handshakes incoming connections.
    pub acceptor: TlsAcceptor,
    /// Handshakes outgoing connections.
    pub connector: TlsConnector,
    /// The name checked in every peer's certificate (peers are dialled by address,
    /// which changes; the name does not).
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Decides which failed handshakes are logged: the first of each address, then at most
/// one per [`WARN_EVERY`]. Pure: the caller passes the time.
#[derive(Debug, Default)]
pub(crate) struct WarnLimiter {
    last: HashMap<IpAddr, Instant>,
}

impl WarnLimiter {
    /// Whether a failure from `ip` at `now` is logged.
    pub(crate) fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if let Some(last) = self.last.get(&ip)
            && now.saturating_duration_since(*last) < WARN_EVERY
        {
            return false;
        }
        if self.last.len() >= LIMITER_CAPACITY {
            // A flood from many addresses: forget them all rather than grow.
            self.last.clear();
        }
        self.last.insert(ip, now);
        true
    }
}

/// Accepts on `listener` until the task is aborted: each connection is handshaken on
/// its own task within `timeout`, then handed to `server` as an incoming session.
pub(crate) async fn accept_forever(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    server: ActorRef<NodeServerMessage>,
    timeout: Duration,
) {
    let limiter = Arc::new(Mutex::new(WarnLimiter::default()));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                tracing::warn!(error = %e, "accepting a cluster connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, server, limiter) = (acceptor.clone(), server.clone(), limiter.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else {
                return;
            };
            let failure = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    tracing::debug!(%peer, "cluster TLS session established");
                    let _ = server.cast(NodeServerMessage::ConnectionOpened {
                        stream: Box::new(NetworkStream::TlsServer {
                            peer_addr: peer,
                            local_addr: local,
                            stream,
                        }),
                        is_server: true,
                    });
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no TLS handshake within {} ms", timeout.as_millis()),
            };
            let log = limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .admit(peer.ip(), Instant::now());
            if log {
                warn_refused(peer, &failure);
            }
        });
    }
}

fn warn_refused(peer: SocketAddr, failure: &str) {
    tracing::warn!(
        %peer,
        error = failure,
        "cluster connection refused: TLS handshake failed (the peer does not speak TLS, \
         or its certificate is not issued by --cluster-tls-ca); at most one line per \
         address every 10 s"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_of_an_address_is_logged_then_one_per_period() {
        let mut limiter = WarnLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant::now();
        assert!(limiter.admit(a, t0));
        assert!(limiter.admit(b, t0), "another address has its own period");
        assert!(!limiter.admit(a, t0 + Duration::from_secs(1)));
        assert!(!limiter.admit(a, t0 + WARN_EVERY - Duration::from_millis(1)));
        assert!(limiter.admit(a, t0 + WARN_EVERY));
    }

    #[test]
    fn many_addresses_do_not_grow_the_limiter_without_bound() {
        let mut limiter = WarnLimiter::default();
        let t0 = Instant::now();
        for i in 0..(3 * LIMITER_CAPACITY as u32) {
            assert!(limiter.admit(IpAddr::from(i.to_be_bytes()), t0));
        }
        assert!(limiter.last.len() <= LIMITER_CAPACITY);
    }
}
