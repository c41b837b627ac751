//! The `upstreams:` section: handler peer groups, their timeouts, pool and circuit breaker.
//!
//! Owns the checks of one group. Peers are resolved here at load time (a name that does not
//! resolve is a config error, not a runtime surprise); a name keeps every address it resolves
//! to, and is resolved again while running (`delivery::resolve`). Nothing connects.

use std::net::{SocketAddr, ToSocketAddrs};
use std::num::{NonZeroU32, NonZeroUsize};

use anyhow::{anyhow, bail, Result};

use super::model::{flatten_peers, PeerSpec, ResolvedPeer, UpstreamConfig};
use super::raw::RawUpstream;
use super::values::{duration, nonzero_duration};

pub(super) fn upstream(name: &str, u: &RawUpstream) -> Result<UpstreamConfig> {
    let key = format!("upstreams.{name}");
    if u.peers.is_empty() {
        bail!("{key}.peers: at least one peer (host:port) is required");
    }
    let mut resolved = Vec::new();
    for (i, p) in u.peers.iter().enumerate() {
        let spec = peer_spec(&format!("{key}.peers[{i}]"), p)?;
        let addrs: Vec<SocketAddr> = match &spec {
            PeerSpec::Addr(a) => vec![*a],
            PeerSpec::Name { .. } => p
                .to_socket_addrs()
                .map_err(|e| anyhow!("{key}.peers[{i}]: {p:?} does not resolve ({e})"))?
                .collect(),
        };
        if addrs.is_empty() {
            bail!("{key}.peers[{i}]: {p:?} resolves to no address");
        }
        resolved.push(ResolvedPeer { spec, addrs });
    }
    let health_check_interval = match &u.health_check {
        Some(h) => Some(nonzero_duration(
            &format!("{key}.health_check.interval"),
            &h.interval,
        )?),
        None => None,
    };
    Ok(UpstreamConfig {
        name: name.to_string(),
        peers: flatten_peers(&resolved),
        resolved,
        resolve_interval: nonzero_duration(
            &format!("{key}.resolve_interval"),
            &u.resolve_interval,
        )?,
        connect_timeout: nonzero_duration(&format!("{key}.connect_timeout"), &u.connect_timeout)?,
        response_timeout: nonzero_duration(
            &format!("{key}.response_timeout"),
            &u.response_timeout,
        )?,
        idle_timeout: duration(&format!("{key}.idle_timeout"), &u.idle_timeout)?,
        pool_size: NonZeroUsize::new(u.pool_size)
            .ok_or_else(|| anyhow!("{key}.pool_size: must be at least 1"))?,
        health_check_interval,
        breaker_threshold: NonZeroU32::new(u.circuit_breaker.failure_threshold).ok_or_else(
            || anyhow!("{key}.circuit_breaker.failure_threshold: must be at least 1"),
        )?,
        breaker_open_for: nonzero_duration(
            &format!("{key}.circuit_breaker.open_for"),
            &u.circuit_breaker.open_for,
        )?,
    })
}

/// `host:port` or `ip:port` (IPv6 in brackets), as written in `peers`.
fn peer_spec(key: &str, value: &str) -> Result<PeerSpec> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(PeerSpec::Addr(addr));
    }
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("{key}: {value:?} needs a port (host:port)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("{key}: {value:?}: {port:?} is not a port number"))?;
    if host.is_empty() || host.contains(['[', ']', '/', ' ']) {
        bail!("{key}: {value:?} is not host:port");
    }
    Ok(PeerSpec::Name {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_addresses_or_names_with_a_port() {
        assert_eq!(
            peer_spec("k", "127.0.0.1:80").unwrap(),
            PeerSpec::Addr("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            peer_spec("k", "[::1]:80").unwrap(),
            PeerSpec::Addr("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            peer_spec("k", "handler.default.svc:8080").unwrap(),
            PeerSpec::Name {
                host: "handler.default.svc".into(),
                port: 8080
            }
        );
        for bad in ["handler", "handler:http", ":80", "a/b:80"] {
            let e = peer_spec("upstreams.h.peers[0]", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("upstreams.h.peers[0]: "), "{e}");
        }
    }
}
