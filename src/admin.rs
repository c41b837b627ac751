//! The admin listener: `/metrics`, `/healthz`, `/readyz`.
//!
//! Owns what operators and orchestrators poll. Reads state (metrics, peer health), never changes
//! it, and serves nothing from the request path. Bind it to loopback or a private network.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::IntGauge;

use crate::buffer::NotificationStore;
use crate::clock::now_ms;
use crate::dedupe::Dedupe;
use crate::delivery::UpstreamGroup;
use crate::lifecycle::Draining;
use crate::metrics::Metrics;
use crate::policy::CircuitState;

/// How long `/readyz` waits for the store's counts before calling it unreadable.
const READINESS_STORE_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

pub struct AdminApp {
    metrics: Arc<Metrics>,
    upstreams: Vec<Arc<UpstreamGroup>>,
    /// (upstream, peer) health gauges exported so far: a peer that left its group (reload,
    /// re-resolution) has its series removed rather than frozen at its last value.
    exported_peers: Mutex<HashSet<(String, String)>>,
    circuit_gauges: Vec<IntGauge>,
    store: Option<Arc<dyn NotificationStore>>,
    /// `buffer.max_messages`: a full store cannot buffer, so it does not count towards ready.
    store_capacity: u64,
    store_writable: Arc<AtomicBool>,
    /// Duplicate suppression, when enabled (a shared one can be degraded).
    dedupe: Option<Arc<dyn Dedupe>>,
    draining: Draining,
}

impl AdminApp {
    pub fn new(
        metrics: Arc<Metrics>,
        upstreams: Vec<Arc<UpstreamGroup>>,
        store: Option<Arc<dyn NotificationStore>>,
        store_capacity: u64,
        store_writable: Arc<AtomicBool>,
        dedupe: Option<Arc<dyn Dedupe>>,
        draining: Draining,
    ) -> Self {
        let circuit_gauges = upstreams
            .iter()
            .map(|u| metrics.circuit_state(&u.config.name))
            .collect();
        AdminApp {
            metrics,
            upstreams,
            exported_peers: Mutex::new(HashSet::new()),
            circuit_gauges,
            store,
            store_capacity,
            store_writable,
            dedupe,
            draining,
        }
    }

    /// Per group: name, peers passing their health check (never-checked peers count as
    /// healthy), peers, circuit state. Refreshes the health and circuit gauges on the way.
    fn upstream_status(&self) -> Vec<(String, usize, usize, CircuitState)> {
        let now = Instant::now();
        let mut exported = HashSet::new();
        let status = self
            .upstreams
            .iter()
            .zip(&self.circuit_gauges)
            .map(|(u, circuit_gauge)| {
                let circuit = u.circuit().state(now);
                circuit_gauge.set(circuit.as_gauge());
                let backends = u.balancer().backends();
                let current = backends.get_backend();
                let peers = u.peer_addrs();
                let mut healthy = 0;
                for addr in &peers {
                    let ok = current
                        .iter()
                        .find(|b| b.addr.as_inet() == Some(addr))
                        .is_some_and(|b| backends.ready(b));
                    let label = addr.to_string();
                    self.metrics
                        .peer_health(&u.config.name, &label)
                        .set(i64::from(ok));
                    exported.insert((u.config.name.clone(), label));
                    healthy += usize::from(ok);
                }
                (u.config.name.clone(), healthy, peers.len(), circuit)
            })
            .collect();
        let mut previous = self
            .exported_peers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (upstream, peer) in previous.difference(&exported) {
            self.metrics.forget_peer(upstream, peer);
        }
        *previous = exported;
        status
    }
}

impl AdminApp {
    /// Pending messages in the store, if there is one and it answers within
    /// [`READINESS_STORE_WAIT`]: a probe with a 1 s timeout (Kubernetes' default) must get its
    /// answer from a store that hangs too.
    async fn pending(&self) -> Option<u64> {
        let store = self.store.as_ref()?;
        let stats = tokio::time::timeout(READINESS_STORE_WAIT, store.stats()).await;
        stats.ok()?.ok().map(|stats| stats.pending)
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
                let dedupe = self.dedupe.as_ref().map(|d| d.degraded());
                let (ready, body) =
                    readiness(&groups, store.as_ref(), dedupe, self.draining.is_draining());
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
/// draining: the instance still serves, but the load balancer should move on. A degraded
/// dedupe (`Some(true)`: its shared store is down) is shown but does not make the instance
/// unready: every instance shares that store, and forwarding without suppression beats
/// taking the whole fleet out of rotation.
fn readiness(
    groups: &[(String, usize, usize, CircuitState)],
    store: Option<&StoreReadiness>,
    dedupe_degraded: Option<bool>,
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
    let dedupe = dedupe_degraded.map(|degraded| if degraded { "degraded" } else { "ok" });
    let body = serde_json::json!({
        "ready": ready,
        "draining": draining,
        "upstreams": upstreams,
        "buffer": buffer,
        "dedupe": dedupe,
    });
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
        let (ready, body) = readiness(&group(1, CircuitState::Closed), None, None, false);
        assert!(ready);
        assert_eq!(body["upstreams"]["handler"]["healthy_peers"], 1);
        assert_eq!(body["buffer"], serde_json::Value::Null);
    }

    #[test]
    fn with_the_handler_down_readiness_rests_on_a_writable_buffer_with_room() {
        let down = group(0, CircuitState::Open);
        assert!(!readiness(&down, None, None, false).0);
        assert!(readiness(&down, Some(&store(true, Some(3))), None, false).0);
        assert!(
            !readiness(&down, Some(&store(true, Some(10))), None, false).0,
            "full"
        );
        assert!(
            !readiness(&down, Some(&store(true, None)), None, false).0,
            "unreadable"
        );
        // A store I/O error (the flow flips `writable`) is visible and takes readiness away.
        let (ready, body) = readiness(&down, Some(&store(false, Some(3))), None, false);
        assert!(!ready);
        assert_eq!(body["buffer"]["writable"], false);
    }

    #[test]
    fn draining_is_never_ready() {
        let (ready, body) = readiness(&group(2, CircuitState::Closed), None, None, true);
        assert!(!ready);
        assert_eq!(body["draining"], true);
    }

    #[test]
    fn a_degraded_dedupe_is_shown_but_keeps_the_instance_ready() {
        let healthy = group(1, CircuitState::Closed);
        let (ready, body) = readiness(&healthy, None, Some(true), false);
        assert!(ready);
        assert_eq!(body["dedupe"], "degraded");
        assert_eq!(
            readiness(&healthy, None, Some(false), false).1["dedupe"],
            "ok"
        );
        assert_eq!(
            readiness(&healthy, None, None, false).1["dedupe"],
            serde_json::Value::Null
        );
    }
}
