//! The routes as the request path uses them: found by exact path, each carrying everything its
//! requests need (the validated route, its metrics and its upstream) in one value.
//!
//! Built once at start from the validated config. It owns no request logic: the edge looks a
//! route up, the checks and the flow read from it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, Route};
use crate::delivery::Deliver;
use crate::metrics::{Metrics, RouteMetrics};

/// One route, ready to serve: its config, its metrics and the upstream it delivers to.
pub struct LiveRoute {
    pub route: Route,
    pub metrics: RouteMetrics,
    pub upstream: Arc<dyn Deliver>,
}

/// Every route, by exact path, plus the metrics of requests that matched none.
pub struct Routes {
    by_path: HashMap<String, usize>,
    routes: Vec<LiveRoute>,
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
        Routes {
            by_path: routes
                .iter()
                .enumerate()
                .map(|(i, r)| (r.route.path.clone(), i))
                .collect(),
            routes,
            unmatched: metrics.unmatched(),
        }
    }

    /// The route serving exactly `path` (raw bytes, query excluded).
    pub fn find(&self, path: &[u8]) -> Option<&LiveRoute> {
        let path = std::str::from_utf8(path).ok()?;
        self.by_path.get(path).map(|&i| &self.routes[i])
    }

    /// The route called `name` (routes are few: a scan).
    pub fn named(&self, name: &str) -> Option<&LiveRoute> {
        self.routes.iter().find(|r| r.route.name == name)
    }

    /// Metrics for requests that matched no route (malformed heads, unknown paths).
    pub fn unmatched(&self) -> &RouteMetrics {
        &self.unmatched
    }
}
