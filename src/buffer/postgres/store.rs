//! [`PostgresStore`]: the [`NotificationStore`] a fleet shares.
//!
//! Owns the SQL of every buffer operation and the lease rule: [`NotificationStore::due`]
//! claims the messages it returns for `lease` (`FOR UPDATE SKIP LOCKED`, then `lease_until`
//! and `claimed_by`), so two instances never redeliver one message at the same time, and a
//! message claimed by an instance that died is claimed again once the lease has run out. Lease
//! times use the database's clock, so instances with skewed clocks agree on them; due times
//! are the callers' (`now_ms`), as with redb. Inserts go through the batcher (`batch.rs`).
//! Nothing here decides when to redeliver or give up.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use prometheus::IntCounter;
use tokio_postgres::Row;

use super::liveness;
use super::{storable, to_i64, Failure, PgPool};
use crate::buffer::waiting::InsertQueue;
use crate::buffer::{
    BufferedMessage, BufferedMeta, DeadLettered, NewMessage, NotificationStore, StoreError,
    StoreStats, Table,
};

/// The metadata columns, in the order [`meta_from_row`] reads them; queries append
/// `dead_reason` (10) and `request` (11).
pub(super) const META: &str = "id, route, upstream, received_at_ms, expires_at_ms, attempts, \
                               next_attempt_at_ms, last_error, message_id, call_sid";

/// The buffer in PostgreSQL. Cheap to clone (one shared pool and insert queue).
#[derive(Clone)]
pub struct PostgresStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) pool: PgPool,
    pub(super) max_messages: u64,
    lease: Duration,
    /// Written into `claimed_by`: which instance holds a lease, for operators and takeovers.
    pub(super) instance: String,
    pub(super) batch: Mutex<InsertQueue>,
    takeovers: AtomicU64,
    /// `notify_proxy_buffer_lease_takeovers_total`, when exported.
    takeover_counter: OnceLock<IntCounter>,
    /// The dead-letter cap (`buffer.max_dead_letters`); the oldest beyond it are deleted.
    max_dead_letters: AtomicU64,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.inner.pool.location())
            .field("max_messages", &self.inner.max_messages)
            .field("lease", &self.inner.lease)
            .field("instance", &self.inner.instance)
            .finish_non_exhaustive()
    }
}

/// A name for this instance in `claimed_by`: host name and process id.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned());
    format!("{host}:{}", std::process::id())
}

fn corrupt(id: u64, detail: impl Into<String>) -> Failure {
    Failure::Store(StoreError::Corrupt {
        id,
        detail: detail.into(),
    })
}

/// Reads [`META`] and `dead_reason` from a row.
pub(super) fn meta_from_row(row: &Row) -> Result<BufferedMeta, Failure> {
    let raw_id: i64 = row.try_get(0)?;
    let id = u64::try_from(raw_id).map_err(|_| corrupt(0, format!("negative id {raw_id}")))?;
    let unsigned = |column: usize| -> Result<u64, Failure> {
        let v: i64 = row.try_get(column)?;
        u64::try_from(v).map_err(|_| corrupt(id, format!("column {column} is negative ({v})")))
    };
    let attempts =
        u32::try_from(unsigned(5)?).map_err(|_| corrupt(id, "attempts do not fit 32 bits"))?;
    Ok(BufferedMeta {
        id,
        message: NewMessage {
            route: row.try_get(1)?,
            upstream: row.try_get(2)?,
            received_at_ms: unsigned(3)?,
            expires_at_ms: unsigned(4)?,
            attempts,
            next_attempt_at_ms: unsigned(6)?,
            last_error: row.try_get(7)?,
            message_id: row.try_get(8)?,
            call_sid: row.try_get(9)?,
        },
        dead_reason: row.try_get(10)?,
    })
}

pub(super) fn message_from_row(row: &Row) -> Result<BufferedMessage, Failure> {
    Ok(BufferedMessage {
        meta: meta_from_row(row)?,
        request: row.try_get(11)?,
    })
}

pub(super) fn table_name(table: Table) -> &'static str {
    match table {
        Table::Pending => "pending",
        Table::DeadLetter => "dead_letter",
    }
}

/// `dead_reason` as a column of either table.
pub(super) fn dead_reason_column(table: Table) -> &'static str {
    match table {
        Table::Pending => "NULL::text",
        Table::DeadLetter => "dead_reason",
    }
}

impl PostgresStore {
    /// A store over `pool`. `max_messages` bounds the pending table fleet-wide; `lease` is how
    /// long a message returned by `due` stays claimed by this instance (longer than one
    /// redelivery attempt); `instance` names this instance in claims (see [`instance_name`]).
    pub fn new(
        pool: PgPool,
        max_messages: u64,
        lease: Duration,
        instance: impl Into<String>,
    ) -> Self {
        PostgresStore {
            inner: Arc::new(Inner {
                pool,
                max_messages,
                lease,
                instance: instance.into(),
                batch: Mutex::new(InsertQueue::default()),
                takeovers: AtomicU64::new(0),
                takeover_counter: OnceLock::new(),
                max_dead_letters: AtomicU64::new(u64::MAX),
            }),
        }
    }

    /// Caps the dead-letter table at `max` messages, fleet-wide (oldest deleted first).
    pub fn with_max_dead_letters(self, max: u64) -> Self {
        self.inner.max_dead_letters.store(max, Ordering::Relaxed);
        self
    }

    /// Counts lease takeovers in `counter` too.
    pub fn with_takeover_counter(self, counter: IntCounter) -> Self {
        let _ = self.inner.takeover_counter.set(counter);
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Messages this instance claimed after another instance's lease on them ran out, since
    /// start (each means an instance died or stalled mid-redelivery).
    pub fn lease_takeovers(&self) -> u64 {
        self.inner.takeovers.load(Ordering::Relaxed)
    }

    /// `template` with `{s}` replaced by the schema.
    pub(super) fn sql(&self, template: &str) -> String {
        template.replace("{s}", self.inner.pool.schema())
    }
}

#[async_trait]
impl NotificationStore for PostgresStore {
    fn location(&self) -> String {
        self.inner.pool.location().to_owned()
    }

    async fn insert(&self, msg: NewMessage, request: Vec<u8>) -> Result<u64, StoreError> {
        super::batch::insert(&self.inner, msg, request).await
    }

    /// Claims up to `limit` due messages: the longest overdue first, returned by id. Messages
    /// another live instance holds a claim on are skipped, not waited for; those of `held`
    /// groups too, unless expired. A schedule beyond `now_ms + horizon_ms` (left by a clock
    /// step back) counts as due.
    async fn due(
        &self,
        now_ms: u64,
        horizon_ms: u64,
        limit: usize,
        held: &[String],
    ) -> Result<Vec<BufferedMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = self.sql(&format!(
            "WITH picked AS (
                 SELECT id, claimed_by AS previous FROM {{s}}.pending p
                 WHERE (next_attempt_at_ms <= $1 OR next_attempt_at_ms > $5)
                   AND (upstream <> ALL($6) OR expires_at_ms <= $1)
                   AND {free}
                 ORDER BY next_attempt_at_ms, id
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             UPDATE {{s}}.pending p
             SET lease_until = clock_timestamp() + $3::bigint * interval '1 millisecond',
                 claimed_by = $4
             FROM picked WHERE p.id = picked.id
             RETURNING {}, NULL::text, p.request, picked.previous",
            META.split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            free = liveness::claim_is_free("$7"),
        ));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease_ms = i64::try_from(self.inner.lease.as_millis()).unwrap_or(i64::MAX);
        let rows = self
            .inner
            .pool
            .call("due", async {
                let client = self.inner.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                Ok(client
                    .query(
                        &statement,
                        &[
                            &to_i64(now_ms),
                            &limit,
                            &lease_ms,
                            &self.inner.instance,
                            &to_i64(now_ms.saturating_add(horizon_ms)),
                            &held,
                            &liveness::stale_ms(),
                        ],
                    )
                    .await?)
            })
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in &rows {
            let previous: Option<String> = row.try_get(12).unwrap_or(None);
            match message_from_row(row) {
                Ok(message) => {
                    if previous.is_some_and(|p| p != self.inner.instance) {
                        self.inner.takeovers.fetch_add(1, Ordering::Relaxed);
                        if let Some(counter) = self.inner.takeover_counter.get() {
                            counter.inc();
                        }
                        tracing::info!(
                            buffer_id = message.meta.id,
                            "buffer: lease taken over from another instance"
                        );
                    }
                    due.push(message);
                }
                // As with redb: one unreadable record must not stop every other redelivery.
                Err(Failure::Store(e)) => {
                    tracing::error!(error = %e, "buffer: unreadable message skipped")
                }
                Err(other) => return Err(self.inner.pool.error("due", other)),
            }
        }
        due.sort_unstable_by_key(|m| m.meta.id);
        Ok(due)
    }

    /// Records a failed attempt and gives the claim back: the message is due again at
    /// `next_attempt_at_ms`, for whichever instance looks first. Only while the claim is this
    /// instance's (or nobody's: `buffer replay`): a message another instance took over
    /// meanwhile is that instance's to record.
    async fn reschedule(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at_ms: u64,
        last_error: String,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "UPDATE {s}.pending
             SET attempts = $2, next_attempt_at_ms = $3, last_error = $4,
                 lease_until = NULL, claimed_by = NULL
             WHERE id = $1 AND (claimed_by IS NULL OR claimed_by = $5)",
        );
        self.inner
            .pool
            .call("reschedule", async {
                let client = self.inner.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                let n = client
                    .execute(
                        &statement,
                        &[
                            &to_i64(id),
                            &i64::from(attempts),
                            &to_i64(next_attempt_at_ms),
                            &storable(&last_error),
                            &self.inner.instance,
                        ],
                    )
                    .await?;
                Ok(n == 1)
            })
            .await
    }

    /// One transaction: the message leaves pending and enters dead letter together, with its
    /// bytes, metadata and `reason`, and the oldest dead letters beyond the cap are deleted.
    async fn move_to_dead_letter(
        &self,
        id: u64,
        reason: String,
    ) -> Result<Option<DeadLettered>, StoreError> {
        let evict = self.sql(
            "DELETE FROM {s}.dead_letter WHERE id IN (
                 SELECT id FROM {s}.dead_letter ORDER BY id DESC OFFSET $1)",
        );
        let cap = to_i64(self.inner.max_dead_letters.load(Ordering::Relaxed));
        let sql = self.sql(
            "WITH moved AS (DELETE FROM {s}.pending WHERE id = $1 RETURNING *)
             INSERT INTO {s}.dead_letter (id, route, upstream, received_at_ms, expires_at_ms,
                 attempts, next_attempt_at_ms, last_error, message_id, call_sid, request,
                 dead_reason)
             SELECT id, route, upstream, received_at_ms, expires_at_ms, attempts,
                 next_attempt_at_ms, last_error, message_id, call_sid, request, $2
             FROM moved",
        );
        self.inner
            .pool
            .call("move_to_dead_letter", async {
                let mut client = self.inner.pool.client().await?;
                let tx = client.transaction().await?;
                let n = tx.execute(&sql, &[&to_i64(id), &storable(&reason)]).await?;
                if n != 1 {
                    return Ok(None);
                }
                let evicted = tx.execute(&evict, &[&cap]).await?;
                tx.commit().await?;
                Ok(Some(DeadLettered { evicted }))
            })
            .await
    }

    async fn remove(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        let sql = self.sql(&format!(
            "DELETE FROM {{s}}.{} WHERE id = $1",
            table_name(table)
        ));
        self.inner
            .pool
            .call("remove", async {
                let client = self.inner.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                Ok(client.execute(&statement, &[&to_i64(id)]).await? == 1)
            })
            .await
    }

    /// Fleet-wide counts. `count(*)` reads the tables' index, so a scrape costs a few ms per
    /// 100,000 pending messages: fine at a scrape interval, not for the request path.
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let sql = self.sql(
            "SELECT (SELECT count(*) FROM {s}.pending),
                    (SELECT count(*) FROM {s}.dead_letter),
                    (SELECT received_at_ms FROM {s}.pending ORDER BY id LIMIT 1)",
        );
        self.inner
            .pool
            .call("stats", async {
                let client = self.inner.pool.client().await?;
                let row = client.query_one(&sql, &[]).await?;
                let count = |i: usize| -> Result<u64, Failure> {
                    Ok(u64::try_from(row.try_get::<_, i64>(i)?).unwrap_or(0))
                };
                let oldest: Option<i64> = row.try_get(2)?;
                Ok(StoreStats {
                    pending: count(0)?,
                    dead: count(1)?,
                    oldest_pending_received_at_ms: oldest.map(|v| u64::try_from(v).unwrap_or(0)),
                })
            })
            .await
    }

    /// Removes a redelivered message only while this instance's claim on it stands: the
    /// fencing that keeps a resumed instance from removing (and counting) a message another
    /// instance took over while it was frozen.
    async fn remove_redelivered(&self, id: u64) -> Result<bool, StoreError> {
        let sql = self.sql("DELETE FROM {s}.pending WHERE id = $1 AND claimed_by = $2");
        self.inner
            .pool
            .call("remove", async {
                let client = self.inner.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                let n = client
                    .execute(&statement, &[&to_i64(id), &self.inner.instance])
                    .await?;
                Ok(n == 1)
            })
            .await
    }

    async fn release(&self, id: u64) -> Result<(), StoreError> {
        let sql = self.sql(
            "UPDATE {s}.pending SET lease_until = NULL, claimed_by = NULL
             WHERE id = $1 AND claimed_by = $2",
        );
        self.inner
            .pool
            .call("release", async {
                let client = self.inner.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                client
                    .execute(&statement, &[&to_i64(id), &self.inner.instance])
                    .await?;
                Ok(())
            })
            .await
    }

    fn lease(&self) -> Option<Duration> {
        Some(self.inner.lease)
    }

    /// Gives every claim back, then deletes this instance's heartbeat: it redelivers nothing
    /// more, and a stopped instance is not a stale one.
    async fn release_leases(&self) -> Result<u64, StoreError> {
        let released = self.release_claims().await?;
        self.retire().await?;
        Ok(released)
    }
}
