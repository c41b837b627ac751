//! Buffered inserts per second and insert latency, redb against PostgreSQL, at concurrency 1, 16
//! and 64: each insert is the live path's (committed before it returns), through the
//! library's own [`NotificationStore`] implementations.
//!
//! Run: `cargo bench --bench store` (optional: `STORE_BENCH_SECS=3`, `STORE_BENCH_PG_URL=...`,
//! default `postgres://postgres@127.0.0.1:5432/test`; PostgreSQL cases are skipped with a note
//! when it is not reachable). Each PostgreSQL case uses a fresh schema, dropped at the end.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use twilio_notify_proxy::buffer::{
    NewMessage, NotificationStore, PgOptions, PgPool, PostgresStore, RedbStore,
};

const REQUEST: &[u8] = b"POST /twilio/client-notify?bodySHA256=75fd537c4a84b8a2e052171b21fa1c7215c824f6f2b1a2b3fd02d11d0563481d HTTP/1.1\r\nHost: voice.example.com\r\nContent-Type: application/json\r\nX-Twilio-Signature: +PHhAihLyFOT0hloeSv/p/EE2lE=\r\nContent-Length: 2\r\n\r\n{}";

fn message() -> NewMessage {
    support::message("WB0123456789abcdef0123456789abcdef")
}

struct Result {
    inserts: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// `concurrency` tasks insert back to back for `secs`; every latency is kept.
async fn run(store: Arc<dyn NotificationStore>, concurrency: usize, secs: Duration) -> Result {
    let started = Instant::now();
    let stop = started + secs;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let store = store.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < stop {
                let t = Instant::now();
                store
                    .insert(message(), REQUEST.to_vec())
                    .await
                    .expect("insert");
                latencies.push(t.elapsed());
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("bench task"));
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Result {
        inserts: all.len(),
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        max: all[all.len() - 1],
    }
}

fn print(backend: &str, concurrency: usize, r: &Result) {
    println!(
        "{backend:<8} c={concurrency:<3} {:>7} inserts  {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        r.inserts,
        r.per_sec,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.max.as_secs_f64() * 1e3,
    );
}

async fn pg_admin(url: &str, sql: &str) -> std::result::Result<(), String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
    tokio::spawn(connection);
    client.batch_execute(sql).await.map_err(|e| e.to_string())
}

fn main() {
    let secs = Duration::from_secs_f64(
        std::env::var("STORE_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3.0),
    );
    let url = std::env::var("STORE_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "store bench: {} s per case, {}-byte requests",
        secs.as_secs_f64(),
        REQUEST.len()
    );
    runtime.block_on(async {
        for concurrency in [1, 16, 64] {
            let path = dir.path().join(format!("c{concurrency}.redb"));
            let store = Arc::new(RedbStore::open(&path, 100_000_000).expect("redb"));
            print("redb", concurrency, &run(store, concurrency, secs).await);
        }
        if let Err(e) = pg_admin(&url, "SELECT 1").await {
            println!("postgres: skipped, not reachable ({e})");
            return;
        }
        for concurrency in [1, 16, 64] {
            let schema = format!("bench_store_{}_{concurrency}", std::process::id());
            let pool = PgPool::new(&PgOptions {
                schema: schema.clone(),
                ..PgOptions::new(url.clone())
            })
            .expect("pool");
            pool.migrate().await.expect("migrate");
            let store = Arc::new(PostgresStore::new(
                pool,
                100_000_000,
                Duration::from_secs(10),
                "bench",
            ));
            print(
                "postgres",
                concurrency,
                &run(store, concurrency, secs).await,
            );
            if let Err(e) = pg_admin(&url, &format!("DROP SCHEMA {schema} CASCADE")).await {
                println!("  (schema {schema} not dropped: {e})");
            }
        }
    });
}
