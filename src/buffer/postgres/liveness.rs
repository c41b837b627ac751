//! How long a claim lives: as long as the instance that took it is alive, not one long lease.
//!
//! Each instance renews a row of `instances` every [`HEARTBEAT_EVERY`] from its own task (a
//! long redelivery pass never delays it). Another instance takes a claim over as soon as the
//! claim's owner has not renewed for [`STALE_AFTER`]: a SIGKILLed or frozen (SIGSTOP) instance,
//! or one cut off from the database, loses its claims within seconds, where a lease long
//! enough for a slow attempt would keep them past a ringing call. `buffer.lease` stays as the
//! backstop for an instance that is alive but whose worker no longer settles what it claimed;
//! an owner with no row at all (a build from before heartbeats, during a rolling deploy) is
//! judged by the lease alone. Owns the heartbeat's SQL and the claim predicate the store's
//! `due` uses; nothing here delivers or decides when to.

use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{Failure, PostgresStore};

/// How often an instance renews its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// An owner whose heartbeat is older than this has lost its claims: three beats missed.
pub const STALE_AFTER: Duration = Duration::from_secs(3);

/// Rows of instances gone this long are deleted (a crashed instance never deletes its own).
const FORGET_AFTER: &str = "1 day";

/// The SQL condition (over `pending` as `p`, with the stale bound in ms as `$stale`) under
/// which a pending message's claim may be taken: never claimed, given back, past its lease, or
/// held by an instance whose heartbeat is stale.
pub(super) fn claim_is_free(stale: &str) -> String {
    format!(
        "(p.lease_until IS NULL OR p.lease_until <= clock_timestamp()
          OR EXISTS (SELECT 1 FROM {{s}}.instances i WHERE i.name = p.claimed_by
                     AND i.heartbeat_at <= clock_timestamp() - {stale}::bigint * interval '1 millisecond'))"
    )
}

/// [`STALE_AFTER`] as the bigint parameter of [`claim_is_free`].
pub(super) fn stale_ms() -> i64 {
    i64::try_from(STALE_AFTER.as_millis()).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// Renews this instance's heartbeat (the database's clock, so skewed hosts agree).
    pub async fn heartbeat(&self) -> Result<(), crate::buffer::StoreError> {
        let sql = self.sql(
            "INSERT INTO {s}.instances (name, heartbeat_at) VALUES ($1, clock_timestamp())
             ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        );
        self.inner
            .pool
            .call("heartbeat", async {
                let client = self.inner.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                client.execute(&statement, &[&self.inner.instance]).await?;
                Ok(())
            })
            .await
    }

    /// Deletes this instance's heartbeat (after its claims were given back at shutdown) and
    /// the rows of instances long gone.
    pub async fn retire(&self) -> Result<(), crate::buffer::StoreError> {
        let own = self.sql("DELETE FROM {s}.instances WHERE name = $1");
        let old = self.sql(&format!(
            "DELETE FROM {{s}}.instances WHERE heartbeat_at < clock_timestamp() - interval '{FORGET_AFTER}'"
        ));
        self.inner
            .pool
            .call("retire", async {
                let client = self.inner.pool.client().await?;
                client.execute(&own, &[&self.inner.instance]).await?;
                client.execute(&old, &[]).await?;
                Ok::<(), Failure>(())
            })
            .await
    }
}

/// Renews the heartbeat until shutdown. A failed renewal is logged once per change (the store
/// calls count their own errors); the claims stay valid until [`STALE_AFTER`].
pub struct Heartbeat {
    store: PostgresStore,
}

impl Heartbeat {
    pub fn new(store: PostgresStore) -> Self {
        Heartbeat { store }
    }
}

#[async_trait]
impl BackgroundService for Heartbeat {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {}
            }
            match self.store.heartbeat().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("buffer: heartbeat renewed again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "buffer: heartbeat failed; other instances take this one's claims over after {STALE_AFTER:?} without one");
                }
                Err(_) => {}
            }
        }
    }
}
