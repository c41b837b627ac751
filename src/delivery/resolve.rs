//! Re-resolving peers given as host names (a Kubernetes headless Service, a replaced VM), so a
//! handler that moves is found again without a restart.
//!
//! Owns the rule: every `resolve_interval` each name is looked up again; an answer with at
//! least one address replaces that name's addresses, a failed or empty answer keeps the last
//! good ones (a DNS outage must not empty the group); a changed set of addresses is applied to
//! the group ([`UpstreamGroup::set_peers`]), logged and counted. Lookups go through
//! [`Resolve`], so tests inject answers instead of touching DNS. It never connects to a peer.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::UpstreamGroup;
use crate::config::{flatten_peers, PeerSpec, ResolvedPeer};
use crate::metrics::ResolveMetrics;

/// Where host names are looked up.
#[async_trait]
pub trait Resolve: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`, through tokio's blocking pool).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// What one round of lookups found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The peers with their new addresses (a failed name keeps its last good ones).
    pub peers: Vec<ResolvedPeer>,
    /// Names that failed to resolve or resolved to nothing, with the reason.
    pub failures: Vec<(String, String)>,
}

/// Looks every name of `peers` up once.
pub async fn resolve_round(resolver: &dyn Resolve, peers: &[ResolvedPeer]) -> Round {
    let mut round = Round::default();
    for peer in peers {
        let mut next = peer.clone();
        if let PeerSpec::Name { host, port } = &peer.spec {
            match resolver.resolve(host, *port).await {
                Ok(mut addrs) if !addrs.is_empty() => {
                    addrs.sort();
                    addrs.dedup();
                    next.addrs = addrs;
                }
                Ok(_) => round
                    .failures
                    .push((peer.spec.to_string(), "no address".into())),
                Err(e) => round.failures.push((peer.spec.to_string(), e.to_string())),
            }
        }
        round.peers.push(next);
    }
    round
}

/// Resolves `group`'s names once and applies the result; returns whether its peers changed.
pub async fn refresh(
    group: &UpstreamGroup,
    resolver: &dyn Resolve,
    metrics: &ResolveMetrics,
) -> bool {
    let current = group.resolved();
    if !current
        .iter()
        .any(|p| matches!(p.spec, PeerSpec::Name { .. }))
    {
        return false;
    }
    let round = resolve_round(resolver, &current).await;
    for (name, error) in &round.failures {
        metrics.failures.inc();
        tracing::warn!(
            upstream = %group.config.name,
            peer = %name,
            error = %error,
            "peer did not resolve; keeping its last good addresses"
        );
    }
    let before = group.peer_addrs();
    let after = flatten_peers(&round.peers);
    let changed = group.set_peers(round.peers).await;
    if changed {
        metrics.changes.inc();
        tracing::info!(
            upstream = %group.config.name,
            before = ?before,
            after = ?after,
            "peer addresses changed after re-resolving"
        );
    }
    changed
}

/// A Pingora background service re-resolving every group's names on its interval.
pub struct PeerRefresher {
    groups: Vec<(Arc<UpstreamGroup>, ResolveMetrics)>,
    resolver: Arc<dyn Resolve>,
}

impl PeerRefresher {
    pub fn new(
        groups: Vec<(Arc<UpstreamGroup>, ResolveMetrics)>,
        resolver: Arc<dyn Resolve>,
    ) -> Self {
        PeerRefresher { groups, resolver }
    }
}

#[async_trait]
impl BackgroundService for PeerRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tasks = self.groups.iter().map(|(group, metrics)| {
            let interval = group.config.resolve_interval.max(Duration::from_millis(10));
            let resolver = self.resolver.clone();
            async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await; // the first tick is immediate; the config resolved at load
                loop {
                    tick.tick().await;
                    refresh(group, resolver.as_ref(), metrics).await;
                }
            }
        });
        tokio::select! {
            _ = futures_join_all(tasks.collect()) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Runs every future to its end on this task (they never end: until shutdown).
async fn futures_join_all(futures: Vec<impl Future<Output = ()>>) {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests;
