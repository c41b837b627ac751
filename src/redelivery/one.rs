//! One buffered message's turn in a pass: dead-letter it once expired or orphaned, skip it
//! (giving its claim back) while its group's circuit admits no attempt, else attempt it, judge
//! the answer by [`settle`], and record the result: removed (fenced by its claim), or
//! rescheduled, with a backoff only for a failure that may be the message's own. Counts every
//! end, and the arrival-to-delivered time of a delivery. Never answers Twilio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Ended, Inner};
use crate::buffer::{BufferedMessage, StoreError};
use crate::outcome::{DeadLetterReason, RedeliveryResult};
use crate::policy::{settle, Admission, RetryPolicy, Settlement};

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
    if let Some(Some(moved)) = logged("move to dead letter", moved) {
        inner.routes.with(&meta.message.route, |route| {
            if let Some((_, metrics)) = route {
                metrics.dead_lettered(reason);
            }
        });
        if moved.evicted > 0 {
            tracing::warn!(
                evicted = moved.evicted,
                "dead letter table full (buffer.max_dead_letters): oldest dead letters deleted"
            );
            inner
                .store_metrics
                .dead_letters_evicted
                .inc_by(moved.evicted);
        }
    }
    Ended::DeadLettered(reason)
}

pub(super) async fn redeliver_one(inner: Arc<Inner>, message: BufferedMessage) -> Ended {
    let meta = &message.meta;
    let id = meta.id;
    let now = inner.clock.now_ms();
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
    if !group.attempt_allowed() {
        // Not an attempt, and nothing written: during an outage every write would be an fsync
        // competing with the live path's buffer inserts. A claim taken with it (the group
        // allowed only a probe, which another message got) goes back at once.
        if inner.store.lease().is_some() {
            logged("release", inner.store.release(id).await);
        }
        return Ended::SkippedOpenCircuit;
    }
    let attempts = meta.message.attempts + 1;
    let remaining = Duration::from_millis(meta.message.expires_at_ms.saturating_sub(now));
    let started = Instant::now();
    let bound = inner
        .attempt_bound
        .map_or(group.config.response_timeout, |b| {
            b.min(group.config.response_timeout)
        });
    let deadline = started + remaining.min(bound);
    let result = group
        .deliver_once(&message.request, Some(deadline), None)
        .await;
    let status = result.as_ref().ok().map(|a| a.answer.status);
    // A route that left the config still has its answers judged by the documented defaults.
    let settlement = inner.routes.with(&meta.message.route, |route| match route {
        Some((policy, _)) => settle(status, policy),
        None => settle(status, &RetryPolicy::default()),
    });
    let redelivery = RedeliveryResult::from(settlement);
    if settlement.is_final() {
        group.record_answered();
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
        let removed = logged("remove delivered", inner.store.remove_redelivered(id).await);
        if removed == Some(false) && inner.store.lease().is_some() {
            // This instance was frozen or cut off long enough for another to take the message
            // over: that one may deliver it again (README: when a double delivery can happen).
            inner.store_metrics.claims_lost.inc();
            tracing::warn!(
                buffer_id = id,
                message_id = meta.message.message_id.as_deref().unwrap_or("-"),
                "redelivered, but another instance had taken the message over meanwhile; it may reach the handler twice"
            );
            return Ended::Redelivered(redelivery);
        }
        if settlement == Settlement::Delivered {
            let waited_ms = inner
                .clock
                .now_ms()
                .saturating_sub(meta.message.received_at_ms);
            let inside =
                waited_ms <= u64::try_from(inner.ring_window.as_millis()).unwrap_or(u64::MAX);
            inner.routes.with(&meta.message.route, |route| {
                if let Some((_, metrics)) = route {
                    metrics.buffered_delivered(waited_ms as f64 / 1000.0, inside);
                }
            });
        }
    } else {
        let error = match &result {
            Ok(a) => format!("{} answered {}", a.peer, a.answer.status),
            Err(e) => e.to_string(),
        };
        group.record_failed(started, result.as_ref().err());
        // The upstream's failure is not the message's: with the circuit no longer closed, or
        // no connection made at all, the message stays due and waits for the circuit (which
        // probes on its own schedule), so it goes out the moment the handler is back. Only a
        // failure that may be this message's (an answer or a timeout while the circuit stays
        // closed) earns it a backoff.
        let upstreams_fault = group.admission() != Admission::All
            || result.as_ref().err().is_some_and(|e| e.is_unreachable());
        let next_at = if upstreams_fault {
            now
        } else {
            let wait = inner.backoff.delay(attempts, inner.jitter.next());
            now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX))
        };
        tracing::debug!(buffer_id = id, attempts, error = %error, "redelivery failed");
        logged(
            "reschedule",
            inner.store.reschedule(id, attempts, next_at, error).await,
        );
    }
    inner.routes.with(&meta.message.route, |route| {
        if let Some((_, metrics)) = route {
            metrics.redelivery(redelivery);
        }
    });
    Ended::Redelivered(redelivery)
}
