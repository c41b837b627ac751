//! The handles the rest of the crate counts through: one per route, upstream group, store and
//! listener, resolved once from the families in [`super::Metrics`], so the hot path increments an
//! atomic and does no label lookup.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};

use super::{Metrics, UNMATCHED_ROUTE};
use crate::outcome::{
    AttemptResult, DeadLetterReason, Outcome, Reason, RedeliveryResult, ReloadResult,
    StoreOperation,
};

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
    /// Arrival → delivered of buffered notifications, and whether inside the ring window.
    buffered_delivery: Histogram,
    delivered_inside_ring: IntCounter,
    delivered_after_ring: IntCounter,
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

    /// A buffered notification reached the handler (2xx) `seconds` after it arrived at the
    /// proxy; `inside_ring` when that was within `buffer.ring_window` (the call still rang).
    pub fn buffered_delivered(&self, seconds: f64, inside_ring: bool) {
        self.buffered_delivery.observe(seconds);
        if inside_ring {
            self.delivered_inside_ring.inc();
        } else {
            self.delivered_after_ring.inc();
        }
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
    /// Leases taken over from another instance (a shared store).
    pub lease_takeovers: IntCounter,
    /// Redeliveries whose claim another instance had taken over meanwhile.
    pub claims_lost: IntCounter,
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
    /// Probes of an open circuit, by result.
    pub probe_passed: IntCounter,
    pub probe_failed: IntCounter,
    /// Connect checks of a circuit opened on refused connections, by result.
    pub connect_checks_ok: IntCounter,
    pub connect_checks_failed: IntCounter,
}

impl UpstreamMetrics {
    pub fn record_attempt(&self, result: AttemptResult, seconds: f64) {
        self.attempts[result as usize].inc();
        self.duration.observe(seconds);
    }
}

impl Metrics {
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
            lease_takeovers: self.lease_takeovers.clone(),
            claims_lost: self.claims_lost.clone(),
        }
    }

    /// Failed calls of the shared dedupe store.
    pub fn dedupe_unavailable(&self) -> IntCounter {
        self.dedupe_unavailable.clone()
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
            buffered_delivery: self.buffered_delivery.with_label_values(&[route]),
            delivered_inside_ring: self
                .buffered_delivered
                .with_label_values(&[route, "inside"]),
            delivered_after_ring: self.buffered_delivered.with_label_values(&[route, "after"]),
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
            buffered_delivery: detached_histogram(),
            delivered_inside_ring: detached(),
            delivered_after_ring: detached(),
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
            probe_passed: self.circuit_probes.with_label_values(&[upstream, "passed"]),
            probe_failed: self.circuit_probes.with_label_values(&[upstream, "failed"]),
            connect_checks_ok: self
                .circuit_connect_checks
                .with_label_values(&[upstream, "connected"]),
            connect_checks_failed: self
                .circuit_connect_checks
                .with_label_values(&[upstream, "failed"]),
        }
    }

    pub fn peer_health(&self, upstream: &str, peer: &str) -> IntGauge {
        self.upstream_peer_healthy
            .with_label_values(&[upstream, peer])
    }
}
