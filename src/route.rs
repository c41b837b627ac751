//! The routes as the request path uses them: found by exact path, each carrying everything its
//! requests need in one value: a notification route its validated config, metrics and
//! upstream; a `twilio_errors` route its config and metrics.
//!
//! Built once at start from the validated config (and again by each reload). It owns no
//! request logic: the edge looks a route up, the checks and the flow read from it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, ErrorRoute, Route};
use crate::delivery::Deliver;
use crate::metrics::{Metrics, RouteMetrics};
use crate::twilio_errors::ServedUrl;

/// One notification route, ready to serve: its config, its metrics and the upstream it
/// delivers to.
pub struct LiveRoute {
    pub route: Route,
    pub metrics: RouteMetrics,
    pub upstream: Arc<dyn Deliver>,
}

/// One route taking Twilio's error events: its config and metrics.
pub struct LiveErrorRoute {
    pub route: ErrorRoute,
    pub metrics: RouteMetrics,
}

/// The route a path leads to, by kind.
#[derive(Clone, Copy)]
pub enum Served<'a> {
    Notification(&'a LiveRoute),
    TwilioErrors(&'a LiveErrorRoute),
}

impl Served<'_> {
    pub fn metrics(&self) -> &RouteMetrics {
        match self {
            Served::Notification(r) => &r.metrics,
            Served::TwilioErrors(r) => &r.metrics,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Served::Notification(r) => &r.route.name,
            Served::TwilioErrors(r) => &r.route.name,
        }
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Notification(usize),
    TwilioErrors(usize),
}

/// Every route, by exact path, plus the metrics of requests that matched none.
pub struct Routes {
    by_path: HashMap<String, Slot>,
    routes: Vec<LiveRoute>,
    error_routes: Vec<LiveErrorRoute>,
    unmatched: RouteMetrics,
}

impl Routes {
    /// `upstreams` are in the order of `config.upstreams` (routes refer to them by index).
    pub fn new(config: &Config, upstreams: &[Arc<dyn Deliver>], metrics: &Metrics) -> Self {
        let routes: Vec<LiveRoute> = config
            .routes
            .iter()
            .map(|route| LiveRoute {
                route: route.clone(),
                metrics: metrics.route(&route.name),
                upstream: upstreams[route.upstream].clone(),
            })
            .collect();
        let error_routes: Vec<LiveErrorRoute> = config
            .error_routes
            .iter()
            .map(|route| LiveErrorRoute {
                route: route.clone(),
                metrics: metrics.route(&route.name),
            })
            .collect();
        let by_path = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.route.path.clone(), Slot::Notification(i)))
            .chain(
                error_routes
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.route.path.clone(), Slot::TwilioErrors(i))),
            )
            .collect();
        let kinds: Vec<(&str, &str)> = routes
            .iter()
            .map(|r| (r.route.name.as_str(), "notification"))
            .chain(
                error_routes
                    .iter()
                    .map(|r| (r.route.name.as_str(), "twilio_errors")),
            )
            .collect();
        metrics.set_routes(&kinds);
        Routes {
            by_path,
            routes,
            error_routes,
            unmatched: metrics.unmatched(),
        }
    }

    /// The route serving exactly `path` (raw bytes, query excluded).
    pub fn find(&self, path: &[u8]) -> Option<Served<'_>> {
        let path = std::str::from_utf8(path).ok()?;
        self.by_path.get(path).map(|slot| match *slot {
            Slot::Notification(i) => Served::Notification(&self.routes[i]),
            Slot::TwilioErrors(i) => Served::TwilioErrors(&self.error_routes[i]),
        })
    }

    /// The notification route called `name` (routes are few: a scan).
    pub fn named(&self, name: &str) -> Option<&LiveRoute> {
        self.routes.iter().find(|r| r.route.name == name)
    }

    /// Whether any route takes Twilio's error events: only then are answers remembered for
    /// reconciling.
    pub fn reconciles(&self) -> bool {
        !self.error_routes.is_empty()
    }

    /// The URLs Twilio may call to reach a notification route.
    pub fn served_urls(&self) -> Vec<ServedUrl> {
        self.routes
            .iter()
            .map(|r| match &r.route.public_url {
                Some(u) => ServedUrl::Public {
                    scheme: u.scheme.clone(),
                    host: u.host.clone(),
                    port: u.port.clone(),
                    path: u.path.clone(),
                },
                None => ServedUrl::Hosts {
                    hosts: r.route.allowed_hosts.clone(),
                    path: r.route.path.clone(),
                },
            })
            .collect()
    }

    /// Metrics for requests that matched no route (malformed heads, unknown paths).
    pub fn unmatched(&self) -> &RouteMetrics {
        &self.unmatched
    }
}
