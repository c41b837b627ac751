//! The redelivery worker: a Pingora background service that drains the durable buffer.
//!
//! Owns the lifecycle of a buffered message after the live path gave up: redeliver (oldest
//! first, bounded concurrency, backoff between attempts, respecting the circuit breaker) until
//! the handler gives a final answer, or move it to the dead-letter table once its TTL has
//! passed. Every message ends counted: redelivered (by result) or dead-lettered (by reason).
//! Answers are judged by [`settle`], as on the live path and in `buffer replay`. It shares
//! [`UpstreamGroup::deliver_once`] with the live path and never answers Twilio.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::buffer::{now_ms, BufferedMessage, NotificationStore, StoreError, Table};
use crate::delivery::UpstreamGroup;
use crate::metrics::{RouteMetrics, StoreMetrics};
use crate::outcome::{DeadLetterReason, RedeliveryResult, StoreOperation};
use crate::policy::{jitter_random, settle, Backoff, RetryPolicy};

/// What one pass did (for tests and logs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassSummary {
    pub delivered: usize,
    pub final_answer: usize,
    pub failed: usize,
    pub expired: usize,
    pub orphaned: usize,
    pub skipped_open_circuit: usize,
}

/// What the worker knows about one route: how to judge its answers and where to count.
pub struct RouteRedelivery {
    pub policy: RetryPolicy,
    pub metrics: RouteMetrics,
}

struct Inner {
    store: Arc<dyn NotificationStore>,
    groups: HashMap<String, Arc<UpstreamGroup>>,
    routes: HashMap<String, RouteRedelivery>,
    backoff: Backoff,
    store_metrics: StoreMetrics,
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
        routes: HashMap<String, RouteRedelivery>,
        backoff: Backoff,
        interval: Duration,
        concurrency: usize,
        store_metrics: StoreMetrics,
    ) -> Self {
        Redeliverer {
            inner: Arc::new(Inner {
                store,
                groups,
                routes,
                backoff,
                store_metrics,
            }),
            interval,
            concurrency: concurrency.max(1),
        }
    }

    /// One sweep over the messages that are due: at most `concurrency` in flight at a time.
    ///
    /// The store read runs in its own task: a store that panics fails this pass (logged and
    /// counted by the caller), not the worker, so the next pass tries again.
    pub async fn pass(&self) -> Result<PassSummary, StoreError> {
        let store = self.inner.store.clone();
        let limit = self.concurrency * 8;
        let due = match tokio::spawn(async move { store.due(now_ms(), limit).await }).await {
            Ok(due) => due?,
            Err(_) => {
                // A returned error is counted where it happened; a panic only here.
                self.inner.store_metrics.error(StoreOperation::Due);
                return Err(StoreError::Aborted {
                    operation: StoreOperation::Due.as_str(),
                });
            }
        };
        let mut summary = PassSummary::default();
        let mut queue = due.into_iter();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < self.concurrency {
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

/// A store error is logged, not fatal: the message stays where it was and the next pass sees
/// it again.
fn logged<T>(what: &'static str, result: Result<T, StoreError>) -> Option<T> {
    result
        .map_err(|e| tracing::error!(error = %e, "buffer store: {what} failed"))
        .ok()
}

async fn dead_letter(
    inner: &Inner,
    message: &BufferedMessage,
    reason: DeadLetterReason,
    detail: String,
) -> Ended {
    let meta = &message.meta;
    tracing::warn!(
        buffer_id = meta.id,
        route = %meta.message.route,
        call_sid = meta.message.call_sid.as_deref().unwrap_or("-"),
        message_id = meta.message.message_id.as_deref().unwrap_or("-"),
        reason = reason.as_str(),
        detail = %detail,
        "moved to dead letter"
    );
    let moved = inner.store.move_to_dead_letter(meta.id, detail).await;
    // Counted once, when the move happened (a failed move is retried next pass).
    if logged("move to dead letter", moved) == Some(true) {
        if let Some(route) = inner.routes.get(&meta.message.route) {
            route.metrics.dead_lettered(reason);
        }
    }
    Ended::DeadLettered(reason)
}

async fn redeliver_one(inner: Arc<Inner>, message: BufferedMessage) -> Ended {
    let meta = &message.meta;
    let id = meta.id;
    let route = inner.routes.get(&meta.message.route);
    let now = now_ms();
    if now >= meta.message.expires_at_ms {
        let detail = format!(
            "expired after {} attempt(s); last error: {}",
            meta.message.attempts, meta.message.last_error
        );
        return dead_letter(&inner, &message, DeadLetterReason::Expired, detail).await;
    }
    let Some(group) = inner.groups.get(&meta.message.upstream) else {
        let detail = format!(
            "upstream group {:?} is no longer configured",
            meta.message.upstream
        );
        return dead_letter(&inner, &message, DeadLetterReason::Orphaned, detail).await;
    };
    let attempts = meta.message.attempts + 1;
    let wait = inner.backoff.delay(attempts, jitter_random());
    let next_at = now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    if !group.circuit().allow(Instant::now()) {
        // Not an attempt, and nothing written: during an outage every write would be an fsync
        // competing with the live path's buffer inserts. The next pass looks again.
        return Ended::SkippedOpenCircuit;
    }
    let remaining = Duration::from_millis(meta.message.expires_at_ms.saturating_sub(now));
    let started = Instant::now();
    let deadline = started + remaining.min(group.config.response_timeout);
    let result = group
        .deliver_once(&message.request, Some(deadline), None)
        .await;
    // A route that left the config still has its answers judged by the documented defaults.
    let default_policy = RetryPolicy::default();
    let policy = route.map_or(&default_policy, |r| &r.policy);
    let status = result.as_ref().ok().map(|a| a.answer.status);
    let settlement = settle(status, policy);
    let redelivery = RedeliveryResult::from(settlement);
    if settlement.is_final() {
        group.circuit().on_success();
        tracing::info!(
            buffer_id = id,
            route = %meta.message.route,
            call_sid = meta.message.call_sid.as_deref().unwrap_or("-"),
            message_id = meta.message.message_id.as_deref().unwrap_or("-"),
            status = status.unwrap_or(0),
            attempts,
            result = redelivery.as_str(),
            "redelivered"
        );
        logged(
            "remove delivered",
            inner.store.remove(Table::Pending, id).await,
        );
    } else {
        group.circuit().on_failure(started, Instant::now());
        let error = match &result {
            Ok(a) => format!("{} answered {}", a.peer, a.answer.status),
            Err(e) => e.to_string(),
        };
        tracing::debug!(buffer_id = id, attempts, error = %error, "redelivery failed");
        logged(
            "reschedule",
            inner.store.reschedule(id, attempts, next_at, error).await,
        );
    }
    if let Some(route) = route {
        route.metrics.redelivery(redelivery);
    }
    Ended::Redelivered(redelivery)
}

#[async_trait]
impl BackgroundService for Redeliverer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            // A pass is never cut short by shutdown: a redelivery the handler accepted must be
            // removed from the store, or it would be delivered again after the restart. A pass
            // lasts at most about one response_timeout per round of `concurrency` messages.
            match self.pass().await {
                Ok(s) if s != PassSummary::default() => tracing::debug!(?s, "redelivery pass"),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "redelivery pass could not read the buffer; next pass retries")
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::buffer::{NewMessage, StoreStats};
    use crate::metrics::Metrics;

    /// A store whose first `due` panics and whose second fails; after that it is empty.
    #[derive(Debug, Default)]
    struct FlakyStore {
        due_calls: AtomicUsize,
    }

    #[async_trait]
    impl NotificationStore for FlakyStore {
        fn location(&self) -> String {
            "flaky".into()
        }
        async fn insert(&self, _: NewMessage, _: Vec<u8>) -> Result<u64, StoreError> {
            unreachable!("the worker never inserts")
        }
        async fn due(&self, _: u64, _: usize) -> Result<Vec<BufferedMessage>, StoreError> {
            match self.due_calls.fetch_add(1, Ordering::SeqCst) {
                0 => panic!("a bug in a store backend"),
                1 => Err(StoreError::Aborted { operation: "due" }),
                _ => Ok(Vec::new()),
            }
        }
        async fn reschedule(&self, _: u64, _: u32, _: u64, _: String) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn move_to_dead_letter(&self, _: u64, _: String) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn remove(&self, _: Table, _: u64) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn stats(&self) -> Result<StoreStats, StoreError> {
            Ok(StoreStats::default())
        }
    }

    #[tokio::test]
    async fn the_worker_survives_a_panicking_and_a_failing_store_read() {
        let metrics = Metrics::new();
        let worker = Redeliverer::new(
            Arc::new(FlakyStore::default()),
            HashMap::new(),
            HashMap::new(),
            Backoff::try_new(Duration::from_millis(10), Duration::from_millis(20), 0.0).unwrap(),
            Duration::from_millis(10),
            2,
            metrics.store(),
        );
        assert!(
            worker.pass().await.is_err(),
            "the panic is an error of this pass"
        );
        assert!(worker.pass().await.is_err(), "so is a failed read");
        assert_eq!(worker.pass().await.unwrap(), PassSummary::default());
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains(r#"notify_proxy_buffer_store_errors_total{operation="due"} 1"#),
            "the panic is counted: {text}"
        );
    }
}
