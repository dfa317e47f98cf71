//! The address a node advertises, as Go Micro's `util/addr.Extract` picks it.
//!
//! A node bound to one address advertises it. A node bound to every interface (`0.0.0.0`, `::`,
//! as in a container) advertises this host's first private address (10/8, 172.16/12,
//! 192.168/16, 100.64/10, IPv6 unique-local), else its first other non-loopback address, so
//! that other machines and containers can reach it; only a host with nothing but loopback (a test's
//! private network namespace) advertises `127.0.0.1`. So does every wildcard-bound node whose
//! registry reaches this host only (mDNS in its default scope, which believes loopback addresses
//! only).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address to advertise for a listener bound to `bound`, found through a registry that
/// reaches this host only (`host_only`) or further.
pub fn advertised(bound: SocketAddr, host_only: bool) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    if host_only {
        return SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port()).to_string();
    }
    let interfaces: Vec<IpAddr> =
        if_addrs::get_if_addrs().map(|all| all.into_iter().map(|i| i.ip()).collect()).unwrap_or_default();
    pick(bound, &interfaces).to_string()
}

/// The advertised address for a wildcard bind on a host with `interfaces`.
fn pick(bound: SocketAddr, interfaces: &[IpAddr]) -> SocketAddr {
    let v6 = bound.is_ipv6();
    let usable = |ip: &&IpAddr| !ip.is_loopback() && !ip.is_unspecified() && (v6 || ip.is_ipv4()) && !link_local(ip);
    let ip = interfaces
        .iter()
        .filter(usable)
        .find(|ip| private(ip))
        .or_else(|| interfaces.iter().find(usable))
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, bound.port())
}

fn private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn a_bound_address_is_advertised_as_bound() {
        assert_eq!(advertised("127.0.0.1:8080".parse().unwrap(), false), "127.0.0.1:8080");
        assert_eq!(advertised("10.1.2.3:9".parse().unwrap(), true), "10.1.2.3:9");
        // Host-only discovery (default mDNS) believes loopback only.
        assert_eq!(advertised("0.0.0.0:7".parse().unwrap(), true), "127.0.0.1:7");
    }

    #[test]
    fn a_wildcard_bind_advertises_a_reachable_address() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        // A container: loopback and its bridge address.
        assert_eq!(pick(any, &ips(&["127.0.0.1", "172.17.0.2"])).to_string(), "172.17.0.2:8080");
        // Private before public, IPv4 only for an IPv4 bind, link-local never.
        let host = ips(&["127.0.0.1", "169.254.1.1", "fe80::1", "203.0.113.7", "fd00::5", "192.168.1.20"]);
        assert_eq!(pick(any, &host).to_string(), "192.168.1.20:8080");
        assert_eq!(pick(any, &ips(&["127.0.0.1", "203.0.113.7"])).to_string(), "203.0.113.7:8080");
        assert_eq!(pick("[::]:80".parse().unwrap(), &ips(&["::1", "fd00::5"])).to_string(), "[fd00::5]:80");
        // Nothing but loopback: loopback.
        assert_eq!(pick(any, &ips(&["127.0.0.1", "::1"])).to_string(), "127.0.0.1:8080");
        assert_eq!(pick(any, &[]).to_string(), "127.0.0.1:8080");
    }
}
