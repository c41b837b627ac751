//! The store the `buffer` commands work on: the redb file (opened exclusively, so only while
//! no proxy holds it) or the shared PostgreSQL buffer (no file lock: it works on a running
//! fleet). One set of blocking calls over both, so each command is written once.
//!
//! Owns opening the configured backend for an operator and nothing else: what a command
//! prints or delivers is [`super`]'s.

use anyhow::{Context, Result};

use crate::buffer::{
    handoff, instance_name, BufferedMessage, BufferedMeta, NotificationStore, PgOptions, PgPool,
    PostgresStore, RedbStore, StoreError, Table,
};
use crate::config::{BufferBackend, BufferConfig};

enum Backend {
    Redb(RedbStore),
    Postgres(PostgresStore),
}

/// A buffer opened for an operator, with the runtime its calls (and replays) run on.
pub(super) struct OperatorStore {
    backend: Backend,
    runtime: tokio::runtime::Runtime,
}

impl OperatorStore {
    pub(super) fn open(buffer: &BufferConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start an async runtime")?;
        let backend = match &buffer.backend {
            BufferBackend::Redb { path } => {
                let store = RedbStore::open(path, buffer.max_messages)?;
                adopt_leftovers(&store, buffer.max_messages);
                Backend::Redb(store)
            }
            BufferBackend::Postgres(pg) => {
                // One connection; an operator waits longer than a live request would.
                let pool = PgPool::new(&PgOptions {
                    pool_size: 1,
                    call_timeout: pg.store_timeout.max(std::time::Duration::from_secs(10)),
                    ..PgOptions::from(pg)
                })?;
                let store = PostgresStore::new(
                    pool,
                    buffer.max_messages,
                    pg.lease,
                    format!("buffer-cli@{}", instance_name()),
                );
                // Fail here, with the store's location, rather than in the first command.
                runtime.block_on(store.pool().migrate())?;
                Backend::Postgres(store)
            }
        };
        Ok(OperatorStore { backend, runtime })
    }

    pub(super) fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub(super) fn list(&self, table: Table) -> Result<Vec<BufferedMeta>, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.list(table),
            Backend::Postgres(s) => self.block_on(s.list(table)),
        }
    }

    pub(super) fn get(&self, id: u64) -> Result<Option<(Table, BufferedMessage)>, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.get(id),
            Backend::Postgres(s) => self.block_on(s.get(id)),
        }
    }

    /// Works on records whose metadata cannot be read, too: it goes by id alone.
    pub(super) fn remove(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.blocking_remove(table, id),
            Backend::Postgres(s) => self.block_on(s.remove(table, id)),
        }
    }

    pub(super) fn purge_dead(&self, received_before_ms: Option<u64>) -> Result<usize, StoreError> {
        match &self.backend {
            Backend::Redb(s) => s.purge_dead(received_before_ms),
            Backend::Postgres(s) => self.block_on(s.purge_dead(received_before_ms)),
        }
    }
}

/// Hand-off files left by a `run --upgrade` (see [`crate::buffer::handoff`]) are merged into the
/// store first, so every command sees every message; a file still held by a running proxy is
/// named on stderr, since its messages are not visible here yet.
fn adopt_leftovers(store: &RedbStore, max_messages: u64) {
    let report = handoff::adopt_leftovers(store, max_messages);
    for (path, n) in &report.adopted {
        eprintln!(
            "note: adopted {n} message(s) from the hand-off file {}",
            path.display()
        );
    }
    for path in &report.in_use {
        eprintln!(
            "note: {} is held by a running proxy (its --upgrade hand-off): its messages are not \
             included here; they move into this store when that proxy takes the store over",
            path.display()
        );
    }
    for (path, e) in &report.failed {
        eprintln!(
            "warning: the hand-off file {} could not be adopted ({e}); its messages are not included",
            path.display()
        );
    }
}
