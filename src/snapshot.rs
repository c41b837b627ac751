//! The part of the configuration that a live reload may change, as one immutable snapshot.
//!
//! Owns [`Snapshot`] (routes with their policies and upstream, keys, allowed accounts, trusted
//! proxies, limits, the access-log switch, the probe identity, the public probe) and
//! [`LiveConfig`], the atomic pointer to the current one. The edge loads the pointer once per
//! request and keeps that `Arc` until the answer is written, so a request that started before a
//! swap finishes on the old snapshot and never sees half of each; the redelivery worker loads
//! it per message, for the route's retry policy and metrics, the public probe once per run.
//! Building a snapshot and deciding whether a new config may replace the running one is
//! `reload`'s job; this module only holds it.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::config::{Config, Limits, PublicProbe};
use crate::route::Routes;
use crate::signature::KeyRing;

/// Everything a request reads from the configuration, frozen.
pub struct Snapshot {
    pub routes: Routes,
    pub keys: KeyRing,
    /// Empty: every account is accepted.
    pub allowed_accounts: HashSet<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    pub access_log: bool,
    /// The identity a `probe --through` may notify (`probe.identity`); `None` refuses them.
    pub probe_identity: Option<String>,
    /// The proxy's own probe of its public URL (`probe.public`), read by its service each run.
    pub public_probe: Option<Arc<PublicProbe>>,
}

impl Snapshot {
    /// Whether `ip` is one of `trusted_proxies` (whose `X-Forwarded-*` headers count).
    pub fn trusts(&self, ip: Option<std::net::IpAddr>) -> bool {
        ip.is_some_and(|ip| self.trusted_proxies.iter().any(|net| net.contains(&ip)))
    }

    /// The reloadable parts of `config`, with `routes` already wired to their upstreams.
    pub fn new(config: &Config, routes: Routes) -> Self {
        Snapshot {
            routes,
            keys: config.keys.clone(),
            allowed_accounts: config.allowed_accounts.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            limits: config.limits,
            access_log: config.logging.access_log,
            probe_identity: config.probe.identity.clone(),
            public_probe: config.probe.public.clone(),
        }
    }
}

/// The current snapshot, swapped as a whole by a reload.
pub struct LiveConfig {
    current: ArcSwap<Snapshot>,
}

impl LiveConfig {
    pub fn new(snapshot: Snapshot) -> Self {
        LiveConfig {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot to serve one request with; hold it until the request ends.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `snapshot` the one new requests get; requests holding the old one keep it.
    pub fn swap(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}
