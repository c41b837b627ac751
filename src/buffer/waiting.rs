//! The queue the group commits of both stores share (redb's `redb/group.rs`, PostgreSQL's
//! `postgres/batch.rs`): inserts wait in it, and one flush at a time takes what waits and writes
//! it as one transaction.
//!
//! Owns the queue's rules, which the two commits must agree on: a caller that gave up is not
//! written (it was not told its message was stored); the flush ends, under the same lock a new
//! caller checks, exactly when nothing waits, so no insert is left behind; a flush that dies
//! drops what waits, so those callers get an error instead of waiting forever. How a group is
//! written and answered is each store's own.

use tokio::sync::oneshot;

use super::{NewMessage, StoreError};

/// Where an insert's caller waits for its id, or for why there is none.
pub(crate) type Reply = oneshot::Sender<Result<u64, StoreError>>;

/// One insert waiting for a transaction.
pub(crate) struct Waiting {
    pub message: NewMessage,
    pub request: Vec<u8>,
    pub reply: Reply,
}

/// The inserts waiting, and whether a flush is running.
#[derive(Default)]
pub(crate) struct InsertQueue {
    queue: Vec<Waiting>,
    flushing: bool,
}

impl InsertQueue {
    /// Queues an insert; true when no flush is running, so the caller must start one.
    pub fn push(&mut self, waiting: Waiting) -> bool {
        self.queue.push(waiting);
        !std::mem::replace(&mut self.flushing, true)
    }

    /// The next group, at most `max` inserts in queue order, or `None` when nothing waits:
    /// then the flush is over.
    pub fn next_group(&mut self, max: usize) -> Option<Vec<Waiting>> {
        if self.finish_if_empty() {
            return None;
        }
        let take = self.queue.len().min(max);
        Some(self.queue.drain(..take).collect())
    }

    /// Whether nothing waits (callers that gave up dropped first); if so the flush is over.
    pub fn finish_if_empty(&mut self) -> bool {
        self.queue.retain(|w| !w.reply.is_closed());
        let empty = self.queue.is_empty();
        if empty {
            self.flushing = false;
        }
        empty
    }

    /// The flush ended without emptying the queue (a panic, a runtime shutting down): the waiting
    /// callers get an error, and the next insert starts a new flush.
    pub fn abandon(&mut self) {
        self.flushing = false;
        self.queue.clear();
    }

    /// How many inserts wait (tests build a group deterministically with it).
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether a flush is running.
    #[cfg(test)]
    pub fn flushing(&self) -> bool {
        self.flushing
    }
}
