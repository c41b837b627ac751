//! `notify_proxy_route_info{route, kind}`: which routes serve now, and of which kind, so that
//! alerts and panels about notifications can leave the error-event routes out (their refusals
//! are not 13807s). Replaced as a whole at start and by each reload.

use prometheus::{IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub(super) struct RouteInfo(IntGaugeVec);

impl RouteInfo {
    pub(super) fn register(registry: &Registry) -> Self {
        let family = IntGaugeVec::new(
            Opts::new(
                "notify_proxy_route_info",
                "Always 1 for each route serving now, labelled with its kind.",
            ),
            &["route", "kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(family.clone()))
            .expect("registered once");
        RouteInfo(family)
    }

    /// `routes` as (name, kind label) are the ones serving now.
    pub(super) fn set(&self, routes: &[(&str, &str)]) {
        self.0.reset();
        for (route, kind) in routes {
            self.0.with_label_values(&[route, kind]).set(1);
        }
    }
}
