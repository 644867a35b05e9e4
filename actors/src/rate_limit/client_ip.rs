//! Which client a request comes from, for the per-IP limit. Pure.
//!
//! The client is the TCP peer, unless the peer is a trusted proxy (`--trusted-proxies`):
//! then `X-Forwarded-For` is read from the right, skipping trusted proxies, and the
//! first address that is not one is the client (every hop appends the address it saw, so
//! only the part written by trusted proxies can be believed; anything to the left of the
//! first untrusted address may be forged by the client). An entry that is not an address
//! stops the walk at the last trusted hop. Without trusted proxies the header is ignored.
//!
//! IPv6 clients are counted per /64 (one host usually holds a whole /64, so per address
//! it could pick a fresh bucket for every request); IPv4-mapped IPv6 peers count as IPv4.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// A network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A string that is not `ADDRESS` or `ADDRESS/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or network (e.g. 10.0.0.0/8, 192.168.1.7, fd00::/8)")]
pub struct BadCidr(pub String);

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Self {
            addr: addr.to_canonical(),
            prefix: if addr.to_canonical().is_ipv4() && !addr.is_ipv4() {
                prefix.saturating_sub(96)
            } else {
                prefix
            },
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The client of a request from `peer` carrying the `X-Forwarded-For` values
/// `forwarded` (every header line, in order), with `trusted` proxies.
pub fn client_ip<'h>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'h str>,
    trusted: &[Cidr],
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded
        .into_iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// The bucket name of `ip`: `ip:<address>`, an IPv6 address cut to its /64.
pub fn bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            format!("ip:{net}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().expect("a network")).collect()
    }

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().expect("valid");
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "mapped IPv4");
        let one: Cidr = "192.168.1.7".parse().expect("valid");
        assert!(one.contains(ip("192.168.1.7")));
        assert!(!one.contains(ip("192.168.1.8")));
        let all: Cidr = "0.0.0.0/0".parse().expect("valid");
        assert!(all.contains(ip("8.8.8.8")));
        assert!(
            !all.contains(ip("::1")),
            "IPv4 networks hold no IPv6 address"
        );
        let v6: Cidr = "fd00::/8".parse().expect("valid");
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "nope",
            "10.0.0.0/x",
            "10.0.0/8",
        ] {
            assert_eq!(bad.parse::<Cidr>(), Err(BadCidr(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let forged = ["6.6.6.6"];
        assert_eq!(client_ip(ip("1.2.3.4"), forged, &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("10.0.0.2"), forged, &[]), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), forged, &trusted), ip("6.6.6.6"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), [], &trusted),
            ip("10.0.0.2"),
            "no header: the proxy itself"
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8", "192.168.0.1"]);
        let peer = ip("10.0.0.2");
        // The client forged the first entry; the proxies appended the rest.
        let header = ["6.6.6.6, 203.0.113.9", "192.168.0.1 ,10.9.9.9"];
        assert_eq!(client_ip(peer, header, &trusted), ip("203.0.113.9"));
        assert_eq!(
            client_ip(peer, ["garbage, 10.1.1.1"], &trusted),
            ip("10.1.1.1"),
            "an unreadable hop stops the walk at the last trusted one"
        );
        assert_eq!(
            client_ip(peer, ["10.1.1.1, 10.2.2.2"], &trusted),
            ip("10.1.1.1"),
            "every hop trusted: the leftmost"
        );
    }

    #[test]
    fn buckets_are_per_ipv4_address_and_per_ipv6_64() {
        assert_eq!(bucket(ip("1.2.3.4")), "ip:1.2.3.4");
        assert_eq!(bucket(ip("::ffff:1.2.3.4")), "ip:1.2.3.4");
        assert_eq!(bucket(ip("2001:db8:1:2:aaaa::1")), "ip:2001:db8:1:2::/64");
        assert_eq!(
            bucket(ip("2001:db8:1:2:ffff::9")),
            bucket(ip("2001:db8:1:2::1"))
        );
        assert_ne!(bucket(ip("2001:db8:1:3::1")), bucket(ip("2001:db8:1:2::1")));
    }
}
