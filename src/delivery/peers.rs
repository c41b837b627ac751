//! Peer membership of an upstream group: the balancer Pingora selects from, and the handle that
//! replaces its peers while running (a reload, a re-resolved host name).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};

use crate::config::UpstreamConfig;

/// The balancer's membership, which [`UpstreamGroup::set_peers`] replaces while running
/// (Pingora's own `Static` discovery cannot be changed from outside its crate).
#[derive(Clone, Default)]
pub struct PeerList(Arc<ArcSwap<BTreeSet<Backend>>>);

impl PeerList {
    pub(super) fn set(&self, addrs: &[SocketAddr]) {
        let backends = addrs
            .iter()
            .map(|a| Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(*a),
                weight: 1,
                ext: Default::default(),
            })
            .collect();
        self.0.store(Arc::new(backends));
    }
}

#[async_trait]
impl ServiceDiscovery for PeerList {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        Ok((BTreeSet::clone(&self.0.load()), HashMap::new()))
    }
}

/// Builds the balancer for one group and the handle that changes its peers. With a health
/// check interval, the returned balancer must be run as a background service (see `app`),
/// which performs the checks.
pub fn new_balancer(
    config: &UpstreamConfig,
) -> anyhow::Result<(LoadBalancer<RoundRobin>, PeerList)> {
    let membership = PeerList::default();
    membership.set(&config.peers);
    let mut lb =
        LoadBalancer::<RoundRobin>::from_backends(Backends::new(Box::new(membership.clone())));
    {
        use std::future::Future;
        // The discovery answers without awaiting anything, so one poll completes the update.
        let mut update = std::pin::pin!(lb.update());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match update.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(result) => result?,
            std::task::Poll::Pending => {
                anyhow::bail!("upstreams.{}: balancer setup blocked", config.name)
            }
        }
    }
    if let Some(interval) = config.health_check_interval {
        let mut check = pingora::lb::health_check::TcpHealthCheck::new();
        check.peer_template.options.connection_timeout = Some(config.connect_timeout);
        // One lost SYN must not take the only peer out of rotation.
        check.consecutive_failure = 2;
        lb.set_health_check(check);
        lb.health_check_frequency = Some(interval);
    }
    Ok((lb, membership))
}
