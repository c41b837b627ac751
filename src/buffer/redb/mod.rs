//! The buffer's file: one redb database holding pending and dead-letter messages.
//!
//! Owns the on-disk layout and the promise that nothing is lost: every change is one write
//! transaction committed with `Durability::Immediate` (fsync before `commit` returns), so a
//! message either is on disk with its bytes, metadata and schedule, or not at all. Inserts that
//! wait at the same time share one such transaction ([`group`]); each caller is answered only
//! once the transaction holding its message committed. It knows
//! nothing about HTTP, routes or retry policy; callers decide when to insert, reschedule or
//! give up. redb locks the file, so one process at a time owns a store.
//!
//! The `blocking_*` methods do the work and block on disk I/O; the [`NotificationStore`] impl
//! runs them (and the group commits) on tokio's blocking pool, so the request threads never
//! wait on an fsync.
//!
//! Layout (ids are the keys everywhere; they only grow, so id order is arrival order):
//! - `pending_meta` / `dead_meta`: id -> [`BufferedMeta`] as JSON, readable by operators.
//! - `pending_request` / `dead_request`: id -> the exact request bytes.
//! - `pending_schedule`: (next_attempt_at_ms, id) -> (), so [`RedbStore::due`] reads only what
//!   is due instead of parsing every pending message.
//! - `counters`: `next_id`, so ids are never reused, even after deletes and restarts.
//! - `adopted_handoffs`: names of hand-off files already merged in (see [`adopt`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    WriteTransaction,
};

use crate::buffer::{
    BufferedMessage, BufferedMeta, DeadLettered, NewMessage, NotificationStore, StoreError,
    StoreStats, Table,
};

mod adopt;
mod blocking;
mod error;
mod group;
pub mod handoff;
mod records;

pub use adopt::Adopted;
use error::Failure;
use records::*;

/// Page cache for the store. redb's default (1 GiB) would let a large buffer grow the proxy's
/// memory by that much; the buffer is read sequentially and rarely, so a small cache is enough.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// How [`RedbStore::open_with`] treats a missing file.
#[derive(Clone, Copy)]
enum Open {
    Create,
    Existing,
    CreateNew,
}

/// The durable buffer on disk. Cheap to clone (one shared database handle).
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    max_messages: u64,
    /// Shared by every clone; set after opening (see [`RedbStore::set_max_dead_letters`]).
    max_dead_letters: std::sync::atomic::AtomicU64,
    /// Inserts waiting for a shared transaction (see [`group`]).
    group: std::sync::Mutex<crate::buffer::waiting::InsertQueue>,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.inner.path)
            .field("max_messages", &self.inner.max_messages)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (creating the file and its parent directory if needed) the store at `path`.
    /// `max_messages` bounds the pending table.
    pub fn open(path: &Path, max_messages: u64) -> Result<Self, StoreError> {
        Self::open_with(path, max_messages, Open::Create)
    }

    /// Opens the store at `path` only if the file exists and is a store; never creates one.
    pub fn open_existing(path: &Path, max_messages: u64) -> Result<Self, StoreError> {
        Self::open_with(path, max_messages, Open::Existing)
    }

    /// Creates a new store at `path`, which must not exist. The file appears under `path` only
    /// once it is a complete, locked store: it is built under `<path>.creating` and renamed, so a
    /// process scanning the directory never opens (and locks) it half made.
    pub fn create_new(path: &Path, max_messages: u64) -> Result<Self, StoreError> {
        Self::open_with(path, max_messages, Open::CreateNew)
    }

    fn open_with(path: &Path, max_messages: u64, how: Open) -> Result<Self, StoreError> {
        let io = |source: redb::Error| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let (Some(parent), Open::Create | Open::CreateNew) = (parent, how) {
            std::fs::create_dir_all(parent).map_err(|e| io(e.into()))?;
        }
        let staging = match how {
            Open::CreateNew => {
                let mut name = path.as_os_str().to_owned();
                name.push(".creating");
                PathBuf::from(name)
            }
            Open::Create | Open::Existing => path.to_path_buf(),
        };
        let mut builder = Database::builder();
        builder.set_cache_size(CACHE_BYTES);
        let opened = match how {
            Open::Create => builder.create(path),
            Open::Existing => builder.open(path),
            Open::CreateNew => {
                if path.exists() {
                    return Err(io(
                        std::io::Error::from(std::io::ErrorKind::AlreadyExists).into()
                    ));
                }
                builder.create(&staging)
            }
        };
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen
            | redb::DatabaseError::LockProtocolMismatch => StoreError::Locked {
                path: path.to_path_buf(),
            },
            other => io(other.into()),
        })?;
        if staging != path {
            // The lock belongs to the open file, so it survives the rename.
            std::fs::rename(&staging, path).map_err(|e| io(e.into()))?;
        }
        let store = RedbStore {
            inner: Arc::new(Inner {
                db,
                path: path.to_path_buf(),
                max_messages,
                max_dead_letters: std::sync::atomic::AtomicU64::new(u64::MAX),
                group: std::sync::Mutex::default(),
            }),
        };
        // Create every table now, so that read transactions never meet a missing one.
        store.write(|txn| {
            txn.open_table(COUNTERS)?;
            txn.open_table(PENDING_META)?;
            txn.open_table(PENDING_REQUEST)?;
            txn.open_table(PENDING_SCHEDULE)?;
            txn.open_table(DEAD_META)?;
            txn.open_table(DEAD_REQUEST)?;
            txn.open_table(ADOPTED)?;
            Ok(((), true))
        })?;
        Ok(store)
    }

    /// Caps the dead letter table (oldest evicted first); unbounded unless set.
    pub fn with_max_dead_letters(self, max: u64) -> Self {
        self.set_max_dead_letters(max);
        self
    }

    /// [`RedbStore::with_max_dead_letters`] through a shared handle (all clones see it).
    pub fn set_max_dead_letters(&self, max: u64) {
        self.inner
            .max_dead_letters
            .store(max.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `call` on tokio's blocking pool. A panic inside it becomes
    /// [`StoreError::Aborted`], never a panic of the caller.
    async fn off_thread<T: Send + 'static>(
        &self,
        operation: &'static str,
        call: impl FnOnce(&RedbStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || call(&store))
            .await
            .unwrap_or(Err(StoreError::Aborted { operation }))
    }

    /// Metadata of every message in `table`, oldest id first.
    pub fn list(&self, table: Table) -> Result<Vec<BufferedMeta>, StoreError> {
        self.read(|txn| {
            let metas = txn.open_table(tables(table).0)?;
            let mut list = Vec::with_capacity(usize::try_from(metas.len()?).unwrap_or(0));
            for entry in metas.iter()? {
                let (id, json) = entry?;
                list.push(decode_meta(id.value(), json.value())?);
            }
            Ok(list)
        })
    }

    /// One message, wherever it is.
    pub fn get(&self, id: u64) -> Result<Option<(Table, BufferedMessage)>, StoreError> {
        self.read(|txn| {
            for table in [Table::Pending, Table::DeadLetter] {
                if let Some(message) = read_message(txn, table, id)? {
                    return Ok(Some((table, message)));
                }
            }
            Ok(None)
        })
    }

    /// Moves a dead-letter message back to pending, due now: attempts kept, `dead_reason`
    /// cleared, `expires_at_ms = now_ms + ttl_ms`. Returns false if it is not in the dead letter
    /// table. An operator's decision, so it is not refused when the pending table is full.
    pub fn requeue_dead(&self, id: u64, now_ms: u64, ttl_ms: u64) -> Result<bool, StoreError> {
        self.write(|txn| {
            let Some(mut message) = take_message(txn, Table::DeadLetter, id)? else {
                return Ok((false, false));
            };
            message.meta.dead_reason = None;
            message.meta.message.next_attempt_at_ms = now_ms;
            message.meta.message.expires_at_ms = now_ms.saturating_add(ttl_ms);
            put_pending(txn, &message.meta, &message.request)?;
            Ok((true, true))
        })
    }

    /// Deletes dead-letter messages received before `received_before_ms` (all of them when
    /// `None`). Returns how many.
    pub fn purge_dead(&self, received_before_ms: Option<u64>) -> Result<usize, StoreError> {
        self.write(|txn| {
            let mut metas = txn.open_table(DEAD_META)?;
            let mut doomed = Vec::new();
            for entry in metas.iter()? {
                let (id, json) = entry?;
                let id = id.value();
                let purge = match received_before_ms {
                    None => true,
                    Some(cutoff) => decode_meta(id, json.value())?.message.received_at_ms < cutoff,
                };
                if purge {
                    doomed.push(id);
                }
            }
            let mut requests = txn.open_table(DEAD_REQUEST)?;
            for &id in &doomed {
                metas.remove(id)?;
                requests.remove(id)?;
            }
            Ok((doomed.len(), !doomed.is_empty()))
        })
    }

    /// Runs `body` in a read transaction.
    fn read<T>(
        &self,
        body: impl FnOnce(&ReadTransaction) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, Failure> {
            let txn = self.inner.db.begin_read()?;
            body(&txn)
        };
        run().map_err(|failure| self.attach_path(failure))
    }

    /// Runs `body` in a write transaction with immediate durability. `body` returns its result
    /// and whether it changed anything: a change is committed (fsynced before this returns),
    /// otherwise the transaction is aborted. An error aborts too.
    fn write<T>(
        &self,
        body: impl FnOnce(&WriteTransaction) -> Result<(T, bool), Failure>,
    ) -> Result<T, StoreError> {
        let run = || -> Result<T, Failure> {
            let mut txn = self.inner.db.begin_write()?;
            // redb's default, stated so that no later change of default can weaken it.
            txn.set_durability(Durability::Immediate)?;
            let (result, changed) = body(&txn)?;
            if changed {
                txn.commit()?;
            } else {
                txn.abort()?;
            }
            Ok(result)
        };
        run().map_err(|failure| self.attach_path(failure))
    }

    fn attach_path(&self, failure: Failure) -> StoreError {
        match failure {
            Failure::Redb(source) => StoreError::Io {
                path: self.inner.path.clone(),
                source,
            },
            Failure::Store(error) => error,
        }
    }
}

#[async_trait]
impl NotificationStore for RedbStore {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    async fn insert(&self, msg: NewMessage, request: Vec<u8>) -> Result<u64, StoreError> {
        self.grouped_insert(msg, request).await
    }

    async fn due(
        &self,
        now_ms: u64,
        horizon_ms: u64,
        limit: usize,
        _held: &[String],
    ) -> Result<Vec<BufferedMessage>, StoreError> {
        // Held groups' messages are returned too: one process, no claims, and a read of the
        // schedule is cheaper than decoding every entry to filter it.
        self.off_thread("due", move |s| {
            s.blocking_due_within(now_ms, horizon_ms, limit)
        })
        .await
    }

    async fn reschedule(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at_ms: u64,
        last_error: String,
    ) -> Result<bool, StoreError> {
        self.off_thread("reschedule", move |s| {
            s.blocking_reschedule(id, attempts, next_attempt_at_ms, &last_error)
        })
        .await
    }

    async fn move_to_dead_letter(
        &self,
        id: u64,
        reason: String,
    ) -> Result<Option<DeadLettered>, StoreError> {
        self.off_thread("move_to_dead_letter", move |s| {
            s.blocking_move_to_dead_letter_capped(id, &reason)
        })
        .await
    }

    async fn remove(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        self.off_thread("remove", move |s| s.blocking_remove(table, id))
            .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.off_thread("stats", RedbStore::blocking_stats).await
    }
}

#[cfg(test)]
mod tests;
