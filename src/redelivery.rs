//! The redelivery worker: a Pingora background service that drains the durable buffer.
//!
//! Owns the lifecycle of a buffered message after the live path gave up: redeliver (oldest
//! first, bounded concurrency, backoff between attempts, respecting the circuit breaker) until
//! the handler gives a final answer, or move it to the dead-letter table once its TTL has
//! passed. Every message ends counted: redelivered (by result) or dead-lettered (by reason).
//! Answers are judged by [`settle`], as on the live path and in `buffer replay`. It shares
//! [`UpstreamGroup::deliver_once`] with the live path and never answers Twilio.
//!
//! Time comes from an injected [`Clock`] (a [`SteadyClock`] in the proxy), so a step of the
//! system clock moves neither schedules nor expiry. Shutdown is checked before each message of
//! a pass, and each attempt is bounded by the shutdown budget (`server.graceful_shutdown_timeout`
//! less the store calls that follow an attempt, see `app`), so a pass under way ends within it
//! and an accepted redelivery is still removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::buffer::{NotificationStore, StoreError};
use crate::clock::{Clock, SteadyClock};
use crate::delivery::UpstreamGroup;
use crate::jitter::Jitter;
use crate::logging::OncePer;
use crate::metrics::{RouteMetrics, StoreMetrics};
use crate::outcome::{DeadLetterReason, RedeliveryResult, StoreOperation};
use crate::policy::{Admission, Backoff, RetryPolicy};
use crate::snapshot::LiveConfig;

/// How long a call rings (`buffer.ring_window`'s default).
pub const DEFAULT_RING_WINDOW: Duration = Duration::from_secs(30);

/// What one pass did (for tests and logs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassSummary {
    pub delivered: usize,
    pub final_answer: usize,
    pub failed: usize,
    pub expired: usize,
    pub orphaned: usize,
    pub skipped_open_circuit: usize,
    /// The store returned as many due messages as one pass takes: more may be waiting.
    pub batch_full: bool,
}

impl PassSummary {
    /// More is due and this pass made way: the next pass should start at once rather than a
    /// `redelivery_interval` later (a backlog after an outage drains at the handler's pace,
    /// not 8 × concurrency messages per interval). A pass that only failed waits as usual.
    pub fn backlog(&self) -> bool {
        self.batch_full && self.delivered + self.final_answer + self.expired + self.orphaned > 0
    }
}

/// What the worker knows about one route: how to judge its answers and where to count.
pub struct RouteRedelivery {
    pub policy: RetryPolicy,
    pub metrics: RouteMetrics,
}

/// Where the worker finds a route's policy and metrics by name.
pub enum RouteSource {
    /// Fixed when the worker was built (tests, tools).
    Fixed(HashMap<String, RouteRedelivery>),
    /// The snapshot serving now: a live reload changes how the worker judges answers at the
    /// same moment as the live path.
    Live(Arc<LiveConfig>),
}

impl From<HashMap<String, RouteRedelivery>> for RouteSource {
    fn from(routes: HashMap<String, RouteRedelivery>) -> Self {
        RouteSource::Fixed(routes)
    }
}

impl From<Arc<LiveConfig>> for RouteSource {
    fn from(live: Arc<LiveConfig>) -> Self {
        RouteSource::Live(live)
    }
}

impl RouteSource {
    /// Runs `f` with the route's retry policy and metrics, `None` when no route has that name
    /// (any more).
    fn with<R>(&self, name: &str, f: impl FnOnce(Option<(&RetryPolicy, &RouteMetrics)>) -> R) -> R {
        match self {
            RouteSource::Fixed(routes) => f(routes.get(name).map(|r| (&r.policy, &r.metrics))),
            RouteSource::Live(live) => {
                let snapshot = live.load();
                f(snapshot
                    .routes
                    .named(name)
                    .map(|r| (&r.route.retry, &r.metrics)))
            }
        }
    }
}

mod one;
use one::redeliver_one;

struct Inner {
    store: Arc<dyn NotificationStore>,
    groups: HashMap<String, Arc<UpstreamGroup>>,
    routes: RouteSource,
    backoff: Backoff,
    store_metrics: StoreMetrics,
    clock: Arc<dyn Clock>,
    /// Each attempt ends within this (see [`Redeliverer::with_shutdown_budget`]).
    attempt_bound: Option<Duration>,
    /// Deliveries later than this after arrival are counted as after the ring window.
    ring_window: Duration,
    /// Spreads the backoffs of messages that failed together.
    jitter: Jitter,
}

pub struct Redeliverer {
    inner: Arc<Inner>,
    interval: Duration,
    concurrency: usize,
}

enum Ended {
    Redelivered(RedeliveryResult),
    DeadLettered(DeadLetterReason),
    SkippedOpenCircuit,
}

impl Redeliverer {
    pub fn new(
        store: Arc<dyn NotificationStore>,
        groups: HashMap<String, Arc<UpstreamGroup>>,
        routes: impl Into<RouteSource>,
        backoff: Backoff,
        interval: Duration,
        concurrency: usize,
        store_metrics: StoreMetrics,
    ) -> Self {
        Redeliverer {
            inner: Arc::new(Inner {
                store,
                groups,
                routes: routes.into(),
                backoff,
                store_metrics,
                clock: Arc::new(SteadyClock::new()),
                attempt_bound: None,
                ring_window: DEFAULT_RING_WINDOW,
                jitter: Jitter::new(),
            }),
            interval,
            concurrency: concurrency.max(1),
        }
    }

    fn inner_mut(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("configured before the first pass")
    }

    /// Reads time from `clock` instead of a [`SteadyClock`] of its own (share the flow's).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.inner_mut().clock = clock;
        self
    }

    /// Counts deliveries later than `window` after arrival as after the ring window
    /// (`buffer.ring_window`).
    pub fn with_ring_window(mut self, window: Duration) -> Self {
        self.inner_mut().ring_window = window;
        self
    }

    /// Bounds every attempt by `budget` (`server.graceful_shutdown_timeout`): once shutdown
    /// begins no new attempt starts, and those under way end within it, answered or not. An
    /// attempt cut short is rescheduled (delivered again after the restart: at-least-once),
    /// never lost.
    pub fn with_shutdown_budget(mut self, budget: Duration) -> Self {
        self.inner_mut().attempt_bound = Some(budget);
        self
    }

    /// One sweep over the messages that are due: at most `concurrency` in flight at a time.
    ///
    /// The store read runs in its own task: a store that panics fails this pass (logged and
    /// counted by the caller), not the worker, so the next pass tries again.
    pub async fn pass(&self) -> Result<PassSummary, StoreError> {
        self.pass_until(&|| false).await
    }

    /// [`Redeliverer::pass`], starting no further message once `stop` says so (shutdown);
    /// the ones under way finish (within the attempt bound) so their results are recorded.
    pub async fn pass_until(
        &self,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<PassSummary, StoreError> {
        let store = self.inner.store.clone();
        // A store that leases what `due` returns gets no more than starts at once: a message
        // waiting its turn inside this pass could outlive its lease and be claimed by another
        // instance while this one still delivers it. Without leases, fewer store reads.
        let limit = if store.lease().is_some() {
            self.concurrency
        } else {
            self.concurrency * 8
        };
        let now = self.inner.clock.now_ms();
        // No schedule is further ahead than the longest backoff, unless the clock stepped back.
        let horizon = u64::try_from(self.inner.backoff.delay(u32::MAX, 0.0).as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(2);
        // Groups whose circuit lets nothing through now: a leasing store claims none of their
        // messages (but still returns the expired ones, to dead-letter them).
        let held: Vec<String> = self
            .inner
            .groups
            .iter()
            .filter(|(_, group)| group.admission() == Admission::None)
            .map(|(name, _)| name.clone())
            .collect();
        let due =
            match tokio::spawn(async move { store.due(now, horizon, limit, &held).await }).await {
                Ok(due) => due?,
                Err(_) => {
                    // A returned error is counted where it happened; a panic only here.
                    self.inner.store_metrics.error(StoreOperation::Due);
                    return Err(StoreError::Aborted {
                        operation: StoreOperation::Due.as_str(),
                    });
                }
            };
        let mut summary = PassSummary {
            batch_full: due.len() >= limit,
            ..PassSummary::default()
        };
        let mut queue = due.into_iter();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < self.concurrency && !stop() {
                let Some(message) = queue.next() else { break };
                running.spawn(redeliver_one(self.inner.clone(), message));
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            match done {
                Ok(Ended::Redelivered(RedeliveryResult::Delivered)) => summary.delivered += 1,
                Ok(Ended::Redelivered(RedeliveryResult::Failed)) => summary.failed += 1,
                Ok(Ended::Redelivered(_)) => summary.final_answer += 1,
                Ok(Ended::DeadLettered(DeadLetterReason::Expired)) => summary.expired += 1,
                Ok(Ended::DeadLettered(DeadLetterReason::Orphaned)) => summary.orphaned += 1,
                Ok(Ended::SkippedOpenCircuit) => summary.skipped_open_circuit += 1,
                Err(e) => tracing::error!(error = %e, "redelivery task failed"),
            }
        }
        Ok(summary)
    }
}

#[cfg(test)]
mod tests;

#[async_trait]
impl BackgroundService for Redeliverer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A store that is down fails every pass (4 a second by default): say so once a minute.
        let error_log = OncePer::new(Duration::from_secs(60));
        let mut backlog = false;
        loop {
            if !backlog {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tick.tick() => {}
                }
            }
            // Shutdown stops a pass between messages, never during one: a redelivery the
            // handler accepted must be removed from the store, or it would be delivered again
            // after the restart. The ones under way end within the shutdown budget.
            let stopping = || *shutdown.borrow();
            let pass = self.pass_until(&stopping).await;
            backlog = pass.as_ref().is_ok_and(PassSummary::backlog);
            match pass {
                Ok(s) if s != PassSummary::default() => tracing::debug!(?s, "redelivery pass"),
                Ok(_) => {}
                Err(e) => {
                    if error_log.due() {
                        tracing::error!(error = %e, "redelivery pass could not read the buffer; every pass retries (this is logged once a minute; notify_proxy_buffer_store_errors_total counts each)")
                    }
                }
            }
            if *shutdown.borrow() {
                break;
            }
        }
        // No redelivery is under way any more: another instance of the fleet may take this
        // one's claimed messages now instead of after their lease.
        match self.inner.store.release_leases().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "buffer: leases given back at shutdown"),
            Err(e) => {
                tracing::warn!(error = %e, "buffer: could not give leases back at shutdown; other instances take them over when the lease runs out")
            }
        }
    }
}
