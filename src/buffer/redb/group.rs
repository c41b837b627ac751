//! Group commit for inserts: inserts that wait at the same time share one fsynced transaction.
//!
//! Owns the insert path of [`RedbStore`]'s [`NotificationStore`] impl. A commit with
//! `Durability::Immediate` waits for an fsync; one transaction per message caps the store at one
//! fsync per insert whatever the concurrency (~3,700/s on the development box), and latency
//! grows with the queue. So inserts queue, and one flush at a time takes redb's write lock,
//! takes *everything queued by then* (at most [`MAX_GROUP`]), writes it in a single write
//! transaction and commits it once. The same model as the PostgreSQL store's batcher
//! (`buffer/postgres/batch.rs`).
//!
//! The rules it keeps:
//! - a caller is answered only after the transaction holding its message committed (fsynced);
//! - a failed group fails every caller in it, and the transaction is aborted: nothing of it is
//!   stored (redb commits all of a transaction or none of it);
//! - ids are taken from the counter in queue order inside the transaction, so they stay unique
//!   and ordered by arrival, across groups too (one flush at a time, and redb has one writer);
//! - `max_messages` is checked inside the transaction: the messages that fit are stored, the
//!   ones past the bound get [`StoreError::Full`], exactly as if they had come one by one.
//!
//! No long-lived thread: the caller that finds no flush running starts one on tokio's blocking
//! pool, which exits when the queue is empty. The flush is its own task, so a caller that gives
//! up never cancels a transaction carrying other callers' messages; a caller that gave up
//! before its group was taken is not written (it was not answered with success).

use std::sync::{Arc, MutexGuard};

use redb::{Durability, ReadableTableMetadata};
use tokio::sync::oneshot;

use super::records::{new_meta, next_id, put_pending, PENDING_META};
use super::{Failure, Inner, RedbStore};
use crate::buffer::waiting::{InsertQueue, Waiting};
use crate::buffer::{NewMessage, StoreError};

/// At most this many messages per transaction (a few MB of requests at most).
pub(super) const MAX_GROUP: usize = 256;

pub(super) fn lock(inner: &Inner) -> MutexGuard<'_, InsertQueue> {
    // A std Mutex: held for a push or a take, never across I/O.
    inner.group.lock().unwrap_or_else(|e| e.into_inner())
}

impl RedbStore {
    /// Queues one insert and waits until the transaction holding it committed (or failed).
    pub(super) async fn grouped_insert(
        &self,
        message: NewMessage,
        request: Vec<u8>,
    ) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let start_flush = lock(&self.inner).push(Waiting {
            message,
            request,
            reply,
        });
        if start_flush {
            let guard = FlushGuard {
                inner: self.inner.clone(),
                armed: true,
            };
            let store = self.clone();
            // Not awaited: the flush outlives this caller if it has to.
            drop(tokio::task::spawn_blocking(move || store.flush(guard)));
        }
        // The flush ended without answering (a panic in it): nothing tells whether the
        // transaction committed, so the insert counts as failed.
        answer.await.unwrap_or(Err(StoreError::Aborted {
            operation: "insert",
        }))
    }

    /// Writes groups until the queue is empty. Runs on the blocking pool.
    ///
    /// Takes its handle by value and drops it before answering the last group, so that a
    /// caller that drops its own handle after the answer closes (and unlocks) the file, as
    /// before grouping: the flush never outlives its callers' use of the store.
    fn flush(self, mut guard: FlushGuard) {
        loop {
            // The write lock first, then the queue: everything that arrived while the previous
            // group (or another writer) held the lock goes into this group.
            let txn = self.inner.db.begin_write();
            // Callers that gave up are not written: they were not told it was stored.
            let Some(group) = lock(&self.inner).next_group(MAX_GROUP) else {
                guard.armed = false;
                return;
            };
            let result = txn
                .map_err(Failure::from)
                .and_then(|txn| self.write_group(txn, &group))
                .map_err(|failure| self.attach_path(failure));
            let answers: Vec<Result<u64, StoreError>> = match result {
                Ok(results) => results,
                Err(error) => {
                    // A failed group fails every caller: the first gets the error, the others
                    // a copy of it.
                    let mut errors: Vec<StoreError> = (1..group.len())
                        .map(|_| shared_failure(&error, group.len()))
                        .collect();
                    errors.insert(0, error);
                    errors.into_iter().map(Err).collect()
                }
            };
            let last = lock(&self.inner).finish_if_empty();
            if last {
                guard.armed = false;
            }
            if last {
                drop(guard);
                drop(self);
                answer(group, answers);
                return;
            }
            answer(group, answers);
        }
    }

    /// One transaction for `group`: room under `max_messages`, then ids and records in queue
    /// order, one fsynced commit. Each message's result in order: its id, or
    /// [`StoreError::Full`] past the bound. Any error aborts the transaction (nothing stored).
    fn write_group(
        &self,
        mut txn: redb::WriteTransaction,
        group: &[Waiting],
    ) -> Result<Vec<Result<u64, StoreError>>, Failure> {
        // redb's default, stated so that no later change of default can weaken it.
        txn.set_durability(Durability::Immediate)?;
        let pending = txn.open_table(PENDING_META)?.len()?;
        let room = self.inner.max_messages.saturating_sub(pending);
        let fits = group.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let mut results = Vec::with_capacity(group.len());
        for queued in &group[..fits] {
            let id = next_id(&txn)?;
            put_pending(&txn, &new_meta(&queued.message, id), &queued.request)?;
            results.push(Ok(id));
        }
        if fits > 0 {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        results.extend((fits..group.len()).map(|_| {
            Err(StoreError::Full {
                max_messages: self.inner.max_messages,
            })
        }));
        Ok(results)
    }
}

fn answer(group: Vec<Waiting>, answers: Vec<Result<u64, StoreError>>) {
    for (queued, answer) in group.into_iter().zip(answers) {
        let _ = queued.reply.send(answer);
    }
}

/// The errors for the other callers of a failed group: the same cause (a `StoreError` holding
/// a redb error cannot be cloned, so its text is carried).
fn shared_failure(error: &StoreError, size: usize) -> StoreError {
    match error {
        StoreError::Full { max_messages } => StoreError::Full {
            max_messages: *max_messages,
        },
        StoreError::Corrupt { id, detail } => StoreError::Corrupt {
            id: *id,
            detail: detail.clone(),
        },
        StoreError::Io { path, source } => StoreError::Io {
            path: path.clone(),
            source: redb::Error::Io(std::io::Error::other(format!(
                "the transaction shared by {size} inserts failed: {source}"
            ))),
        },
        other => StoreError::Aborted {
            operation: match other {
                StoreError::Aborted { operation } => operation,
                _ => "insert",
            },
        },
    }
}

/// Marks the flush as stopped if it ends without emptying the queue (a panic in it), and drops
/// the queued replies so their callers get an error instead of waiting forever.
struct FlushGuard {
    inner: Arc<Inner>,
    armed: bool,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.inner).abandon();
        }
    }
}
