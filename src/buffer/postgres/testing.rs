//! Test support: a throw-away schema in the test PostgreSQL.
//!
//! Owns how tests reach PostgreSQL and clean up after themselves: each test gets its own
//! schema, dropped when the guard drops (panics included). Without PostgreSQL a test skips
//! with a note, except under CI (`CI` set), where it fails: a suite that silently skips its
//! store tests would pass with the store broken.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{PgOptions, PgPool};

/// The development and CI database (trust auth); `TEST_POSTGRES_URL` overrides it.
pub(crate) fn url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of its own for one test.
pub(crate) struct TestSchema {
    pub(crate) name: String,
}

impl TestSchema {
    /// `None` (with a printed note) when PostgreSQL is not reachable, unless under CI.
    pub(crate) async fn new(test: &str) -> Option<TestSchema> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let url = url();
        let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
        match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok((_client, connection))) => drop(connection),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => super::chain(&e),
                    _ => "no answer within 5s".to_owned(),
                };
                if std::env::var_os("CI").is_some() {
                    panic!("{test}: PostgreSQL at 127.0.0.1:5432 is required under CI: {why}");
                }
                eprintln!("{test}: skipped, PostgreSQL is not reachable ({why})");
                return None;
            }
        }
        let name = format!(
            "t_{}_{}_{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(30)
                .collect::<String>()
                .to_ascii_lowercase(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Some(TestSchema { name })
    }

    pub(crate) fn options(&self) -> PgOptions {
        PgOptions {
            url: url(),
            schema: self.name.clone(),
            pool_size: 4,
            call_timeout: Duration::from_secs(5),
        }
    }

    pub(crate) fn pool(&self) -> PgPool {
        PgPool::new(&self.options()).expect("test options are valid")
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its
        // own runtime can.
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(connection);
                client.batch_execute(&sql).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("test schema {} was not dropped", self.name);
        }
    }
}
