//! Why a store call failed: the public [`StoreError`] (with the fix in each message) and the
//! internal [`Failure`] a transaction returns before the store's path is attached.

use std::path::PathBuf;

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
        source: redb::Error,
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
}

/// A failure inside a transaction, before the store's path is attached.
pub(super) enum Failure {
    Redb(redb::Error),
    Store(StoreError),
}

macro_rules! failure_from_redb {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for Failure {
            fn from(error: $error) -> Self {
                Failure::Redb(error.into())
            }
        })*
    };
}

failure_from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

pub(super) fn corrupt(id: u64, detail: impl Into<String>) -> Failure {
    Failure::Store(StoreError::Corrupt {
        id,
        detail: detail.into(),
    })
}
