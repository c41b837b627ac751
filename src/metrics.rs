//! Prometheus metrics: one explicit registry, families registered once, handles pre-resolved.
//!
//! Owns metric names, help texts, labels and buckets. Every label value comes from a closed set
//! (route and upstream names from config, outcome/reason/result enums), never from a request, so
//! cardinality is fixed at start. Per-route and per-upstream handles are resolved once, so the
//! hot path increments an atomic and does no label lookup. Never records a SID or a secret.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::outcome::{
    AttemptResult, DeadLetterReason, Outcome, Reason, RedeliveryResult, StoreOperation,
};

/// Request duration buckets (seconds): sub-millisecond for rejections, up to Twilio's 15 s budget.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
];

/// Buffer store call buckets (seconds): an fsync or a round trip to a database, up to a stall.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
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
}

/// Re-resolution counters of one upstream group.
#[derive(Clone)]
pub struct ResolveMetrics {
    /// The group's set of peer addresses changed after a lookup.
    pub changes: IntCounter,
    /// A peer name failed to resolve (its last good addresses were kept).
    pub failures: IntCounter,
}

impl ResolveMetrics {
    /// Handles that count into unregistered counters (tests, tools).
    pub fn detached() -> Self {
        let c = || IntCounter::new("detached", "not exported").expect("valid metric");
        ResolveMetrics {
            changes: c(),
            failures: c(),
        }
    }
}

/// The `result` label of `notify_proxy_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new config serves from the next request on.
    Success,
    /// The file does not load or validate (as `check` would say); the old config serves.
    Invalid,
    /// The file changes a key that needs a restart; the old config serves.
    RestartRequired,
}

impl ReloadResult {
    pub const ALL: [ReloadResult; 3] = [
        ReloadResult::Success,
        ReloadResult::Invalid,
        ReloadResult::RestartRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Invalid => "invalid",
            ReloadResult::RestartRequired => "restart_required",
        }
    }
}

/// Handles for one route, resolved at start.
pub struct RouteMetrics {
    requests: Vec<IntCounter>,
    rejections: Vec<IntCounter>,
    pub schema_reported: IntCounter,
    pub duration: Histogram,
    pub retries: IntCounter,
    pub attempts: Histogram,
    pub duplicate_of_delivered: IntCounter,
    pub duplicate_of_buffered: IntCounter,
    redeliveries: Vec<IntCounter>,
    dead_lettered: Vec<IntCounter>,
}

impl RouteMetrics {
    /// Counts a finished request: its outcome, and its reason when it was rejected.
    pub fn record(&self, outcome: Outcome, reason: Option<Reason>, seconds: f64) {
        self.requests[outcome as usize].inc();
        if let Some(reason) = reason {
            self.rejections[reason as usize].inc();
        }
        self.duration.observe(seconds);
    }

    /// Counts one redelivery attempt of a buffered message by its `result` label.
    pub fn redelivery(&self, result: RedeliveryResult) {
        self.redeliveries[result as usize].inc();
    }

    /// Counts a message moved to the dead-letter table (once, when the move happened).
    pub fn dead_lettered(&self, reason: DeadLetterReason) {
        self.dead_lettered[reason as usize].inc();
    }
}

/// The public listeners' connections: how many are open, how many the cap turned away.
#[derive(Clone)]
pub struct EdgeMetrics {
    pub open: IntGauge,
    pub refused: IntCounter,
}

/// Latency and errors of the buffer store's calls, by operation (any backend).
#[derive(Clone)]
pub struct StoreMetrics {
    duration: Vec<Histogram>,
    errors: Vec<IntCounter>,
    aborted: Vec<IntCounter>,
    /// Dead letters deleted to keep the table within `buffer.max_dead_letters`.
    pub dead_letters_evicted: IntCounter,
}

impl StoreMetrics {
    /// One call took `seconds`; `failed` when it returned an error.
    pub fn observe(&self, operation: StoreOperation, seconds: f64, failed: bool) {
        self.duration[operation as usize].observe(seconds);
        if failed {
            self.error(operation);
        }
    }

    /// A call failed without a timing (its task died).
    pub fn error(&self, operation: StoreOperation) {
        self.errors[operation as usize].inc();
    }

    /// A call's task died: also an error, but a write may have committed all the same (so a
    /// `503 buffer_failed` message can still be redelivered later: at-least-once).
    pub fn aborted(&self, operation: StoreOperation) {
        self.aborted[operation as usize].inc();
    }

    /// How many calls of `operation` were aborted (for tests and `check`).
    pub fn aborted_count(&self, operation: StoreOperation) -> u64 {
        self.aborted[operation as usize].get()
    }
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreMetrics")
    }
}

/// Handles for one upstream group, resolved at start.
pub struct UpstreamMetrics {
    attempts: Vec<IntCounter>,
    pub duration: Histogram,
}

impl UpstreamMetrics {
    pub fn record_attempt(&self, result: AttemptResult, seconds: f64) {
        self.attempts[result as usize].inc();
        self.duration.observe(seconds);
    }
}

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
        }
    }

    /// The public listeners' connection handles.
    pub fn edge(&self) -> EdgeMetrics {
        EdgeMetrics {
            open: self.connections_open.clone(),
            refused: self.connections_refused.clone(),
        }
    }

    /// Resolves the re-resolution series of one upstream group.
    pub fn resolve(&self, upstream: &str) -> ResolveMetrics {
        ResolveMetrics {
            changes: self.peer_changes.with_label_values(&[upstream]),
            failures: self.resolve_failures.with_label_values(&[upstream]),
        }
    }

    /// Counts one reload attempt.
    pub fn reloaded(&self, result: ReloadResult) {
        self.config_reloads
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// The config serving now: one `notify_proxy_config_info` series, labelled with its hash.
    pub fn set_config_hash(&self, hash: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
    }

    /// Drops the health gauge of a peer that left its group.
    pub fn forget_peer(&self, upstream: &str, peer: &str) {
        let _ = self
            .upstream_peer_healthy
            .remove_label_values(&[upstream, peer]);
    }

    /// Resolves the store series (created only when a buffer is configured).
    pub fn store(&self) -> StoreMetrics {
        StoreMetrics {
            duration: StoreOperation::ALL
                .iter()
                .map(|o| self.store_duration.with_label_values(&[o.as_str()]))
                .collect(),
            errors: StoreOperation::ALL
                .iter()
                .map(|o| self.store_errors.with_label_values(&[o.as_str()]))
                .collect(),
            aborted: StoreOperation::ALL
                .iter()
                .map(|o| self.store_aborted.with_label_values(&[o.as_str()]))
                .collect(),
            dead_letters_evicted: self.dead_letters_evicted.clone(),
        }
    }

    pub fn circuit_state(&self, upstream: &str) -> IntGauge {
        self.circuit_state.with_label_values(&[upstream])
    }

    /// Buffer gauges: pending and dead-letter counts, and the oldest pending message's age.
    pub fn set_buffer(&self, pending: u64, dead: u64, oldest_age_seconds: f64) {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.buffer_messages
            .with_label_values(&["pending"])
            .set(clamp(pending));
        self.buffer_messages
            .with_label_values(&["dead_letter"])
            .set(clamp(dead));
        self.buffer_oldest_age.set(oldest_age_seconds);
    }

    /// Resolves (and so exports at zero) every series of one route.
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            requests: Outcome::ALL
                .iter()
                .map(|o| self.requests.with_label_values(&[route, o.as_str()]))
                .collect(),
            rejections: Reason::ALL
                .iter()
                .map(|r| self.rejections.with_label_values(&[route, r.as_str()]))
                .collect(),
            schema_reported: self.schema_reported.with_label_values(&[route]),
            duration: self.request_duration.with_label_values(&[route]),
            retries: self.retries.with_label_values(&[route]),
            attempts: self.attempts.with_label_values(&[route]),
            duplicate_of_delivered: self.deduplicated.with_label_values(&[route, "delivered"]),
            duplicate_of_buffered: self.deduplicated.with_label_values(&[route, "buffered"]),
            redeliveries: RedeliveryResult::ALL
                .iter()
                .map(|r| self.redeliveries.with_label_values(&[route, r.as_str()]))
                .collect(),
            dead_lettered: DeadLetterReason::ALL
                .iter()
                .map(|r| self.dead_lettered.with_label_values(&[route, r.as_str()]))
                .collect(),
        }
    }

    /// Handles for requests that matched no route: only `rejected` (for `unknown_route` and
    /// `malformed`) can happen there, so only those series are exported; the other handles
    /// count into unregistered counters and never show up as misleading zeros.
    pub fn unmatched(&self) -> RouteMetrics {
        let route = UNMATCHED_ROUTE;
        let detached = || IntCounter::new("detached", "not exported").expect("valid metric");
        let detached_histogram = || {
            Histogram::with_opts(HistogramOpts::new("detached", "not exported"))
                .expect("valid metric")
        };
        RouteMetrics {
            requests: Outcome::ALL
                .iter()
                .map(|o| match o {
                    Outcome::Rejected => self.requests.with_label_values(&[route, o.as_str()]),
                    _ => detached(),
                })
                .collect(),
            rejections: Reason::ALL
                .iter()
                .map(|r| match r {
                    Reason::UnknownRoute | Reason::Malformed => {
                        self.rejections.with_label_values(&[route, r.as_str()])
                    }
                    _ => detached(),
                })
                .collect(),
            schema_reported: detached(),
            duration: self.request_duration.with_label_values(&[route]),
            retries: detached(),
            attempts: detached_histogram(),
            duplicate_of_delivered: detached(),
            duplicate_of_buffered: detached(),
            redeliveries: RedeliveryResult::ALL.iter().map(|_| detached()).collect(),
            dead_lettered: DeadLetterReason::ALL.iter().map(|_| detached()).collect(),
        }
    }

    /// Resolves every series of one upstream group.
    pub fn upstream(&self, upstream: &str) -> UpstreamMetrics {
        UpstreamMetrics {
            attempts: AttemptResult::ALL
                .iter()
                .map(|r| {
                    self.upstream_attempts
                        .with_label_values(&[upstream, r.as_str()])
                })
                .collect(),
            duration: self.upstream_duration.with_label_values(&[upstream]),
        }
    }

    pub fn peer_health(&self, upstream: &str, peer: &str) -> IntGauge {
        self.upstream_peer_healthy
            .with_label_values(&[upstream, peer])
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        // The log writer counts in a process-wide atomic (it exists before any registry does);
        // bring the counter up to it. Both only grow, so the difference is never negative.
        let dropped = crate::logging::dropped_lines();
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
