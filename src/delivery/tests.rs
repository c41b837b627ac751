//! Unit tests of peer selection.

use std::time::Duration;

use super::*;

fn group(peers: &[&str]) -> UpstreamGroup {
    group_of(
        peers
            .iter()
            .map(|p| crate::config::ResolvedPeer {
                spec: crate::config::PeerSpec::Addr(p.parse().unwrap()),
                addrs: vec![p.parse().unwrap()],
            })
            .collect(),
    )
}

/// A group named `g` over `resolved`, with short timeouts (also used by the resolver's tests).
pub(super) fn group_of(resolved: Vec<crate::config::ResolvedPeer>) -> UpstreamGroup {
    let config = UpstreamConfig {
        name: "g".into(),
        peers: resolved.iter().flat_map(|r| r.addrs.clone()).collect(),
        resolved,
        resolve_interval: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(30),
        pool_size: std::num::NonZeroUsize::new(4).unwrap(),
        health_check_interval: None,
        breaker_threshold: std::num::NonZeroU32::new(5).unwrap(),
        breaker_open_for: Duration::from_secs(10),
    };
    let (lb, membership) = new_balancer(&config).unwrap();
    UpstreamGroup::new(
        config,
        Arc::new(lb),
        membership,
        crate::metrics::Metrics::new().upstream("g"),
    )
}

#[test]
fn a_retry_avoids_the_peer_that_just_failed() {
    let g = group(&["127.0.0.1:1001", "127.0.0.1:1002"]);
    let failed: SocketAddr = "127.0.0.1:1001".parse().unwrap();
    // Round-robin alone would hand out the failed peer every other time.
    for _ in 0..6 {
        assert_ne!(g.select_peer(Some(failed)).unwrap().addr, failed);
    }
    // With a single peer there is no choice: it is tried again.
    let single = group(&["127.0.0.1:1001"]);
    assert_eq!(single.select_peer(Some(failed)).unwrap().addr, failed);
}

#[test]
fn healthy_peers_are_preferred_but_all_down_still_selects_one() {
    let g = group(&["127.0.0.1:1001", "127.0.0.1:1002"]);
    let backends = g.balancer().backends().get_backend();
    let first = backends.iter().next().unwrap().clone();
    g.balancer().backends().set_enable(&first, false);
    let first_addr = *first.addr.as_inet().unwrap();
    for _ in 0..4 {
        assert_ne!(
            g.select_peer(None).unwrap().addr,
            first_addr,
            "a down peer is skipped"
        );
    }
    for b in backends.iter() {
        g.balancer().backends().set_enable(b, false);
    }
    assert!(
        g.select_peer(None).is_some(),
        "with every peer down, still try one"
    );
    // The only peer, down and just failed, is still the one selected.
    let single = group(&["127.0.0.1:1001"]);
    for b in single.balancer().backends().get_backend().iter() {
        single.balancer().backends().set_enable(b, false);
    }
    let failed: SocketAddr = "127.0.0.1:1001".parse().unwrap();
    assert_eq!(single.select_peer(Some(failed)).unwrap().addr, failed);
}
