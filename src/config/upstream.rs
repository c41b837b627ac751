//! The `upstreams:` section: handler peer groups, their timeouts, pool and circuit breaker.
//!
//! Owns the checks of one group. Peers are resolved here, once, at load time (a name that does
//! not resolve is a config error, not a runtime surprise); nothing connects to them.

use std::net::ToSocketAddrs;
use std::num::{NonZeroU32, NonZeroUsize};

use anyhow::{anyhow, bail, Result};

use super::model::UpstreamConfig;
use super::raw::RawUpstream;
use super::values::{duration, nonzero_duration};

pub(super) fn upstream(name: &str, u: &RawUpstream) -> Result<UpstreamConfig> {
    let key = format!("upstreams.{name}");
    if u.peers.is_empty() {
        bail!("{key}.peers: at least one peer (host:port) is required");
    }
    let mut peers = Vec::new();
    for (i, p) in u.peers.iter().enumerate() {
        let addr = p
            .to_socket_addrs()
            .map_err(|e| anyhow!("{key}.peers[{i}]: {p:?} is not a reachable host:port ({e})"))?
            .next()
            .ok_or_else(|| anyhow!("{key}.peers[{i}]: {p:?} resolves to no address"))?;
        peers.push(addr);
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
        peers,
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
