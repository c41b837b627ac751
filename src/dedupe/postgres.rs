//! [`PostgresDedupe`]: in-flight claims shared by a fleet, in the buffer's PostgreSQL.
//!
//! Owns the claim SQL and its fingerprints; the semantics are [`Dedupe`]'s, as
//! [`DedupeCache`](super::DedupeCache) keeps them in memory. A claim is one transaction:
//! `INSERT … ON CONFLICT DO UPDATE … WHERE expired` on each identity's fingerprint, so of two
//! copies arriving at once on two instances exactly one inserts; the other blocks on the
//! unique index until the first commits, then sees its row. A copy that finds its twin in
//! flight polls (every `poll`, up to `wait`); when the wait runs out it takes the claim over,
//! as the in-memory cache does. Fingerprints are SHA-256 of kind and value: every instance must
//! compute the same one, so no per-process key. Rows expire after `ttl` (database clock) and
//! are swept now and then by whichever instance claims.
//!
//! When the store fails, claims fail fast for a while (backing off from 250 ms to 10 s) instead
//! of making every request wait for a store that is down (settles and releases still try: a
//! claim taken before the failure must not be left in flight); the flow then delivers without
//! suppression (degraded), which is counted (`notify_proxy_dedupe_unavailable_total`), logged at
//! most once per 10 s, and shown in `/readyz`.
//!
//! It reaches PostgreSQL only through [`PgPool`] (its timeouts and redaction) and never
//! decides what a duplicate is answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::IntCounter;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{Claim, Dedupe, DedupeError, Identities, Seen};
use crate::buffer::{PgPool, StoreError};
use crate::clock::now_ms;
use crate::logging::OncePer;

/// How often a copy looks again while its twin is in flight. Short against Twilio's 15 s;
/// each look is one small transaction.
const POLL: Duration = Duration::from_millis(50);

/// Expired rows are swept at most this often per instance.
const SWEEP_EVERY_MS: u64 = 60_000;

/// Store failures are logged at most this often (each one is counted).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// After a failure, claims skip the store for a backoff that doubles from the first to the
/// last of these (ms), and resets once the store answers again.
const BACKOFF_MS: (u64, u64) = (250, 10_000);

/// `/readyz` shows dedupe as degraded while the last failure is this recent and no call has
/// succeeded since.
const DEGRADED_FOR_MS: u64 = 60_000;

/// The longest the last look of a copy whose wait ran out may take (its take-over).
const TAKE_OVER_WITHIN: Duration = crate::policy::CLAIM_TAKE_OVER_WITHIN;

const IN_FLIGHT: i16 = 0;

fn state_of(seen: Seen) -> i16 {
    match seen {
        Seen::Delivered => 1,
        Seen::Buffered => 2,
    }
}

fn seen_of(state: i16) -> Option<Seen> {
    match state {
        1 => Some(Seen::Delivered),
        2 => Some(Seen::Buffered),
        _ => None,
    }
}

/// SHA-256 of kind, a NUL, and value: the same on every instance, fixed size whatever the
/// value's length, and the kind keeps a token and a message id with equal text apart.
fn fingerprint(kind: &str, value: &str) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(kind.as_bytes());
    hash.update([0u8]);
    hash.update(value.as_bytes());
    hash.finalize().to_vec()
}

/// Sorted, so that two claims sharing identities lock their rows in the same order (no
/// deadlock between them).
fn fingerprints(ids: &Identities<'_>) -> Vec<Vec<u8>> {
    let mut fps: Vec<Vec<u8>> = ids.keys().map(|(k, v)| fingerprint(k, v)).collect();
    fps.sort_unstable();
    fps.dedup();
    fps
}

/// Claims in PostgreSQL, shared by every instance using the same schema.
#[derive(Debug)]
pub struct PostgresDedupe {
    pool: PgPool,
    ttl: Duration,
    poll: Duration,
    last_sweep_ms: AtomicU64,
    warn: OncePer,
    failures: AtomicU64,
    /// Claims fail at once until this time (ms), after a failure.
    skip_until_ms: AtomicU64,
    backoff_ms: AtomicU64,
    last_failure_ms: AtomicU64,
    last_success_ms: AtomicU64,
    /// `notify_proxy_dedupe_unavailable_total`, when exported.
    unavailable: OnceLock<IntCounter>,
}

impl PostgresDedupe {
    /// Claims over `pool` (the buffer's, or one of its own on the same schema) that expire
    /// `ttl` after they were taken or settled.
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        PostgresDedupe {
            pool,
            ttl,
            poll: POLL,
            last_sweep_ms: AtomicU64::new(now_ms()),
            warn: OncePer::new(WARN_EVERY),
            failures: AtomicU64::new(0),
            skip_until_ms: AtomicU64::new(0),
            backoff_ms: AtomicU64::new(0),
            last_failure_ms: AtomicU64::new(0),
            last_success_ms: AtomicU64::new(0),
            unavailable: OnceLock::new(),
        }
    }

    /// Counts every failed claim, settle and release in `counter` too.
    pub fn with_unavailable_counter(self, counter: IntCounter) -> Self {
        let _ = self.unavailable.set(counter);
        self
    }

    /// Claims, settles and releases that did not reach the store (or skipped it while backing
    /// off), since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The store answered: end any backoff.
    fn succeeded(&self) {
        self.last_success_ms.store(now_ms(), Ordering::Relaxed);
        if self.backoff_ms.load(Ordering::Relaxed) != 0 {
            self.backoff_ms.store(0, Ordering::Relaxed);
            self.skip_until_ms.store(0, Ordering::Relaxed);
            tracing::info!("dedupe: the store answers again; duplicates are suppressed again");
        }
    }

    /// Whether calls skip the store now (backing off after a failure).
    fn backing_off(&self) -> bool {
        now_ms() < self.skip_until_ms.load(Ordering::Relaxed)
    }

    fn sql(&self, template: &str) -> String {
        template.replace("{s}", self.pool.schema())
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// One look: `Some(claim)` when decided, `None` while another delivery holds a claim.
    /// `take_over` claims in-flight rows too (the wait ran out).
    async fn try_claim(
        &self,
        fps: &[Vec<u8>],
        take_over: bool,
    ) -> Result<Option<Claim>, StoreError> {
        let claim = self.sql(
            "INSERT INTO {s}.dedupe (fingerprint, state, expires_at)
             SELECT fp, 0, clock_timestamp() + $2::bigint * interval '1 millisecond'
             FROM unnest($1::bytea[]) AS fp
             ON CONFLICT (fingerprint) DO UPDATE
             SET state = 0, expires_at = EXCLUDED.expires_at
             WHERE {s}.dedupe.expires_at <= clock_timestamp()
                OR ($3::bool AND {s}.dedupe.state = 0)
             RETURNING fingerprint",
        );
        let ended = self.sql(
            "SELECT state FROM {s}.dedupe
             WHERE fingerprint = ANY($1::bytea[]) AND state <> 0
               AND expires_at > clock_timestamp()
             ORDER BY fingerprint",
        );
        let ttl_ms = self.ttl_ms();
        self.pool
            .call("dedupe claim", async {
                let mut client = self.pool.client().await?;
                let txn = client.transaction().await?;
                let statement = txn.prepare_cached(&claim).await?;
                let won = txn.query(&statement, &[&fps, &ttl_ms, &take_over]).await?;
                if won.len() == fps.len() {
                    txn.commit().await?;
                    return Ok(Some(Claim::Won));
                }
                let statement = txn.prepare_cached(&ended).await?;
                let rows = txn.query(&statement, &[&fps]).await?;
                // Whatever this look inserted is undone: the claim is all identities or none.
                txn.rollback().await?;
                for row in rows {
                    if let Some(seen) = seen_of(row.try_get(0)?) {
                        return Ok(Some(Claim::Duplicate(seen)));
                    }
                }
                Ok(None)
            })
            .await
    }

    /// Deletes a batch of expired rows in the background, at most once a minute per instance.
    fn maybe_sweep(&self) {
        let now = now_ms();
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY_MS
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pool = self.pool.clone();
        let sql = self.sql(
            "DELETE FROM {s}.dedupe WHERE fingerprint IN (
                 SELECT fingerprint FROM {s}.dedupe
                 WHERE expires_at < clock_timestamp() LIMIT 10000)",
        );
        tokio::spawn(async move {
            let swept = pool
                .call("dedupe sweep", async {
                    Ok(pool.client().await?.execute(&sql, &[]).await?)
                })
                .await;
            if let Err(e) = swept {
                tracing::debug!(error = %e, "dedupe: sweep of expired claims failed");
            }
        });
    }

    /// A call that did not reach the store: counted (a skip while backing off too).
    fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = self.unavailable.get() {
            counter.inc();
        }
    }

    /// A call the store failed: counted, logged (rate-limited), and the backoff grows.
    fn failed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.count_failure();
        let now = now_ms();
        self.last_failure_ms.store(now, Ordering::Relaxed);
        let backoff = match self.backoff_ms.load(Ordering::Relaxed) {
            0 => BACKOFF_MS.0,
            b => (b * 2).min(BACKOFF_MS.1),
        };
        self.backoff_ms.store(backoff, Ordering::Relaxed);
        self.skip_until_ms.store(now + backoff, Ordering::Relaxed);
        if self.warn.due_at(now) {
            tracing::warn!(
                error = %error,
                failures = self.failures(),
                "dedupe: {what} did not reach the store; copies of a notification may be \
                 delivered more than once until it answers again"
            );
        }
    }
}

#[async_trait]
impl Dedupe for PostgresDedupe {
    async fn claim(&self, ids: &Identities<'_>, wait: Duration) -> Result<Claim, DedupeError> {
        if ids.is_empty() {
            return Ok(Claim::Won);
        }
        if self.backing_off() {
            self.count_failure();
            return Err(DedupeError(
                "skipped while backing off after a store failure".to_owned(),
            ));
        }
        self.maybe_sweep();
        let fps = fingerprints(ids);
        let give_up = tokio::time::Instant::now() + wait;
        let mut waited = false;
        loop {
            // The first look is bounded by the store's call timeout only; later ones (the twin
            // is in flight) by this copy's wait.
            let look = self.try_claim(&fps, false);
            let look = if waited {
                tokio::time::timeout_at(give_up, look).await
            } else {
                Ok(look.await)
            };
            match look {
                Ok(Ok(Some(claim))) => {
                    self.succeeded();
                    return Ok(claim);
                }
                Ok(Ok(None)) => waited = true,
                Ok(Err(e)) => {
                    self.failed("claim", &e);
                    return Err(DedupeError(e.to_string()));
                }
                // The twin is still in flight and this copy's wait ran out: take over.
                Err(_) => break,
            }
            let now = tokio::time::Instant::now();
            if now >= give_up {
                break;
            }
            tokio::time::sleep(self.poll.min(give_up - now)).await;
        }
        // The twin did not end within this copy's wait: take its claim over (briefly: the
        // request's time is spent), or deliver without one.
        match tokio::time::timeout(TAKE_OVER_WITHIN, self.try_claim(&fps, true)).await {
            Ok(Ok(claim)) => Ok(claim.unwrap_or(Claim::Won)),
            Ok(Err(e)) => {
                self.failed("claim", &e);
                Ok(Claim::Won)
            }
            Err(_) => Ok(Claim::Won),
        }
    }

    async fn settle(&self, ids: &Identities<'_>, seen: Seen) {
        if ids.is_empty() {
            return;
        }
        let fps = fingerprints(ids);
        let sql = self.sql(
            "INSERT INTO {s}.dedupe (fingerprint, state, expires_at)
             SELECT fp, $2, clock_timestamp() + $3::bigint * interval '1 millisecond'
             FROM unnest($1::bytea[]) AS fp
             ON CONFLICT (fingerprint) DO UPDATE
             SET state = EXCLUDED.state, expires_at = EXCLUDED.expires_at",
        );
        let ttl_ms = self.ttl_ms();
        let state = state_of(seen);
        let settled = self
            .pool
            .call("dedupe settle", async {
                let client = self.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                Ok(client.execute(&statement, &[&fps, &state, &ttl_ms]).await?)
            })
            .await;
        match settled {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed("settle", &e),
        }
    }

    async fn release(&self, ids: &Identities<'_>) {
        if ids.is_empty() {
            return;
        }
        let fps = fingerprints(ids);
        let sql = self.sql(&format!(
            "DELETE FROM {{s}}.dedupe WHERE fingerprint = ANY($1::bytea[]) AND state = {IN_FLIGHT}"
        ));
        let released = self
            .pool
            .call("dedupe release", async {
                let client = self.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                Ok(client.execute(&statement, &[&fps]).await?)
            })
            .await;
        match released {
            Ok(_) => self.succeeded(),
            Err(e) => self.failed("release", &e),
        }
    }

    fn degraded(&self) -> bool {
        let failure = self.last_failure_ms.load(Ordering::Relaxed);
        failure > self.last_success_ms.load(Ordering::Relaxed)
            && now_ms().saturating_sub(failure) < DEGRADED_FOR_MS
    }
}

#[cfg(test)]
mod tests;
