//! The durable buffer: notifications the handler could not take, kept until it can.
//!
//! Owns the message types, the [`NotificationStore`] seam, the embedded store
//! ([`redb::RedbStore`], one instance; its hand-off across `run --upgrade` is
//! [`handoff::RedbBuffer`]) and the shared one ([`postgres::PostgresStore`], a fleet). A message
//! is stored (committed and fsynced) before the proxy answers
//! Twilio, so an answer of "accepted" never depends on memory alone. Deciding *when* to buffer,
//! redeliver or give up belongs to the request flow and the redelivery worker; this module only
//! keeps messages and never opens a connection to the handler.

mod error;
#[cfg(test)]
pub(crate) mod fixtures;
mod instrumented;
pub mod postgres;
pub mod redb;
mod waiting;

use async_trait::async_trait;

pub use self::redb::handoff::{self, HandoffService, RedbBuffer};
pub use self::redb::RedbStore;
pub use error::StoreError;
pub use instrumented::Instrumented;
pub use postgres::{instance_name, Heartbeat, PgOptions, PgPool, PostgresStore};

/// What the running proxy needs from a buffer: the live path inserts, the redelivery worker
/// drains, the admin listener reports. The embedded [`RedbStore`] runs each call on tokio's
/// blocking pool (redb commits with fsync); a store shared by several proxy instances implements
/// the same calls over the network. Operator commands (`buffer list`, `replay`, `purge`) use the
/// same calls plus each backend's own listing.
#[async_trait]
pub trait NotificationStore: Send + Sync + std::fmt::Debug {
    /// Where the store lives, for operators (a path, a redacted URL).
    fn location(&self) -> String;
    /// Durably stores a new pending message (committed before returning); assigns its id.
    async fn insert(&self, msg: NewMessage, request: Vec<u8>) -> Result<u64, StoreError>;
    /// Pending messages due at `now_ms`, at most `limit`: scheduled at or before `now_ms`, or
    /// later than `now_ms + horizon_ms`. No schedule is that far ahead (the worker passes its
    /// longest backoff) unless the clock stepped back since it was written, so those are due
    /// too instead of stalling until the clock catches up.
    ///
    /// `held` names upstream groups whose circuit lets no attempt through now: their messages
    /// need not be returned unless expired (`expires_at_ms <= now_ms`, to be dead-lettered). A
    /// store that claims what it returns ([`Self::lease`]) must leave them out, so no claim is
    /// taken for a message that cannot be attempted; one without claims may return them (the
    /// worker skips them, and reading is cheaper than filtering).
    async fn due(
        &self,
        now_ms: u64,
        horizon_ms: u64,
        limit: usize,
        held: &[String],
    ) -> Result<Vec<BufferedMessage>, StoreError>;
    /// Records a failed attempt of a pending message; false if it no longer exists.
    async fn reschedule(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at_ms: u64,
        last_error: String,
    ) -> Result<bool, StoreError>;
    /// Moves a pending message to the dead letter table, noting why; `None` if it was not
    /// pending. The table is capped: the same transaction evicts its oldest messages beyond
    /// the cap, and says how many.
    async fn move_to_dead_letter(
        &self,
        id: u64,
        reason: String,
    ) -> Result<Option<DeadLettered>, StoreError>;
    /// Removes a message from `table`; whether it was there.
    async fn remove(&self, table: Table, id: u64) -> Result<bool, StoreError>;
    /// Counts and the oldest pending message, cheaply (called on every scrape).
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Removes a pending message the worker redelivered. With claims, only while this instance
    /// still holds the message's claim: false when another instance took it over meanwhile (it
    /// may deliver it again), or it is gone. Without claims, [`Self::remove`].
    async fn remove_redelivered(&self, id: u64) -> Result<bool, StoreError> {
        self.remove(Table::Pending, id).await
    }
    /// Gives back the claim on one message returned by `due` that is not attempted now (its
    /// circuit let only a probe through), so another instance may take it at once. A store
    /// without claims has nothing to give back.
    async fn release(&self, _id: u64) -> Result<(), StoreError> {
        Ok(())
    }
    /// How long a message returned by `due` stays claimed by this instance at most, for a store
    /// shared by a fleet (`None`: no claims, one process owns the store). A claim ends sooner
    /// when its instance stops renewing its heartbeat. The worker takes no more from one `due`
    /// than it starts at once, so no claim runs out while its message waits.
    fn lease(&self) -> Option<std::time::Duration> {
        None
    }
    /// Gives back the claims this instance holds on messages returned by `due` (at shutdown,
    /// once no redelivery is under way), so other instances of a fleet redeliver them now
    /// rather than after the lease. How many; a store without leases has none.
    async fn release_leases(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
}

/// What a move to the dead letter table did besides the move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadLettered {
    /// Oldest dead letters deleted to stay within the cap.
    pub evicted: u64,
}

/// A shared store is a store (so one handle can be decorated while another drives it).
#[async_trait]
impl<S: NotificationStore> NotificationStore for std::sync::Arc<S> {
    fn location(&self) -> String {
        (**self).location()
    }
    async fn insert(&self, msg: NewMessage, request: Vec<u8>) -> Result<u64, StoreError> {
        (**self).insert(msg, request).await
    }
    async fn due(
        &self,
        now_ms: u64,
        horizon_ms: u64,
        limit: usize,
        held: &[String],
    ) -> Result<Vec<BufferedMessage>, StoreError> {
        (**self).due(now_ms, horizon_ms, limit, held).await
    }
    async fn reschedule(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at_ms: u64,
        last_error: String,
    ) -> Result<bool, StoreError> {
        (**self)
            .reschedule(id, attempts, next_attempt_at_ms, last_error)
            .await
    }
    async fn move_to_dead_letter(
        &self,
        id: u64,
        reason: String,
    ) -> Result<Option<DeadLettered>, StoreError> {
        (**self).move_to_dead_letter(id, reason).await
    }
    async fn remove(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        (**self).remove(table, id).await
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        (**self).stats().await
    }
    async fn remove_redelivered(&self, id: u64) -> Result<bool, StoreError> {
        (**self).remove_redelivered(id).await
    }
    async fn release(&self, id: u64) -> Result<(), StoreError> {
        (**self).release(id).await
    }
    fn lease(&self) -> Option<std::time::Duration> {
        (**self).lease()
    }
    async fn release_leases(&self) -> Result<u64, StoreError> {
        (**self).release_leases().await
    }
}

/// Where a message lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Pending,
    DeadLetter,
}

/// A message as the live path hands it to the store: everything but the id the store assigns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewMessage {
    pub route: String,
    pub upstream: String,
    /// Unix time in ms when the proxy received the request.
    pub received_at_ms: u64,
    /// `received_at_ms` + the route's TTL; past it, the message goes to the dead letter table.
    pub expires_at_ms: u64,
    /// Delivery attempts so far (the live one and every redelivery).
    pub attempts: u32,
    /// Earliest unix ms for the next redelivery attempt.
    pub next_attempt_at_ms: u64,
    /// Why the last attempt failed.
    pub last_error: String,
    /// `twi_message_id`, for operators (never a secret).
    pub message_id: Option<String>,
    pub call_sid: Option<String>,
}

/// Everything about a buffered message except its bytes.
///
/// Stored as JSON (the message's fields flattened beside `id` and `dead_reason`), so that
/// `buffer show` is readable without this program's types.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BufferedMeta {
    pub id: u64,
    #[serde(flatten)]
    pub message: NewMessage,
    /// Why the message was moved to the dead letter table (e.g. "expired"); `None` while pending.
    pub dead_reason: Option<String>,
}

/// A buffered message with the exact request bytes that were sent to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferedMessage {
    pub meta: BufferedMeta,
    /// The exact upstream request (head and body), replayed as is on redelivery.
    pub request: Vec<u8>,
}

/// Counts for `/metrics`; cheap to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub pending: u64,
    pub dead: u64,
    /// `received_at_ms` of the pending message with the lowest id (ids follow arrival order).
    pub oldest_pending_received_at_ms: Option<u64>,
}
