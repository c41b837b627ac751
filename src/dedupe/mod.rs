//! Duplicate suppression: a notification is delivered once, even when Twilio's retry or an
//! overlapping copy arrives while the first is still in flight.
//!
//! Owns the [`Dedupe`] seam, its in-memory implementation [`DedupeCache`] (one instance) and
//! the shared [`PostgresDedupe`] (a fleet). A delivery *claims* its notification's identities
//! before the first attempt; a copy that arrives while the claim is held waits (bounded) for
//! the first to end, then answers as a duplicate of what it became, or, if the first failed and
//! released its claim, delivers itself (that copy is Twilio's retry of a failed call, and must
//! go through). Only a 2xx delivery or a durable buffer insert settles a claim; every other
//! ending releases it.
//!
//! It decides nothing about answers or delivery and never talks to the handler: the request
//! flow asks it and acts on the answer.

use std::time::Duration;

use async_trait::async_trait;

mod memory;
mod postgres;
pub use memory::DedupeCache;
pub use postgres::PostgresDedupe;

/// What became of a notification that was seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The handler answered 2xx.
    Delivered,
    /// Stored in the buffer for redelivery.
    Buffered,
}

/// The identities a notification is recognised by, as the route's `dedupe.key` selects them.
/// A copy matching any one of them is a duplicate. Borrowed from the request for the length of
/// its claim (a store keeps fingerprints, never these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identities<'a> {
    /// `I-Twilio-Idempotency-Token` (not covered by the signature).
    pub token: Option<&'a str>,
    /// The body's `twi_message_id` (signed).
    pub message_id: Option<&'a str>,
}

impl<'a> Identities<'a> {
    pub fn is_empty(&self) -> bool {
        self.token.is_none() && self.message_id.is_none()
    }

    /// `(kind, value)` pairs; the kind keeps a token and a message id with equal text apart.
    pub fn keys(&self) -> impl Iterator<Item = (&'static str, &'a str)> {
        let token = self.token.map(|t| ("token", t));
        let message = self.message_id.map(|m| ("message", m));
        token.into_iter().chain(message)
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This delivery owns the notification now: deliver, then [`Dedupe::settle`] or
    /// [`Dedupe::release`].
    Won,
    /// Seen before (or while this copy waited): answer as a duplicate, do not deliver.
    Duplicate(Seen),
}

/// Why the dedupe store could not answer. The flow then delivers without it (degraded).
#[derive(Debug, thiserror::Error)]
#[error("dedupe store unavailable: {0}")]
pub struct DedupeError(pub String);

/// Where claims live: in this process ([`DedupeCache`]) or shared by a fleet.
#[async_trait]
pub trait Dedupe: Send + Sync {
    /// Claims `ids` for one delivery. While another delivery holds a claim on any of them,
    /// waits up to `wait` for it to end; when the wait runs out the claim is taken over (a
    /// second delivery beats a lost call). A shared store returns within the longer of `wait`
    /// and one store call, plus at most a quarter second for the take-over.
    async fn claim(&self, ids: &Identities<'_>, wait: Duration) -> Result<Claim, DedupeError>;
    /// The claimed notification ended as `seen`: later copies are duplicates of it.
    async fn settle(&self, ids: &Identities<'_>, seen: Seen);
    /// The claimed notification was not delivered: a later copy is delivered again.
    async fn release(&self, ids: &Identities<'_>);
    /// Whether claims are failing now (a shared store that is down): copies are then delivered
    /// without duplicate suppression. Shown in `/readyz`.
    fn degraded(&self) -> bool {
        false
    }
}
