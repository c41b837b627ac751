//! The shared store's tables and their versioned migrations.
//!
//! Owns the layout and how it changes: numbered migrations, applied in order at first use, each
//! recorded in `schema_migrations`, all in one transaction under an advisory lock, so instances
//! starting together apply each migration once and none sees a half-built schema. A migration,
//! once released, is never edited; a change is a new migration. The store's and dedupe's SQL
//! name these tables; nothing here runs anything else.
//!
//! Layout (in the configured schema):
//! - `message_ids`: the sequence both message tables draw from, so an id is never reused and
//!   a message keeps its id when it moves between tables.
//! - `pending`: messages waiting for redelivery, with the lease (`lease_until`, `claimed_by`)
//!   of the instance redelivering one now.
//! - `dead_letter`: messages given up on, with the reason.
//! - `dedupe`: in-flight and settled claims by fingerprint, each with an expiry.
//! - `instances`: each running instance's heartbeat; a claim in `pending` lives while its
//!   owner's is fresh.
//! - `call_answers`: what each instance answered on a notification route, by call, and
//!   `twilio_events`: the SIDs of Twilio's error events counted (both for reconciling).

use super::{Failure, PgPool};

/// `(version, name, SQL)`; `{schema}` stands for the configured schema.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "buffer tables",
        "CREATE SEQUENCE {schema}.message_ids;
         CREATE TABLE {schema}.pending (
             id bigint PRIMARY KEY,
             route text NOT NULL,
             upstream text NOT NULL,
             received_at_ms bigint NOT NULL,
             expires_at_ms bigint NOT NULL,
             attempts bigint NOT NULL,
             next_attempt_at_ms bigint NOT NULL,
             last_error text NOT NULL,
             message_id text,
             call_sid text,
             request bytea NOT NULL,
             lease_until timestamptz,
             claimed_by text
         );
         CREATE INDEX pending_due ON {schema}.pending (next_attempt_at_ms, id);
         CREATE TABLE {schema}.dead_letter (
             id bigint PRIMARY KEY,
             route text NOT NULL,
             upstream text NOT NULL,
             received_at_ms bigint NOT NULL,
             expires_at_ms bigint NOT NULL,
             attempts bigint NOT NULL,
             next_attempt_at_ms bigint NOT NULL,
             last_error text NOT NULL,
             message_id text,
             call_sid text,
             request bytea NOT NULL,
             dead_reason text NOT NULL,
             dead_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE INDEX dead_letter_received ON {schema}.dead_letter (received_at_ms);",
    ),
    (
        2,
        "dedupe claims",
        // state: 0 in flight, 1 delivered, 2 buffered.
        "CREATE TABLE {schema}.dedupe (
             fingerprint bytea PRIMARY KEY,
             state smallint NOT NULL,
             expires_at timestamptz NOT NULL
         );
         CREATE INDEX dedupe_expires ON {schema}.dedupe (expires_at);",
    ),
    (
        3,
        "instance heartbeats",
        // A claim lives while its owner renews heartbeat_at (buffer/postgres/liveness.rs).
        "CREATE TABLE {schema}.instances (
             name text PRIMARY KEY,
             heartbeat_at timestamptz NOT NULL
         );",
    ),
    (
        4,
        "answers and twilio events",
        // What each instance answered for a call, and the error events counted, so a
        // Twilio error event landing on any instance is reconciled and counted once
        // (reconcile/postgres.rs). Times are the proxy's unix ms.
        "CREATE TABLE {schema}.call_answers (
             call_sid text NOT NULL,
             request_id text NOT NULL,
             route text NOT NULL,
             outcome text NOT NULL,
             reason text,
             status integer NOT NULL,
             answered_at_ms bigint NOT NULL,
             instance text NOT NULL,
             verified boolean NOT NULL,
             PRIMARY KEY (call_sid, request_id)
         );
         CREATE INDEX call_answers_answered ON {schema}.call_answers (answered_at_ms);
         CREATE TABLE {schema}.twilio_events (
             sid text PRIMARY KEY,
             seen_at_ms bigint NOT NULL
         );
         CREATE INDEX twilio_events_seen ON {schema}.twilio_events (seen_at_ms);",
    ),
];

/// The newest migration this build knows.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Applies the missing migrations. Instances starting together queue on the advisory lock;
/// the first applies, the others then find every version recorded and change nothing.
pub(super) async fn migrate(pool: &PgPool) -> Result<(), Failure> {
    let schema = pool.schema();
    let mut client = pool.client().await?;
    let txn = client.transaction().await?;
    // Keyed by schema, so fleets in different schemas of one database do not wait on each
    // other. Released at commit or rollback, even if this process dies.
    txn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('twilio-notify-proxy migrate ' || $1, 0))",
        &[&schema],
    )
    .await?;
    // CREATE SCHEMA IF NOT EXISTS still needs the CREATE privilege on the database; a role
    // given an existing schema need not have it.
    let exists = txn
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await?
        .is_some();
    if !exists {
        txn.batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await?;
    }
    txn.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )"
    ))
    .await?;
    let applied: Vec<i32> = txn
        .query(
            &format!("SELECT version FROM {schema}.schema_migrations"),
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        txn.batch_execute(&sql.replace("{schema}", schema)).await?;
        txn.execute(
            &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[version, name],
        )
        .await?;
        tracing::info!(schema, version, name, "buffer store: migration applied");
    }
    if let Some(newer) = applied.iter().filter(|v| **v > LATEST).max() {
        // A newer build migrated this schema (a rolling deploy, or a rollback in progress).
        // Migrations only add, so this build keeps working; say so once.
        tracing::warn!(
            schema,
            version = newer,
            known = LATEST,
            "buffer store: schema is newer than this build"
        );
    }
    txn.commit().await?;
    Ok(())
}
