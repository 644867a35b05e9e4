//! Where peers are: a static seed list (`--peers`) and DNS names re-resolved on every
//! round (`--discover dns:NAME:PORT`), which for a compose service or a Kubernetes
//! headless service yields every replica.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::str::FromStr;

/// A `--discover` value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// Not of the form `dns:NAME:PORT`.
    #[error("`{0}` is not a discovery target; expected dns:NAME:PORT")]
    BadTarget(String),
    /// A seed that is not `HOST:PORT`.
    #[error("`{0}` is not a peer address; expected HOST:PORT")]
    BadPeer(String),
}

/// Where to look for peers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    /// `HOST:PORT` of known peers.
    pub peers: Vec<String>,
    /// `NAME:PORT` pairs resolved through DNS every round.
    pub dns: Vec<String>,
}

fn host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

/// One `--peers` entry, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer(pub String);

impl FromStr for Peer {
    type Err = DiscoveryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        host_port(s)
            .map(|_| Peer(s.to_owned()))
            .ok_or_else(|| DiscoveryError::BadPeer(s.to_owned()))
    }
}

/// One `--discover` entry, checked: `dns:NAME:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsTarget(pub String);

impl FromStr for DnsTarget {
    type Err = DiscoveryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DiscoveryError::BadTarget(s.to_owned());
        let rest = s.trim().strip_prefix("dns:").ok_or_else(bad)?;
        host_port(rest).ok_or_else(bad)?;
        Ok(DnsTarget(rest.to_owned()))
    }
}

impl Discovery {
    /// Whether there is anything to look for.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.dns.is_empty()
    }

    /// Every address the seeds and names resolve to now. A name that does not resolve
    /// (a replica not started yet) is skipped until the next round.
    pub async fn resolve(&self) -> HashSet<SocketAddr> {
        let mut out = HashSet::new();
        for target in self.peers.iter().chain(&self.dns) {
            match tokio::net::lookup_host(target.as_str()).await {
                Ok(addrs) => out.extend(addrs),
                Err(e) => tracing::debug!(%target, error = %e, "peer name does not resolve"),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_peers_are_checked() {
        assert_eq!(
            "dns:node:4697".parse::<DnsTarget>().unwrap(),
            DnsTarget("node:4697".into())
        );
        for bad in [
            "node:4697",
            "dns:node",
            "dns::4697",
            "dns:node:http",
            "srv:x:1",
        ] {
            assert!(bad.parse::<DnsTarget>().is_err(), "{bad}");
        }
        assert!("10.0.0.1:4697".parse::<Peer>().is_ok());
        for bad in ["10.0.0.1", ":4697", "host:99999", "host:"] {
            assert!(bad.parse::<Peer>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn resolving_collects_every_address_and_skips_unknown_names() {
        let d = Discovery {
            peers: vec!["127.0.0.1:4001".into(), "127.0.0.2:4002".into()],
            dns: vec!["no-such-host.invalid:1".into()],
        };
        let got = d.resolve().await;
        assert!(got.contains(&"127.0.0.1:4001".parse().unwrap()));
        assert!(got.contains(&"127.0.0.2:4002".parse().unwrap()));
        assert_eq!(got.len(), 2);
    }
}
