//! The internal [`Failure`] a redb transaction returns before the store's path is attached;
//! the public [`StoreError`] it becomes is shared by every backend (`buffer/error.rs`).

use crate::buffer::StoreError;

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
