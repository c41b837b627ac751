//! Prometheus metrics: one explicit registry, families registered once, handles pre-resolved.
//!
//! Owns metric names, help texts, labels and buckets. Every label value comes from a closed set
//! (route and upstream names from config, outcome/reason/result enums), never from a request, so
//! cardinality is fixed at start. Per-route and per-upstream handles are resolved once, so the
//! hot path increments an atomic and does no label lookup. Never records a SID or a secret.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Request duration buckets (seconds): sub-millisecond for rejections, up to Twilio's 15 s budget.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];

/// Buffer store call buckets (seconds): an fsync or a round trip to a database, up to a stall.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Arrival → delivered buckets for buffered notifications (seconds): around a call's ~30 s of
/// ringing, then up to a long TTL.
const BUFFERED_DELIVERY_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0, 600.0,
];

/// Attempts-per-request buckets: 1 is the healthy case; the tail shows retries.
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0];

/// The route label used for requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// All metric families.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    rejections: IntCounterVec,
    schema_reported: IntCounterVec,
    request_duration: HistogramVec,
    upstream_attempts: IntCounterVec,
    upstream_duration: HistogramVec,
    upstream_peer_healthy: IntGaugeVec,
    retries: IntCounterVec,
    attempts: HistogramVec,
    deduplicated: IntCounterVec,
    redeliveries: IntCounterVec,
    dead_lettered: IntCounterVec,
    circuit_state: IntGaugeVec,
    circuit_probes: IntCounterVec,
    circuit_connect_checks: IntCounterVec,
    buffered_delivery: HistogramVec,
    buffered_delivered: IntCounterVec,
    buffer_messages: IntGaugeVec,
    buffer_oldest_age: prometheus::Gauge,
    store_duration: HistogramVec,
    store_errors: IntCounterVec,
    connections_open: IntGauge,
    connections_refused: IntCounter,
    peer_changes: IntCounterVec,
    resolve_failures: IntCounterVec,
    config_reloads: IntCounterVec,
    config_info: IntGaugeVec,
    store_aborted: IntCounterVec,
    dead_letters_evicted: IntCounter,
    log_lines_dropped: IntCounter,
    /// What the log queue counts, exported as `log_lines_dropped` at each render.
    dropped_lines: DroppedLines,
    lease_takeovers: IntCounter,
    claims_lost: IntCounter,
    dedupe_unavailable: IntCounter,
    twilio_errors: TwilioErrorMetrics,
    route_info: routes::RouteInfo,
    public_probe: PublicProbeMetrics,
}

mod handles;
mod probe;
mod routes;
mod twilio;

use crate::logging::DroppedLines;
use crate::outcome::ReloadResult;
pub use handles::{EdgeMetrics, ResolveMetrics, RouteMetrics, StoreMetrics, UpstreamMetrics};
pub use probe::PublicProbeMetrics;
pub use twilio::TwilioErrorMetrics;

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(REQUEST_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let requests = counter(
            "notify_proxy_requests_total",
            "Requests by route and how they ended (exactly one outcome per request).",
            &["route", "outcome"],
        );
        let rejections = counter(
            "notify_proxy_rejections_total",
            "Requests the proxy refused itself, by route and reason.",
            &["route", "reason"],
        );
        let schema_reported = counter(
            "notify_proxy_schema_violations_reported_total",
            "Schema violations let through because the route's schema_mode is report.",
            &["route"],
        );
        let request_duration = histogram(
            "notify_proxy_request_duration_seconds",
            "Time from the request head to the answer being ready to write, by route.",
            &["route"],
        );
        let upstream_attempts = counter(
            "notify_proxy_upstream_attempts_total",
            "Attempts to deliver to the handler, by upstream group and result.",
            &["upstream", "result"],
        );
        let upstream_duration = histogram(
            "notify_proxy_upstream_attempt_duration_seconds",
            "Duration of one delivery attempt to the handler, by upstream group.",
            &["upstream"],
        );
        let upstream_peer_healthy = IntGaugeVec::new(
            Opts::new(
                "notify_proxy_upstream_peer_healthy",
                "1 if the peer passes its health check, 0 if not.",
            ),
            &["upstream", "peer"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(upstream_peer_healthy.clone()))
            .expect("registered once");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "notify_proxy_build_info",
                "Always 1; labels carry the build's version.",
            ),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("registered once");
        let retries = counter(
            "notify_proxy_retries_total",
            "Retried delivery attempts on the live path (attempts after the first), by route.",
            &["route"],
        );
        let attempts = HistogramVec::new(
            HistogramOpts::new(
                "notify_proxy_request_attempts",
                "Delivery attempts per forwarded request on the live path, by route.",
            )
            .buckets(ATTEMPT_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(attempts.clone()))
            .expect("registered once");
        let deduplicated = counter(
            "notify_proxy_deduplicated_total",
            "Duplicates answered without forwarding, by route and what the original became (delivered, buffered).",
            &["route", "original"],
        );
        let redeliveries = counter(
            "notify_proxy_redeliveries_total",
            "Redelivery attempts of buffered notifications, by route and result.",
            &["route", "result"],
        );
        let dead_lettered = counter(
            "notify_proxy_dead_lettered_total",
            "Buffered notifications moved to the dead-letter table, by route and reason (expired: TTL passed; orphaned: its upstream group left the config).",
            &["route", "reason"],
        );
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let circuit_state = gauge(
            "notify_proxy_circuit_state",
            "Circuit breaker state per upstream group: 0 closed, 1 open, 2 half-open.",
            &["upstream"],
        );
        let circuit_probes = counter(
            "notify_proxy_circuit_probes_total",
            "Probe attempts of an open circuit, by upstream group and result (passed closes the circuit).",
            &["upstream", "result"],
        );
        let circuit_connect_checks = counter(
            "notify_proxy_circuit_connect_checks_total",
            "Connect checks of a circuit opened on refused connections, by upstream group and result.",
            &["upstream", "result"],
        );
        let buffered_delivery = HistogramVec::new(
            HistogramOpts::new(
                "notify_proxy_buffered_delivery_seconds",
                "Arrival at the proxy to delivery (2xx) for buffered notifications, by route.",
            )
            .buckets(BUFFERED_DELIVERY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(buffered_delivery.clone()))
            .expect("registered once");
        let buffered_delivered = counter(
            "notify_proxy_buffered_delivered_total",
            "Buffered notifications delivered (2xx), by route and whether within buffer.ring_window of their arrival (inside, after).",
            &["route", "ring_window"],
        );
        let buffer_messages = gauge(
            "notify_proxy_buffer_messages",
            "Messages in the durable buffer, by table (pending, dead_letter).",
            &["table"],
        );
        let dead_letters_evicted = IntCounter::new(
            "notify_proxy_dead_letters_evicted_total",
            "Oldest dead letters deleted to keep the table within buffer.max_dead_letters.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(dead_letters_evicted.clone()))
            .expect("unique metric");
        let log_lines_dropped = IntCounter::new(
            "notify_proxy_log_lines_dropped_total",
            "Log lines dropped because the background log queue was full (stderr too slow).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(log_lines_dropped.clone()))
            .expect("unique metric");
        let plain_counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let lease_takeovers = plain_counter(
            "notify_proxy_buffer_lease_takeovers_total",
            "Buffered notifications this instance claimed for redelivery from another instance whose heartbeat had stopped or whose lease ran out (it died, froze or was cut off mid-redelivery). PostgreSQL buffer only.",
        );
        let claims_lost = plain_counter(
            "notify_proxy_buffer_claims_lost_total",
            "Redeliveries this instance made after another instance had taken the message over (this one was frozen or cut off): the handler may get that notification twice. PostgreSQL buffer only.",
        );
        let dedupe_unavailable = plain_counter(
            "notify_proxy_dedupe_unavailable_total",
            "Dedupe claims, settles and releases that could not reach the shared store (or skipped it while backing off): copies of a notification may then be delivered more than once. PostgreSQL buffer only.",
        );
        let buffer_oldest_age = prometheus::Gauge::with_opts(Opts::new(
            "notify_proxy_buffer_oldest_age_seconds",
            "Age of the oldest pending buffered notification (0 when none).",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(buffer_oldest_age.clone()))
            .expect("registered once");
        let store_duration = HistogramVec::new(
            HistogramOpts::new(
                "notify_proxy_buffer_store_duration_seconds",
                "Duration of buffer store calls, by operation.",
            )
            .buckets(STORE_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_duration.clone()))
            .expect("registered once");
        let store_errors = counter(
            "notify_proxy_buffer_store_errors_total",
            "Buffer store calls that failed, by operation.",
            &["operation"],
        );
        let connections_open = IntGauge::new(
            "notify_proxy_connections_open",
            "Open client connections on the public listeners.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(connections_open.clone()))
            .expect("registered once");
        let connections_refused = IntCounter::new(
            "notify_proxy_connections_refused_total",
            "Client connections closed at once because limits.max_connections were open.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(connections_refused.clone()))
            .expect("registered once");
        let peer_changes = counter(
            "notify_proxy_upstream_peer_changes_total",
            "Times an upstream group's peer addresses changed after re-resolving its host names.",
            &["upstream"],
        );
        let resolve_failures = counter(
            "notify_proxy_upstream_resolve_failures_total",
            "Peer host name lookups that failed or found no address (the last good addresses were kept), by upstream group.",
            &["upstream"],
        );
        let config_reloads = counter(
            "notify_proxy_config_reloads_total",
            "Live reloads (SIGHUP) by result: success, invalid (the old config keeps serving), restart_required (a changed key needs a restart; the old config keeps serving).",
            &["result"],
        );
        for r in ReloadResult::ALL {
            config_reloads.with_label_values(&[r.as_str()]);
        }
        let config_info = gauge(
            "notify_proxy_config_info",
            "Always 1; hash is the SHA-256 (first 16 hex digits) of the config file serving now. Secrets are never in the file, so rotating a token alone does not change it.",
            &["hash"],
        );
        let store_aborted = counter(
            "notify_proxy_buffer_store_aborted_total",
            "Buffer store calls whose task died; a write among them may have committed anyway.",
            &["operation"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let twilio_errors = TwilioErrorMetrics::register(&registry);
        let route_info = routes::RouteInfo::register(&registry);
        let public_probe = PublicProbeMetrics::register(&registry);

        Metrics {
            registry,
            requests,
            rejections,
            schema_reported,
            request_duration,
            upstream_attempts,
            upstream_duration,
            upstream_peer_healthy,
            retries,
            attempts,
            deduplicated,
            redeliveries,
            dead_lettered,
            circuit_state,
            circuit_probes,
            circuit_connect_checks,
            buffered_delivery,
            buffered_delivered,
            buffer_messages,
            buffer_oldest_age,
            store_duration,
            store_errors,
            connections_open,
            connections_refused,
            peer_changes,
            resolve_failures,
            config_reloads,
            config_info,
            store_aborted,
            dead_letters_evicted,
            log_lines_dropped,
            dropped_lines: DroppedLines::default(),
            lease_takeovers,
            claims_lost,
            dedupe_unavailable,
            twilio_errors,
            route_info,
            public_probe,
        }
    }

    /// The routes serving now, as (name, kind): `notify_proxy_route_info`.
    pub fn set_routes(&self, routes: &[(&str, &str)]) {
        self.route_info.set(routes);
    }

    /// The counters of Twilio's error events and their reconciliation.
    pub fn twilio_errors(&self) -> TwilioErrorMetrics {
        self.twilio_errors.clone()
    }

    /// The handles of the proxy's own public probe (`probe.public`).
    pub fn public_probe(&self) -> PublicProbeMetrics {
        self.public_probe.clone()
    }

    /// Exports the lines `dropped` counts (the queue [`crate::logging::init`] started).
    pub fn with_dropped_lines(mut self, dropped: DroppedLines) -> Self {
        self.dropped_lines = dropped;
        self
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        // The log writer counts in its own handle (it exists before any registry does); bring
        // the counter up to it. Both only grow, so the difference is never negative.
        let dropped = self.dropped_lines.get();
        self.log_lines_dropped
            .inc_by(dropped.saturating_sub(self.log_lines_dropped.get()));
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
