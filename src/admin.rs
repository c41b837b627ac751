//! The admin listener: `/metrics`, `/healthz`, `/readyz`.
//!
//! Owns what operators and orchestrators poll. Reads state (metrics, peer health), never changes
//! it, and serves nothing from the request path. Bind it to loopback or a private network.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::IntGauge;

use crate::buffer::{now_ms, NotificationStore};
use crate::delivery::UpstreamGroup;
use crate::lifecycle::Draining;
use crate::metrics::Metrics;
use crate::policy::CircuitState;

pub struct AdminApp {
    metrics: Arc<Metrics>,
    upstreams: Vec<Arc<UpstreamGroup>>,
    peer_gauges: Vec<Vec<IntGauge>>,
    circuit_gauges: Vec<IntGauge>,
    store: Option<Arc<dyn NotificationStore>>,
    /// `buffer.max_messages`: a full store cannot buffer, so it does not count towards ready.
    store_capacity: u64,
    store_writable: Arc<AtomicBool>,
    draining: Draining,
}

impl AdminApp {
    pub fn new(
        metrics: Arc<Metrics>,
        upstreams: Vec<Arc<UpstreamGroup>>,
        store: Option<Arc<dyn NotificationStore>>,
        store_capacity: u64,
        store_writable: Arc<AtomicBool>,
        draining: Draining,
    ) -> Self {
        let circuit_gauges = upstreams
            .iter()
            .map(|u| metrics.circuit_state(&u.config.name))
            .collect();
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
            circuit_gauges,
            store,
            store_capacity,
            store_writable,
            draining,
        }
    }

    /// Per group: name, peers passing their health check (never-checked peers count as
    /// healthy), peers, circuit state. Refreshes the health and circuit gauges on the way.
    fn upstream_status(&self) -> Vec<(String, usize, usize, CircuitState)> {
        let now = Instant::now();
        self.upstreams
            .iter()
            .zip(&self.peer_gauges)
            .zip(&self.circuit_gauges)
            .map(|((u, gauges), circuit_gauge)| {
                let circuit = u.circuit().state(now);
                circuit_gauge.set(circuit.as_gauge());
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
                (
                    u.config.name.clone(),
                    healthy,
                    u.config.peers.len(),
                    circuit,
                )
            })
            .collect()
    }
}

impl AdminApp {
    /// Pending messages in the store, if there is one and it can be read.
    async fn pending(&self) -> Option<u64> {
        let store = self.store.as_ref()?;
        store.stats().await.ok().map(|stats| stats.pending)
    }

    async fn refresh_buffer_gauges(&self) {
        let Some(store) = &self.store else {
            return;
        };
        match store.stats().await {
            Ok(stats) => {
                let age = stats
                    .oldest_pending_received_at_ms
                    .map_or(0.0, |t| now_ms().saturating_sub(t) as f64 / 1000.0);
                self.metrics.set_buffer(stats.pending, stats.dead, age);
            }
            Err(e) => tracing::warn!(error = %e, "buffer stats unavailable"),
        }
    }
}

/// A JSON answer for Pingora's `ServeHttp` apps (admin, demo handler).
pub(crate) fn json(status: StatusCode, body: serde_json::Value) -> Response<Vec<u8>> {
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
                self.upstream_status(); // refreshes the peer and circuit gauges
                self.refresh_buffer_gauges().await;
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
                let groups = self.upstream_status();
                let store = match &self.store {
                    Some(store) => Some(StoreReadiness {
                        location: store.location(),
                        writable: self.store_writable.load(Ordering::Relaxed),
                        pending: self.pending().await,
                        max_messages: self.store_capacity,
                    }),
                    None => None,
                };
                let (ready, body) = readiness(&groups, store.as_ref(), self.draining.is_draining());
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, body)
            }
            _ => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not_found", "detail": "admin paths: /metrics, /healthz, /readyz"}),
            ),
        }
    }
}

/// What `/readyz` knows about the buffer.
struct StoreReadiness {
    location: String,
    /// False after a write failed for a reason other than being full.
    writable: bool,
    /// `None` when the store cannot even be read.
    pending: Option<u64>,
    max_messages: u64,
}

/// Ready when a request can end well: a group has a healthy peer behind a circuit that is not
/// open, or the buffer can take the request (writable, readable, with room). Never while
/// draining: the instance still serves, but the load balancer should move on.
fn readiness(
    groups: &[(String, usize, usize, CircuitState)],
    store: Option<&StoreReadiness>,
    draining: bool,
) -> (bool, serde_json::Value) {
    let can_deliver = groups
        .iter()
        .any(|(_, healthy, _, circuit)| *healthy > 0 && *circuit != CircuitState::Open);
    let can_buffer = store
        .is_some_and(|s| s.writable && s.pending.is_some_and(|pending| pending < s.max_messages));
    let ready = (can_deliver || can_buffer) && !draining;
    let upstreams: serde_json::Map<String, serde_json::Value> = groups
        .iter()
        .map(|(name, healthy, total, circuit)| {
            let circuit = match circuit {
                CircuitState::Closed => "closed",
                CircuitState::Open => "open",
                CircuitState::HalfOpen => "half_open",
            };
            (
                name.clone(),
                serde_json::json!({"healthy_peers": healthy, "peers": total, "circuit": circuit}),
            )
        })
        .collect();
    let buffer = store.map(|s| {
        serde_json::json!({
            "location": s.location,
            "writable": s.writable,
            "pending": s.pending,
            "max_messages": s.max_messages,
        })
    });
    let body = serde_json::json!({"ready": ready, "draining": draining, "upstreams": upstreams, "buffer": buffer});
    (ready, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(healthy: usize, circuit: CircuitState) -> Vec<(String, usize, usize, CircuitState)> {
        vec![("handler".into(), healthy, 2, circuit)]
    }

    fn store(writable: bool, pending: Option<u64>) -> StoreReadiness {
        StoreReadiness {
            location: "buffer.redb".into(),
            writable,
            pending,
            max_messages: 10,
        }
    }

    #[test]
    fn a_healthy_closed_group_is_ready() {
        let (ready, body) = readiness(&group(1, CircuitState::Closed), None, false);
        assert!(ready);
        assert_eq!(body["upstreams"]["handler"]["healthy_peers"], 1);
        assert_eq!(body["buffer"], serde_json::Value::Null);
    }

    #[test]
    fn with_the_handler_down_readiness_rests_on_a_writable_buffer_with_room() {
        let down = group(0, CircuitState::Open);
        assert!(!readiness(&down, None, false).0);
        assert!(readiness(&down, Some(&store(true, Some(3))), false).0);
        assert!(
            !readiness(&down, Some(&store(true, Some(10))), false).0,
            "full"
        );
        assert!(
            !readiness(&down, Some(&store(true, None)), false).0,
            "unreadable"
        );
        // A store I/O error (the flow flips `writable`) is visible and takes readiness away.
        let (ready, body) = readiness(&down, Some(&store(false, Some(3))), false);
        assert!(!ready);
        assert_eq!(body["buffer"]["writable"], false);
    }

    #[test]
    fn draining_is_never_ready() {
        let (ready, body) = readiness(&group(2, CircuitState::Closed), None, true);
        assert!(!ready);
        assert_eq!(body["draining"], true);
    }
}
