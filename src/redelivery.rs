//! The redelivery worker: a Pingora background service that drains the durable buffer.
//!
//! Owns the lifecycle of a buffered message after the live path gave up: redeliver (oldest
//! first, bounded concurrency, backoff between attempts, respecting the circuit breaker) until
//! the handler gives a final answer, or move it to the dead-letter table once its TTL has
//! passed. Every message ends counted: redelivered (by result) or dead-lettered. It shares
//! [`UpstreamGroup::deliver_once`] with the live path and never answers Twilio.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::buffer::{now_ms, BufferedMessage, NotificationStore, StoreError, Table};
use crate::delivery::policy::{jitter_random, Backoff, RetryPolicy, Verdict};
use crate::delivery::UpstreamGroup;
use crate::metrics::RouteMetrics;

/// What one pass did (for tests and logs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassSummary {
    pub delivered: usize,
    pub final_answer: usize,
    pub failed: usize,
    pub expired: usize,
    pub skipped_open_circuit: usize,
}

struct Inner {
    store: Arc<dyn NotificationStore>,
    groups: HashMap<String, Arc<UpstreamGroup>>,
    routes: HashMap<String, RouteMetrics>,
    /// Each route's retry policy, for judging answers as the live path does.
    policies: HashMap<String, RetryPolicy>,
    backoff: Backoff,
}

pub struct Redeliverer {
    inner: Arc<Inner>,
    interval: Duration,
    concurrency: usize,
}

enum Ended {
    Delivered,
    /// A final answer that is not 2xx (404 no binding, other 4xx, 3xx, a 5xx not retried).
    Final,
    Failed,
    Expired,
    SkippedOpenCircuit,
}

impl Redeliverer {
    pub fn new(
        store: Arc<dyn NotificationStore>,
        groups: HashMap<String, Arc<UpstreamGroup>>,
        routes: HashMap<String, RouteMetrics>,
        policies: HashMap<String, RetryPolicy>,
        backoff: Backoff,
        interval: Duration,
        concurrency: usize,
    ) -> Self {
        Redeliverer {
            inner: Arc::new(Inner {
                store,
                groups,
                routes,
                policies,
                backoff,
            }),
            interval,
            concurrency: concurrency.max(1),
        }
    }

    /// One sweep over the messages that are due: at most `concurrency` in flight at a time.
    pub async fn pass(&self) -> Result<PassSummary, StoreError> {
        let store = self.inner.store.clone();
        let limit = self.concurrency * 8;
        let due = tokio::task::spawn_blocking(move || store.due(now_ms(), limit))
            .await
            .expect("store reads do not panic")?;
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
                Ok(Ended::Delivered) => summary.delivered += 1,
                Ok(Ended::Final) => summary.final_answer += 1,
                Ok(Ended::Failed) => summary.failed += 1,
                Ok(Ended::Expired) => summary.expired += 1,
                Ok(Ended::SkippedOpenCircuit) => summary.skipped_open_circuit += 1,
                Err(e) => tracing::error!(error = %e, "redelivery task failed"),
            }
        }
        Ok(summary)
    }
}

/// Runs a blocking store call off the async threads; a store error is logged, not fatal: the
/// message stays where it was and the next pass sees it again.
async fn with_store<T: Send + 'static>(
    inner: &Arc<Inner>,
    what: &'static str,
    f: impl FnOnce(&dyn NotificationStore) -> Result<T, StoreError> + Send + 'static,
) -> Option<T> {
    let store = inner.store.clone();
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "buffer store: {what} failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "buffer store: {what} aborted");
            None
        }
    }
}

async fn redeliver_one(inner: Arc<Inner>, message: BufferedMessage) -> Ended {
    let meta = &message.meta;
    let id = meta.id;
    let metrics = inner.routes.get(&meta.message.route);
    let now = now_ms();
    if now >= meta.message.expires_at_ms {
        let reason = format!(
            "expired after {} attempt(s); last error: {}",
            meta.message.attempts, meta.message.last_error
        );
        tracing::warn!(
            buffer_id = id,
            route = %meta.message.route,
            call_sid = meta.message.call_sid.as_deref().unwrap_or("-"),
            message_id = meta.message.message_id.as_deref().unwrap_or("-"),
            reason = %reason,
            "moved to dead letter"
        );
        let moved = with_store(&inner, "move to dead letter", move |s| {
            s.move_to_dead_letter(id, &reason)
        })
        .await;
        // Counted once, when the move happened (a failed move is retried next pass).
        if moved == Some(true) {
            if let Some(m) = metrics {
                m.dead_lettered_expired.inc();
            }
        }
        return Ended::Expired;
    }
    let Some(group) = inner.groups.get(&meta.message.upstream) else {
        let reason = format!(
            "upstream group {:?} is no longer configured",
            meta.message.upstream
        );
        let moved = with_store(&inner, "move to dead letter", move |s| {
            s.move_to_dead_letter(id, &reason)
        })
        .await;
        if moved == Some(true) {
            if let Some(m) = metrics {
                m.dead_lettered_orphaned.inc();
            }
        }
        return Ended::Expired;
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
    // The same judgement as the live path: the route's retryable statuses fail, any other
    // answer is the handler's final word.
    let retryable = |status: u16| {
        inner
            .policies
            .get(&meta.message.route)
            .map_or(status >= 500, |p| {
                p.classify_status(status) == Verdict::Retryable
            })
    };
    let (ended, error) = match &result {
        Ok(a) if (200..300).contains(&a.answer.status) => (Ended::Delivered, None),
        Ok(a) if !retryable(a.answer.status) => (Ended::Final, None),
        Ok(a) => (
            Ended::Failed,
            Some(format!("{} answered {}", a.peer, a.answer.status)),
        ),
        Err(e) => (Ended::Failed, Some(e.to_string())),
    };
    match error {
        None => {
            group.circuit().on_success();
            let status = result.as_ref().map_or(0, |a| a.answer.status);
            let label = match (&ended, status) {
                (Ended::Delivered, _) => "delivered",
                (_, 404) => "no_binding",
                _ => "final_other",
            };
            tracing::info!(
                buffer_id = id,
                route = %meta.message.route,
                call_sid = meta.message.call_sid.as_deref().unwrap_or("-"),
                message_id = meta.message.message_id.as_deref().unwrap_or("-"),
                status,
                attempts,
                "redelivered"
            );
            with_store(&inner, "remove delivered", move |s| {
                s.remove(Table::Pending, id)
            })
            .await;
            if let Some(m) = metrics {
                m.redelivery(label);
            }
        }
        Some(error) => {
            group.circuit().on_failure(started, Instant::now());
            tracing::debug!(buffer_id = id, attempts, error = %error, "redelivery failed");
            with_store(&inner, "reschedule", move |s| {
                s.reschedule(id, attempts, next_at, &error)
            })
            .await;
            if let Some(m) = metrics {
                m.redelivery("failed");
            }
        }
    }
    ended
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
            // lasts at most about one response_timeout.
            match self.pass().await {
                Ok(s) if s != PassSummary::default() => tracing::debug!(?s, "redelivery pass"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "redelivery pass could not read the buffer"),
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}
