//! The `buffer` exhaustion policy: store the request durably, then answer.
//!
//! The answer is made only after the store's insert returned (committed, fsynced for redb), so
//! an "accepted" answer never depends on memory alone; a store that cannot take the message
//! gets `503 buffer_failed`: nothing is claimed that is not stored.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::{Accepted, Ending, Flow};
use crate::buffer::{NewMessage, StoreError};
use crate::delivery::Failure;
use crate::outcome::MadeAnswer;
use crate::route::LiveRoute;

/// How the live path ended, for the stored message.
pub(super) struct Buffering<'a> {
    pub attempts: u32,
    pub last: &'a Failure,
    pub ttl: Duration,
    /// The answer once stored.
    pub status: StatusCode,
    /// When the request arrived: the TTL counts from here, not from the store write.
    pub arrived: Instant,
}

impl Flow {
    /// Stores the request (committed before this returns) and answers `status`; if the store
    /// cannot take it, answers 503.
    pub(super) async fn buffer(
        &self,
        route: &LiveRoute,
        accepted: &Accepted,
        how: Buffering<'_>,
    ) -> Ending {
        let Buffering {
            attempts,
            last,
            ttl,
            status,
            arrived,
        } = how;
        let ending = |answer| Ending::made(answer, attempts);
        let failed = || ending(MadeAnswer::buffer_failed());
        let Some(store) = &self.store else {
            // Config validation guarantees a store for buffering routes.
            tracing::error!(request_id = accepted.request_id.as_str(), route = %route.route.name, "no buffer is configured; answering 503");
            return failed();
        };
        let now = self.clock.now_ms();
        // The live attempts already spent part of the TTL (docs/config.md: from arrival).
        let since_arrival = u64::try_from(arrived.elapsed().as_millis()).unwrap_or(u64::MAX);
        let received = now.saturating_sub(since_arrival);
        let message = NewMessage {
            route: route.route.name.clone(),
            upstream: route.upstream.name().to_owned(),
            received_at_ms: received,
            expires_at_ms: received
                .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            attempts,
            next_attempt_at_ms: now,
            last_error: last.to_string(),
            message_id: accepted.message_id.clone(),
            call_sid: accepted.call_sid.clone(),
        };
        let started = Instant::now();
        let stored = store.insert(message, accepted.request.clone()).await;
        tracing::trace!(elapsed = ?started.elapsed(), "buffer insert");
        match stored {
            Ok(id) => {
                self.store_writable.store(true, Ordering::Relaxed);
                tracing::info!(
                    request_id = accepted.request_id.as_str(),
                    route = %route.route.name,
                    call_sid = accepted.call_sid.as_deref().unwrap_or("-"),
                    message_id = accepted.message_id.as_deref().unwrap_or("-"),
                    buffer_id = id,
                    "buffered for redelivery"
                );
                ending(MadeAnswer::buffered(status, id))
            }
            Err(e) => {
                // Full or unreachable is what `/readyz` reads from the store's own stats, live;
                // this flag is for the failures only a write finds (an I/O error, a refusal),
                // which stay until a write succeeds.
                if !matches!(e, StoreError::Full { .. } | StoreError::Unavailable { .. }) {
                    self.store_writable.store(false, Ordering::Relaxed);
                }
                tracing::error!(
                    request_id = accepted.request_id.as_str(),
                    route = %route.route.name,
                    call_sid = accepted.call_sid.as_deref().unwrap_or("-"),
                    message_id = accepted.message_id.as_deref().unwrap_or("-"),
                    error = %e,
                    "could not buffer; answering 503"
                );
                failed()
            }
        }
    }
}
