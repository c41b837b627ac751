//! [`PostgresLedger`]: the answer ledger a fleet shares, in the buffer's PostgreSQL.
//!
//! Twilio's error event for a call can land on another instance than its notification did, so
//! every instance writes its answers to `call_answers` and reads every instance's back. Writes
//! never touch the request path: an answer goes into this process's [`MemoryLedger`] and a
//! bounded queue that [`LedgerFlush`] writes in batches (every [`FLUSH_EVERY`], or sooner when
//! [`FLUSH_AT`] are waiting). A full queue or a failed write loses the shared copy only (counted
//! in `notify_proxy_answer_records_unshared_total`): this instance still knows its own answers.
//! Counted event SIDs live in `twilio_events`, so an event reaching two instances (Twilio's retry,
//! or both channels) is counted once. When PostgreSQL does not answer, both fall back to this
//! process's memory (logged at most once a minute). Rows older than `remember` are swept.
//!
//! It reaches PostgreSQL only through [`PgPool`] (timeouts, redaction, migrations).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::IntCounter;
use tokio::sync::Notify;

use super::ledger::{Answer, AnswerLedger, LedgerError, MemoryLedger};
use crate::buffer::postgres::{storable, to_i64};
use crate::buffer::PgPool;
use crate::clock::Clock;
use crate::logging::OncePer;
use crate::twilio_errors::AnswerRecord;

/// Answers waiting for the shared table at most; beyond it they stay local only.
const QUEUE_MAX: usize = 4096;
/// A batch is written at least this often...
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// ...or as soon as this many wait.
const FLUSH_AT: usize = 256;
/// Expired rows are swept this often (by every instance: a cheap indexed delete).
const SWEEP_EVERY_MS: u64 = 60_000;
/// Falling back to memory is logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Rows read back per call at most (a few instances' worth of [`super::ANSWERS_PER_CALL`]).
const ROWS_PER_CALL: i64 = 32;

/// The fleet's ledger: this process's memory in front of the shared tables.
pub struct PostgresLedger {
    local: MemoryLedger,
    pool: PgPool,
    queue: Mutex<Vec<AnswerRecord>>,
    wake: Notify,
    remember_ms: u64,
    clock: Arc<dyn Clock>,
    unshared: IntCounter,
    warn: OncePer,
}

impl PostgresLedger {
    pub fn new(
        pool: PgPool,
        max_calls: usize,
        remember: Duration,
        clock: Arc<dyn Clock>,
        unshared: IntCounter,
        instance: &str,
    ) -> Self {
        PostgresLedger {
            local: MemoryLedger::new(max_calls, remember, clock.clone(), instance),
            pool,
            queue: Mutex::new(Vec::new()),
            wake: Notify::new(),
            remember_ms: u64::try_from(remember.as_millis()).unwrap_or(u64::MAX),
            clock,
            unshared,
            warn: OncePer::new(WARN_EVERY),
        }
    }

    fn sql(&self, template: &str) -> String {
        template.replace("{s}", self.pool.schema())
    }

    /// Logs a fallback to memory, at most once per [`WARN_EVERY`].
    fn degraded(&self, what: &str, error: &dyn std::fmt::Display) {
        if self.warn.due() {
            tracing::warn!(
                error = %error,
                "twilio_errors: the shared answer record is unavailable ({what}); this instance \
                 reconciles with its own answers only until PostgreSQL answers"
            );
        }
    }

    /// Writes the waiting answers in one statement; returns how many were waiting.
    async fn flush(&self) -> usize {
        let batch = std::mem::take(&mut *self.queue.lock().expect("ledger queue"));
        if batch.is_empty() {
            return 0;
        }
        let mut columns: (Vec<String>, Vec<String>, Vec<String>, Vec<String>) = Default::default();
        let mut reasons: Vec<Option<String>> = Vec::with_capacity(batch.len());
        let mut statuses: Vec<i32> = Vec::with_capacity(batch.len());
        let mut times: Vec<i64> = Vec::with_capacity(batch.len());
        let mut instances: Vec<String> = Vec::with_capacity(batch.len());
        let mut verified: Vec<bool> = Vec::with_capacity(batch.len());
        for r in &batch {
            columns.0.push(storable(&r.call_sid).into_owned());
            columns.1.push(storable(&r.request_id).into_owned());
            columns.2.push(storable(&r.route).into_owned());
            columns.3.push(r.outcome.clone());
            reasons.push(r.reason.clone());
            statuses.push(i32::from(r.status));
            times.push(to_i64(r.answered_at_ms));
            instances.push(storable(&r.instance).into_owned());
            verified.push(r.verified);
        }
        let sql = self.sql(
            "INSERT INTO {s}.call_answers
                 (call_sid, request_id, route, outcome, reason, status, answered_at_ms, instance, verified)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::int[], $7::bigint[], $8::text[], $9::bool[])
             ON CONFLICT DO NOTHING",
        );
        let written = self
            .pool
            .call("answers insert", async {
                let client = self.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                Ok(client
                    .execute(
                        &statement,
                        &[
                            &columns.0, &columns.1, &columns.2, &columns.3, &reasons, &statuses,
                            &times, &instances, &verified,
                        ],
                    )
                    .await?)
            })
            .await;
        if let Err(e) = written {
            self.unshared.inc_by(batch.len() as u64);
            self.degraded("writing answers", &e);
        }
        batch.len()
    }

    async fn sweep(&self) {
        let before = to_i64(self.clock.now_ms().saturating_sub(self.remember_ms));
        let answers = self.sql("DELETE FROM {s}.call_answers WHERE answered_at_ms < $1");
        let events = self.sql("DELETE FROM {s}.twilio_events WHERE seen_at_ms < $1");
        let swept = self
            .pool
            .call("answers sweep", async {
                let client = self.pool.client().await?;
                client.execute(&answers, &[&before]).await?;
                client.execute(&events, &[&before]).await?;
                Ok(())
            })
            .await;
        if let Err(e) = swept {
            self.degraded("sweeping", &e);
        }
    }
}

#[async_trait]
impl AnswerLedger for PostgresLedger {
    fn record(&self, call_sid: &str, answer: &Answer<'_>) {
        self.local.record(call_sid, answer);
        let waiting = {
            let mut queue = self.queue.lock().expect("ledger queue");
            if queue.len() < QUEUE_MAX {
                queue.push(AnswerRecord {
                    call_sid: call_sid.to_owned(),
                    route: answer.route.to_owned(),
                    outcome: answer.outcome.to_owned(),
                    reason: answer.reason.map(str::to_owned),
                    status: answer.status,
                    answered_at_ms: answer.answered_at_ms,
                    instance: self.local.instance().to_owned(),
                    request_id: answer.request_id.as_str().to_owned(),
                    verified: answer.verified,
                });
                Some(queue.len())
            } else {
                None
            }
        };
        match waiting {
            Some(n) if n >= FLUSH_AT => self.wake.notify_one(),
            Some(_) => {}
            None => self.unshared.inc(),
        }
    }

    async fn answers_for(&self, call_sid: &str) -> Result<Vec<AnswerRecord>, LedgerError> {
        let mut answers = self.local.local_answers(call_sid);
        let sql = self.sql(
            "SELECT request_id, route, outcome, reason, status, answered_at_ms, instance, verified
             FROM {s}.call_answers WHERE call_sid = $1
             ORDER BY answered_at_ms DESC LIMIT $2",
        );
        let rows = self
            .pool
            .call("answers read", async {
                let client = self.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                Ok(client
                    .query(&statement, &[&call_sid, &ROWS_PER_CALL])
                    .await?)
            })
            .await;
        match rows {
            Ok(rows) => {
                for row in rows {
                    let request_id: String = row.get(0);
                    if answers.iter().any(|a| a.request_id == request_id) {
                        continue;
                    }
                    answers.push(AnswerRecord {
                        call_sid: call_sid.to_owned(),
                        request_id,
                        route: row.get(1),
                        outcome: row.get(2),
                        reason: row.get(3),
                        status: u16::try_from(row.get::<_, i32>(4)).unwrap_or(0),
                        answered_at_ms: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
                        instance: row.get(6),
                        verified: row.get(7),
                    });
                }
                Ok(answers)
            }
            // What this instance answered still explains the 13807; knowing nothing is not
            // knowing that nobody answered.
            Err(e) if answers.is_empty() => {
                self.degraded("reading answers", &e);
                Err(LedgerError(e.to_string()))
            }
            Err(e) => {
                self.degraded("reading answers", &e);
                Ok(answers)
            }
        }
    }

    async fn first_sighting(&self, sid: &str) -> Result<bool, LedgerError> {
        let now = to_i64(self.clock.now_ms());
        let expired_before = to_i64(self.clock.now_ms().saturating_sub(self.remember_ms));
        // A row older than `remember` (not swept yet) counts as forgotten, as in memory.
        let sql = self.sql(
            "INSERT INTO {s}.twilio_events (sid, seen_at_ms) VALUES ($1, $2)
             ON CONFLICT (sid) DO UPDATE SET seen_at_ms = EXCLUDED.seen_at_ms
             WHERE {s}.twilio_events.seen_at_ms < $3",
        );
        let sid_text = storable(sid);
        let inserted = self
            .pool
            .call("events insert", async {
                let client = self.pool.client().await?;
                let statement = client.prepare_cached(&sql).await?;
                Ok(client
                    .execute(&statement, &[&sid_text.as_ref(), &now, &expired_before])
                    .await?)
            })
            .await;
        let local = self.local.local_first_sighting(sid);
        match inserted {
            Ok(rows) => Ok(rows == 1),
            Err(e) => {
                self.degraded("counting events", &e);
                Ok(local)
            }
        }
    }
}

/// Writes a [`PostgresLedger`]'s queue in batches and sweeps old rows; writes what is left at
/// shutdown.
pub struct LedgerFlush(pub Arc<PostgresLedger>);

#[async_trait]
impl BackgroundService for LedgerFlush {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let ledger = &self.0;
        let mut last_sweep = ledger.clock.now_ms();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = ledger.wake.notified() => {}
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
            }
            // A full batch may be followed by more: write until the queue is short.
            while ledger.flush().await >= FLUSH_AT {}
            let now = ledger.clock.now_ms();
            if now.saturating_sub(last_sweep) >= SWEEP_EVERY_MS {
                last_sweep = now;
                ledger.sweep().await;
            }
        }
        ledger.flush().await;
    }
}
