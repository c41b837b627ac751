//! The admin listener: `/metrics`, `/healthz`, `/readyz`.
//!
//! Owns what operators and orchestrators poll. Reads state (metrics, peer health), never changes
//! it, and serves nothing from the request path. Bind it to loopback or a private network.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::IntGauge;

use crate::delivery::UpstreamGroup;
use crate::metrics::Metrics;

pub struct AdminApp {
    metrics: Arc<Metrics>,
    upstreams: Vec<Arc<UpstreamGroup>>,
    peer_gauges: Vec<Vec<IntGauge>>,
}

impl AdminApp {
    pub fn new(metrics: Arc<Metrics>, upstreams: Vec<Arc<UpstreamGroup>>) -> Self {
        let peer_gauges = upstreams
            .iter()
            .map(|u| {
                u.config
                    .peers
                    .iter()
                    .map(|p| metrics.peer_health(&u.config.name, &p.to_string()))
                    .collect()
            })
            .collect();
        AdminApp {
            metrics,
            upstreams,
            peer_gauges,
        }
    }

    /// Per group, how many peers pass their health check (peers never checked count as healthy).
    fn healthy_peers(&self) -> Vec<(String, usize, usize)> {
        self.upstreams
            .iter()
            .zip(&self.peer_gauges)
            .map(|(u, gauges)| {
                let backends = u.balancer().backends();
                let current = backends.get_backend();
                let mut healthy = 0;
                // Gauges follow config order; the backend set is ordered differently.
                for (addr, gauge) in u.config.peers.iter().zip(gauges) {
                    let ok = current
                        .iter()
                        .find(|b| b.addr.as_inet() == Some(addr))
                        .is_some_and(|b| backends.ready(b));
                    gauge.set(i64::from(ok));
                    healthy += usize::from(ok);
                }
                (u.config.name.clone(), healthy, u.config.peers.len())
            })
            .collect()
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(&body).expect("json value serializes");
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)
        .expect("valid response")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/metrics" => {
                self.healthy_peers(); // refreshes the peer gauges
                let body = self.metrics.render();
                Response::builder()
                    .status(StatusCode::OK)
                    .header(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)
                    .header(http::header::CONTENT_LENGTH, body.len())
                    .body(body)
                    .expect("valid response")
            }
            "/healthz" => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
            "/readyz" => {
                let groups = self.healthy_peers();
                let ready = groups.iter().any(|(_, healthy, _)| *healthy > 0);
                let detail: serde_json::Map<String, serde_json::Value> = groups
                    .into_iter()
                    .map(|(name, healthy, total)| {
                        (
                            name,
                            serde_json::json!({"healthy_peers": healthy, "peers": total}),
                        )
                    })
                    .collect();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(
                    status,
                    serde_json::json!({"ready": ready, "upstreams": detail}),
                )
            }
            _ => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not_found", "detail": "admin paths: /metrics, /healthz, /readyz"}),
            ),
        }
    }
}
