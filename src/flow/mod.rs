//! The request flow after the checks: dedupe → deliver → exhaustion policy → ending.
//!
//! Owns every decision between "this request is verified" and "this is the answer": claiming
//! the notification against duplicates, the live attempts (through [`Deliver`]), failing or
//! buffering when they are exhausted, and the [`Ending`] that names the outcome. Plain async code
//! over traits ([`Deliver`], [`Dedupe`], [`NotificationStore`]): no Pingora session, no socket,
//! so it is unit-tested with fakes. It never writes to the client (the edge does) and never
//! sees a request that failed a check.

mod buffering;
use buffering::Buffering;
pub mod ending;
#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::buffer::NotificationStore;
use crate::clock::{Clock, SteadyClock};
use crate::config::{DedupeKey, OnExhausted};
use crate::dedupe::{Claim, Dedupe, Identities, Seen};
use crate::delivery::Delivery;
use crate::logging::RequestId;
use crate::outcome::{MadeAnswer, Original, Outcome};
use crate::route::LiveRoute;
pub use ending::{Ending, Reply};

/// A request that passed every check, ready to deliver.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The exact upstream request (head and body), as it will be sent and, if need be, stored.
    pub request: Vec<u8>,
    pub call_sid: Option<String>,
    pub message_id: Option<String>,
    /// `I-Twilio-Idempotency-Token`, if the request carried one.
    pub idempotency_token: Option<String>,
    /// The id of the request's log lines and of its proxy-made answer.
    pub request_id: RequestId,
}

/// Duplicate suppression as configured: which identities count, and where claims live.
pub struct DedupeSetup {
    pub key: DedupeKey,
    pub claims: Arc<dyn Dedupe>,
}

/// What the flow shares across requests.
pub struct Flow {
    dedupe: Option<DedupeSetup>,
    store: Option<Arc<dyn NotificationStore>>,
    /// False after a store write failed for a reason other than being full (for `/readyz`).
    store_writable: Arc<AtomicBool>,
    /// The buffer's times (arrival, expiry, schedule); shared with the redelivery worker.
    clock: Arc<dyn Clock>,
}

impl Flow {
    pub fn new(
        dedupe: Option<DedupeSetup>,
        store: Option<Arc<dyn NotificationStore>>,
        store_writable: Arc<AtomicBool>,
    ) -> Self {
        Flow {
            dedupe,
            store,
            store_writable,
            clock: Arc::new(SteadyClock::new()),
        }
    }

    /// Reads buffer times from `clock` (share one with the redelivery worker).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The identities duplicates are recognised by. With `auto`, both: the token is not covered
    /// by the signature, so a replay with a fresh token must still be caught by its (signed)
    /// `twi_message_id`.
    fn identities(key: DedupeKey, accepted: &Accepted) -> Identities<'_> {
        fn nonempty(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|v| !v.is_empty())
        }
        let token = nonempty(&accepted.idempotency_token);
        let message_id = nonempty(&accepted.message_id);
        match key {
            DedupeKey::Auto => Identities { token, message_id },
            DedupeKey::IdempotencyToken => Identities {
                token,
                message_id: None,
            },
            DedupeKey::MessageId => Identities {
                token: None,
                message_id,
            },
        }
    }

    /// Runs a verified request to its end: a duplicate's answer, the handler's answer, or the
    /// exhaustion policy's.
    pub async fn run(&self, route: &LiveRoute, accepted: Accepted, arrived: Instant) -> Ending {
        let mut ending = self.end(route, &accepted, arrived).await;
        // The ending names its notification (for the access log): moved here, once, not copied.
        ending.call_sid = accepted.call_sid;
        ending.message_id = accepted.message_id;
        ending
    }

    /// Claims the notification against duplicates, then delivers it (or not).
    async fn end(&self, route: &LiveRoute, accepted: &Accepted, arrived: Instant) -> Ending {
        let Some(dedupe) = &self.dedupe else {
            return self.deliver(route, accepted, arrived).await;
        };
        let ids = Self::identities(dedupe.key, accepted);
        // A copy that finds its twin in flight waits for it, but never past its own deadline.
        let wait = route.route.retry.deadline.saturating_sub(arrived.elapsed());
        match dedupe.claims.claim(&ids, wait).await {
            Ok(Claim::Duplicate(seen)) => return duplicate(route, seen),
            Ok(Claim::Won) => {}
            Err(e) => {
                // Degraded, not down: delivering twice beats not delivering. The dedupe store
                // counts and logs its own failures (rate-limited), so only a debug line here.
                tracing::debug!(request_id = accepted.request_id.as_str(), route = %route.route.name, error = %e, "dedupe unavailable; delivering without it");
            }
        }
        let ending = self.deliver(route, accepted, arrived).await;
        match ending.outcome {
            Outcome::Forwarded2xx => dedupe.claims.settle(&ids, Seen::Delivered).await,
            Outcome::Buffered => dedupe.claims.settle(&ids, Seen::Buffered).await,
            // Not delivered (failed, 4xx, 404, not stored): Twilio's retry must go through.
            _ => dedupe.claims.release(&ids).await,
        }
        ending
    }

    /// The live attempts, then the exhaustion policy.
    async fn deliver(&self, route: &LiveRoute, accepted: &Accepted, arrived: Instant) -> Ending {
        let LiveRoute {
            route: config,
            metrics,
            upstream,
        } = route;
        let delivery = upstream
            .deliver(&accepted.request, &config.retry, arrived)
            .await;
        let (Delivery::Answered { attempts, .. } | Delivery::Exhausted { attempts, .. }) =
            &delivery;
        metrics.attempts.observe(f64::from(*attempts));
        metrics
            .retries
            .inc_by(u64::from(attempts.saturating_sub(1)));
        match delivery {
            Delivery::Answered { answer, attempts } => Ending {
                outcome: Outcome::from_upstream_status(answer.answer.status),
                reason: None,
                reply: Reply::Forwarded(answer.answer),
                attempts,
                call_sid: None,
                message_id: None,
            },
            Delivery::Exhausted { last, attempts } => {
                let failed = MadeAnswer::gave_up(last.gave_up());
                tracing::warn!(
                    request_id = accepted.request_id.as_str(),
                    route = %config.name,
                    call_sid = accepted.call_sid.as_deref().unwrap_or("-"),
                    message_id = accepted.message_id.as_deref().unwrap_or("-"),
                    attempts,
                    outcome = failed.outcome.as_str(),
                    error = %last,
                    "delivery failed"
                );
                match config.on_exhausted {
                    OnExhausted::Fail => Ending::made(failed, attempts),
                    OnExhausted::Buffer { ttl, status } => {
                        let buffering = Buffering {
                            attempts,
                            last: &last,
                            ttl,
                            status,
                            arrived,
                        };
                        self.buffer(route, accepted, buffering).await
                    }
                }
            }
        }
    }
}

/// The answer to a copy of a notification that was delivered or buffered before.
fn duplicate(route: &LiveRoute, seen: Seen) -> Ending {
    let original = match seen {
        Seen::Delivered => {
            route.metrics.duplicate_of_delivered.inc();
            Original::Delivered
        }
        Seen::Buffered => {
            route.metrics.duplicate_of_buffered.inc();
            match route.route.on_exhausted {
                OnExhausted::Buffer { status, .. } => Original::Buffered(status),
                // Buffered under a policy since reloaded to `fail`: it was answered 200.
                OnExhausted::Fail => Original::Buffered(http::StatusCode::OK),
            }
        }
    };
    Ending::made(MadeAnswer::duplicate(original), 0)
}
