//! Opens the configured buffer, dedupe and answer ledger: the embedded redb file (and memory)
//! for one instance, or one PostgreSQL pool that a fleet's buffer, dedupe claims and answer
//! ledger share.
//!
//! Owns which store and which dedupe a configuration gets, and what happens at start when the
//! store cannot be reached: a configuration the server refuses (a wrong password, a missing
//! privilege) stops the start; a server that is not there does not (the proxy forwards, and
//! buffering and dedupe start working when it comes back). It builds stores and hands them
//! over; it never serves a request or runs the redelivery worker.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use pingora::server::Server;
use pingora::services::background::background_service;

use crate::buffer::{
    instance_name, HandoffService, Heartbeat, Instrumented, NotificationStore, PgOptions, PgPool,
    PostgresStore, RedbBuffer, StoreError,
};
use crate::clock::Clock;
use crate::config::{BufferBackend, BufferConfig, Config, PostgresBuffer};
use crate::dedupe::{Dedupe, DedupeCache, PostgresDedupe};
use crate::flow::DedupeSetup;
use crate::metrics::Metrics;
use crate::reconcile::{AnswerLedger, LedgerFlush, MemoryLedger, PostgresLedger};

/// The buffer, dedupe and answer ledger as configured.
pub(super) struct Stores {
    pub store: Option<Arc<dyn NotificationStore>>,
    pub dedupe: Option<DedupeSetup>,
    /// What the proxy answered for each call (for Twilio's 13807s): shared with the fleet
    /// through PostgreSQL, else this process's memory.
    pub ledger: Arc<dyn AnswerLedger>,
}

/// Opens what `config` names. With `upgrade`, a redb buffer goes to a hand-off file while the
/// running instance holds the main one (see [`crate::buffer::handoff`]).
pub(super) fn open(
    config: &Config,
    upgrade: bool,
    server: &mut Server,
    metrics: &Metrics,
    clock: &Arc<dyn Clock>,
) -> Result<Stores> {
    // The store, and with PostgreSQL the pool its dedupe claims share.
    let (store, pool): (Option<Arc<dyn NotificationStore>>, Option<PgPool>) = match &config.buffer {
        None => (None, None),
        Some(b) => match &b.backend {
            BufferBackend::Postgres(pg) => {
                let pool = connect(pg)?;
                let store =
                    PostgresStore::new(pool.clone(), b.max_messages, pg.lease, instance_name())
                        .with_max_dead_letters(b.max_dead_letters)
                        .with_takeover_counter(metrics.store().lease_takeovers);
                // Its claims live while it beats (buffer/postgres/liveness.rs).
                server.add_service(background_service(
                    "buffer heartbeat",
                    Heartbeat::new(store.clone()),
                ));
                (
                    Some(Arc::new(Instrumented::new(store, metrics.store()))),
                    Some(pool),
                )
            }
            BufferBackend::Redb { path } => {
                let buffer = Arc::new(
                    open_redb(path, b, upgrade)?.with_max_dead_letters(b.max_dead_letters),
                );
                // Moves the buffer from a hand-off file to the main file once the previous
                // process released it, and adopts files left by dead processes.
                server.add_service(background_service(
                    "buffer hand-off",
                    HandoffService(buffer.clone()),
                ));
                (
                    Some(Arc::new(Instrumented::new(buffer, metrics.store()))),
                    None,
                )
            }
        },
    };
    let dedupe = config.dedupe.as_ref().map(|d| {
        // With a shared buffer the claims are shared too: a copy landing on another instance
        // is a duplicate as well.
        let claims: Arc<dyn Dedupe> = match &pool {
            Some(pool) => Arc::new(
                PostgresDedupe::new(pool.clone(), d.ttl)
                    .with_unavailable_counter(metrics.dedupe_unavailable()),
            ),
            None => Arc::new(DedupeCache::new(d.capacity, d.ttl)),
        };
        DedupeSetup { key: d.key, claims }
    });
    let remember = config.twilio_errors.remember;
    let max_calls = config.twilio_errors.max_calls.get();
    let ledger: Arc<dyn AnswerLedger> = match pool {
        Some(pool) => {
            let ledger = Arc::new(PostgresLedger::new(
                pool,
                max_calls,
                remember,
                clock.clone(),
                metrics.twilio_errors().records_unshared,
                &instance_name(),
            ));
            server.add_service(background_service(
                "answer ledger",
                LedgerFlush(ledger.clone()),
            ));
            ledger
        }
        None => Arc::new(MemoryLedger::new(
            max_calls,
            remember,
            clock.clone(),
            &instance_name(),
        )),
    };
    Ok(Stores {
        store,
        dedupe,
        ledger,
    })
}

fn open_redb(path: &std::path::Path, b: &BufferConfig, upgrade: bool) -> Result<RedbBuffer> {
    RedbBuffer::open(path, b.max_messages, upgrade).map_err(|e| match e {
        // Without --upgrade a held file means another proxy is serving from it: two processes
        // must never share one buffer, so this start is refused.
        StoreError::Locked { .. } => anyhow!(
            "buffer.path: {} is in use by another process (a running proxy?). To replace a running \
             proxy without downtime, start the new one with `run --upgrade` and then send the \
             running one SIGQUIT; otherwise stop it first, give this instance its own buffer.path, \
             or share a buffer.backend: postgres between instances",
            path.display()
        ),
        other => anyhow::Error::new(other).context(format!(
            "buffer.path: cannot open the store {}",
            path.display()
        )),
    })
}

/// The pool, with the schema migrated now when the server is there. Migrations run under an
/// advisory lock, so instances starting together apply each version once.
fn connect(pg: &PostgresBuffer) -> Result<PgPool> {
    let options = PgOptions::from(pg);
    let pool = PgPool::new(&options).map_err(|e| anyhow!("buffer: {e}"))?;
    // Pingora's runtimes do not exist yet: check with a pool of our own on a runtime of our
    // own, so no connection outlives the runtime that drives it. The serving pool migrates
    // again (a no-op) on its first call.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start an async runtime")?;
    let check = PgPool::new(&options).map_err(|e| anyhow!("buffer: {e}"))?;
    match runtime.block_on(check.migrate()) {
        Ok(()) => {
            tracing::info!(store = %pool.location(), "buffer: PostgreSQL schema is current");
            Ok(pool)
        }
        // The server refused this user, database or schema: a configuration to fix, not an
        // outage to ride out (a server starting up or out of connections is the latter).
        Err(e @ StoreError::Backend { .. }) if is_configuration_refusal(&e) => Err(anyhow!(
            "buffer.url: the PostgreSQL server refused the buffer's schema setup: {e} (check \
             the user's password and its privileges on the database and buffer.schema)"
        )),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "buffer: PostgreSQL is unreachable at start; forwarding works, buffering and \
                 dedupe start when it answers"
            );
            Ok(pool)
        }
    }
}

/// SQLSTATE classes that no retry will fix: 28 (authorization: password, role), 3D (no such
/// database), 3F (no such schema), 42 (privilege or syntax). Everything else the server answers
/// (57P03 starting up, 53300 too many connections, 40P01 deadlock...) passes with time.
fn is_configuration_refusal(error: &StoreError) -> bool {
    let StoreError::Backend {
        source: Some(source),
        ..
    } = error
    else {
        return false;
    };
    source.code().is_some_and(|code| {
        let class = &code.code()[..2];
        matches!(class, "28" | "3D" | "3F" | "42")
    })
}
