//! Why a buffer store call failed, for every backend: one error type behind the
//! [`NotificationStore`](super::NotificationStore) seam, so the request flow and the redelivery
//! worker treat an embedded and a shared store alike.
//!
//! Owns the operator-facing wording (what failed, why, what to do). It must never carry a
//! secret: a PostgreSQL URL may hold a password, so network variants name the store by its
//! redacted location only.

use std::path::PathBuf;
use std::sync::Arc;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another handle in this one) has the database open.
    #[error(
        "buffer store {} is in use by another process (a running proxy?): stop the proxy first, \
         or point --config at a stopped instance's store",
        path.display()
    )]
    Locked { path: PathBuf },
    /// The pending table holds `max_messages` messages; new ones are refused.
    #[error(
        "buffer store is full ({max_messages} pending messages): the handler has been failing \
         for a while; fix the handler so the buffer drains, or raise buffer.max_messages in the \
         configuration"
    )]
    Full { max_messages: u64 },
    /// Opening, reading or committing failed.
    #[error(
        "buffer store {}: {source}; check that its directory is writable, that the disk is not \
         full, and that the file is a buffer store (not another file)",
        path.display()
    )]
    Io {
        path: PathBuf,
        #[source]
        source: ::redb::Error,
    },
    /// The blocking task running a store call died (a panic inside it). A write may or may
    /// not have committed before that: callers treat it as failed, and a message that did
    /// commit is delivered later anyway (at-least-once).
    #[error("buffer store: the {operation} call did not finish (its task failed)")]
    Aborted { operation: &'static str },
    /// A message whose metadata cannot be read back.
    #[error(
        "buffered message {id} is unreadable ({detail}); remove it from the buffer (the other \
         messages are unaffected)"
    )]
    Corrupt { id: u64, detail: String },
    /// A network store could not be reached in time: no connection, the connection broke, or
    /// no answer within the call's time limit. Retrying later may succeed.
    #[error(
        "buffer store {location}: {operation} failed: {detail}; check that PostgreSQL is running \
         and reachable from this host (the proxy reconnects by itself)"
    )]
    Unavailable {
        /// The store's location with any password removed.
        location: String,
        operation: &'static str,
        detail: String,
        /// Kept for callers that inspect it; it never holds the URL.
        #[source]
        source: Option<Arc<tokio_postgres::Error>>,
    },
    /// The database answered, but refused the statement (permissions, a schema changed by
    /// hand, a constraint).
    #[error(
        "buffer store {location}: {operation} was refused by the database: {detail}; check the \
         role's privileges on the buffer's schema and that no one altered its tables"
    )]
    Backend {
        location: String,
        operation: &'static str,
        detail: String,
        #[source]
        source: Option<Arc<tokio_postgres::Error>>,
    },
    /// The store's settings are unusable (a URL that does not parse, a bad schema name).
    #[error("buffer store settings: {detail}")]
    Config { detail: String },
}
