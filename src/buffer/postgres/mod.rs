//! The shared buffer: PostgreSQL, for a fleet of proxy instances.
//!
//! Owns the connection pool ([`PgPool`]: timeouts, redaction of the URL, error mapping,
//! migrations applied once before first use), the tables' layout ([`schema`]) and the store
//! ([`PostgresStore`]). The shared dedupe (`dedupe::PostgresDedupe`) borrows the pool
//! and schema from here; this module knows nothing of dedupe semantics, HTTP or retry policy.
//!
//! Promises kept here, because callers cannot: every call is bounded by `call_timeout` (a
//! stopped or hung PostgreSQL gives a prompt [`StoreError::Unavailable`], never a hang), and
//! the URL (which may hold a password) never reaches an error, a log line or `Debug` output.
//! Reconnecting is the pool's job: a broken connection is dropped and the next call opens a
//! new one, so no backoff loop lives here; the callers' own retry cadence (the redelivery
//! interval, the next request) spaces the attempts.

mod batch;
pub mod liveness;
mod operator;
pub mod schema;
mod store;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;

use super::StoreError;
use crate::config::plain_identifier;
pub use liveness::Heartbeat;
pub use store::{instance_name, PostgresStore};

/// How to reach the shared store.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/db?...` or the key=value form. A secret: never
    /// printed (see [`PgPool::location`] for what operators see).
    pub url: String,
    /// The schema holding the buffer's tables (created if missing); a plain lower-case
    /// identifier. Several fleets can share one database under different schemas.
    pub schema: String,
    /// Connections per instance.
    pub pool_size: usize,
    /// Upper bound of one store call, queueing for a connection and connecting included.
    pub call_timeout: Duration,
}

impl fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl PgOptions {
    /// The defaults for the knobs: schema `notify_proxy`, 8 connections, 5 s per call (well
    /// inside Twilio's 15 s, so the live path can still answer after a failed insert).
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            schema: "notify_proxy".to_owned(),
            pool_size: 8,
            call_timeout: Duration::from_secs(5),
        }
    }
}

impl From<&crate::config::PostgresBuffer> for PgOptions {
    /// The options `buffer:` names (`store_timeout` bounds each call).
    fn from(pg: &crate::config::PostgresBuffer) -> Self {
        PgOptions {
            url: pg.url.clone(),
            schema: pg.schema.clone(),
            pool_size: pg.pool_size.get(),
            call_timeout: pg.store_timeout,
        }
    }
}

/// A pool of connections to the shared store, with the schema migrated before first use.
/// Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct PgPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    pool: Pool,
    schema: String,
    location: String,
    call_timeout: Duration,
    /// Set once the migrations ran. Retried by the next call after a failure, so a proxy that
    /// started while PostgreSQL was down starts using it when it comes back.
    migrated: OnceCell<()>,
}

impl fmt::Debug for PgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPool")
            .field("location", &self.inner.location)
            .field("call_timeout", &self.inner.call_timeout)
            .finish_non_exhaustive()
    }
}

/// A failure inside a call, before the operation and location are attached.
pub(crate) enum Failure {
    Pool(PoolError),
    Pg(tokio_postgres::Error),
    Store(StoreError),
}

impl From<PoolError> for Failure {
    fn from(e: PoolError) -> Self {
        Failure::Pool(e)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// `error: cause: cause...`: tokio-postgres puts the useful part (the server's message, the
/// I/O error) in the source chain, not in its own `Display`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The URL as operators may see it: user, hosts, ports and database, never the password.
fn redacted_location(config: &tokio_postgres::Config, schema: &str) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{} (schema {schema})",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or(""),
    )
}

impl PgPool {
    /// Checks the options and prepares the pool. Opens no connection: the first call connects
    /// and migrates, so a proxy can start while PostgreSQL is down (its live path forwards;
    /// only buffering and dedupe wait for the store). Call [`PgPool::migrate`] to check
    /// at start instead.
    pub fn new(options: &PgOptions) -> Result<Self, StoreError> {
        if !plain_identifier(&options.schema) {
            return Err(StoreError::Config {
                detail: format!(
                    "schema {:?} is not a plain identifier: use lower-case letters, digits and \
                     '_', starting with a letter or '_', at most 63 characters",
                    options.schema
                ),
            });
        }
        if options.pool_size == 0 {
            return Err(StoreError::Config {
                detail: "pool size must be at least 1".to_owned(),
            });
        }
        if options.call_timeout.is_zero() {
            return Err(StoreError::Config {
                detail: "call timeout must be above zero".to_owned(),
            });
        }
        // The parser's messages can quote part of the URL (a password included), so only
        // the fact is reported.
        let mut config =
            tokio_postgres::Config::from_str(&options.url).map_err(|_| StoreError::Config {
                detail: "the PostgreSQL URL does not parse (its text is not shown: it may hold \
                         a password); expected postgres://user:password@host:port/database"
                    .to_owned(),
            })?;
        let limit = options.call_timeout;
        if config.get_connect_timeout().is_none_or(|t| *t > limit) {
            config.connect_timeout(limit);
        }
        // Keepalives find a peer that vanished without a FIN (a dead host, a dropped route)
        // on idle connections; a busy one is bounded by the call timeout below.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("twilio-notify-proxy");
        }
        // The server stops a statement the client gave up on, instead of finishing it for
        // nobody; a lock wait counts as part of the statement.
        let statement_ms = limit.as_millis().max(1);
        let options_text = format!(
            "{} -c statement_timeout={statement_ms} -c idle_in_transaction_session_timeout={}",
            config.get_options().unwrap_or(""),
            statement_ms.saturating_mul(2),
        );
        config.options(options_text.trim_start());
        let location = redacted_location(&config, &options.schema);
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                // `Fast` only checks that the connection is open; a broken one fails its next
                // statement, is dropped by the pool, and the caller's error is prompt.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(limit))
            .create_timeout(Some(limit))
            .recycle_timeout(Some(limit))
            .build()
            .map_err(|e| StoreError::Config {
                detail: format!("cannot build the connection pool: {e}"),
            })?;
        Ok(PgPool {
            inner: Arc::new(PoolInner {
                pool,
                schema: options.schema.clone(),
                location,
                call_timeout: limit,
                migrated: OnceCell::new(),
            }),
        })
    }

    /// Where the store lives, for operators: the URL without its password, and the schema.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// Applies the schema migrations now (once per pool; later calls return at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.call("migrate", async { Ok(()) }).await
    }

    /// Runs `body` bounded by the call timeout, after the migrations, and names the failure.
    pub(crate) async fn call<T>(
        &self,
        operation: &'static str,
        body: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, StoreError> {
        let run = async {
            self.inner
                .migrated
                .get_or_try_init(|| schema::migrate(self))
                .await?;
            body.await
        };
        match tokio::time::timeout(self.inner.call_timeout, run).await {
            Ok(result) => result.map_err(|failure| self.error(operation, failure)),
            Err(_) => Err(StoreError::Unavailable {
                location: self.inner.location.clone(),
                operation,
                detail: format!("no answer within {:?}", self.inner.call_timeout),
                source: None,
            }),
        }
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, Failure> {
        Ok(self.inner.pool.get().await?)
    }

    fn error(&self, operation: &'static str, failure: Failure) -> StoreError {
        let location = self.inner.location.clone();
        let pg = match failure {
            Failure::Store(e) => return e,
            Failure::Pool(PoolError::Backend(e)) | Failure::Pg(e) => e,
            Failure::Pool(other) => {
                return StoreError::Unavailable {
                    location,
                    operation,
                    detail: format!("no connection: {}", chain(&other)),
                    source: None,
                }
            }
        };
        let detail = chain(&pg);
        // An answer from the server is a refusal; anything else (refused connection, broken
        // socket, closed client) means the server was not there to answer.
        if pg.as_db_error().is_some() {
            StoreError::Backend {
                location,
                operation,
                detail,
                source: Some(Arc::new(pg)),
            }
        } else {
            StoreError::Unavailable {
                location,
                operation,
                detail,
                source: Some(Arc::new(pg)),
            }
        }
    }
}

/// `u64` to PostgreSQL `bigint`: times in ms and counts never reach `i64::MAX`, so saturating
/// only matters for sentinels such as `due(u64::MAX)`.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Text PostgreSQL can store: it refuses NUL characters, which a request's fields could carry.
/// Only operator-facing metadata passes here; the request bytes are stored exactly.
pub(crate) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}
