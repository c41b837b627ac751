//! Durable buffer: write throughput (each insert is a committed, fsynced redb transaction, as
//! on the live path) and redelivery latency (from the handler coming back to the buffer being
//! drained), measured through the library's own store and worker.
//!
//! Run: `cargo bench --bench buffer` (optional: `BUFFER_BENCH_MESSAGES=2000`).

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use twilio_notify_proxy::buffer::{NewMessage, RedbStore};
use twilio_notify_proxy::config::UpstreamConfig;
use twilio_notify_proxy::delivery::{new_balancer, UpstreamGroup};
use twilio_notify_proxy::metrics::Metrics;
use twilio_notify_proxy::policy::{Backoff, RetryPolicy};
use twilio_notify_proxy::redelivery::{Redeliverer, RouteRedelivery};

const REQUEST: &[u8] = b"POST /twilio/client-notify?bodySHA256=75fd537c4a84b8a2e052171b21fa1c7215c824f6f2b1a2b3fd02d11d0563481d HTTP/1.1\r\nHost: voice.example.com\r\nContent-Type: application/json\r\nX-Twilio-Signature: +PHhAihLyFOT0hloeSv/p/EE2lE=\r\nContent-Length: 2\r\n\r\n{}";

fn message() -> NewMessage {
    support::message("WB0123456789abcdef0123456789abcdef")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A handler that answers every request 200 and counts them.
async fn handler(listener: tokio::net::TcpListener, count: Arc<AtomicUsize>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let count = count.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut have = 0;
            loop {
                match conn.read(&mut buf[have..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => have += n,
                }
                // Requests here are fixed-size: answer each complete one.
                while have >= REQUEST.len() {
                    buf.copy_within(REQUEST.len()..have, 0);
                    have -= REQUEST.len();
                    count.fetch_add(1, Ordering::Relaxed);
                    if conn
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
}

fn main() {
    let n: usize = std::env::var("BUFFER_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    println!(
        "buffer bench: {n} messages of {} bytes, store in {}",
        REQUEST.len(),
        dir.path().display()
    );

    // 1. Write throughput: sequential fsynced inserts, 3 runs, median.
    let mut rates = Vec::new();
    for run in 0..3 {
        let store = RedbStore::open(&dir.path().join(format!("w{run}.redb")), 10_000_000).unwrap();
        let started = Instant::now();
        for _ in 0..n {
            store.blocking_insert(&message(), REQUEST).unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        rates.push(n as f64 / secs);
        println!(
            "  write run {run}: {:.0} inserts/s ({:.3} ms each)",
            n as f64 / secs,
            secs * 1000.0 / n as f64
        );
    }
    println!(
        "write throughput (median of 3): {:.0} fsynced inserts/s",
        median(rates)
    );

    // 2. Redelivery latency: n messages waiting, the handler comes up, time until drained.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut drains = Vec::new();
    for run in 0..3 {
        let store = Arc::new(
            RedbStore::open(&dir.path().join(format!("r{run}.redb")), 10_000_000).unwrap(),
        );
        for _ in 0..n {
            store.blocking_insert(&message(), REQUEST).unwrap();
        }
        let elapsed = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let count = Arc::new(AtomicUsize::new(0));
            tokio::spawn(handler(listener, count.clone()));
            let config = UpstreamConfig {
                name: "handler".into(),
                peers: vec![addr],
                resolved: vec![twilio_notify_proxy::config::ResolvedPeer {
                    spec: twilio_notify_proxy::config::PeerSpec::Addr(addr),
                    addrs: vec![addr],
                }],
                resolve_interval: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(1),
                response_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(30),
                pool_size: std::num::NonZeroUsize::new(64).unwrap(),
                health_check_interval: None,
                breaker_threshold: std::num::NonZeroU32::new(5).unwrap(),
                breaker_open_for: Duration::from_secs(10),
            };
            let metrics = Metrics::new();
            let (lb, membership) = new_balancer(&config).unwrap();
            let group = Arc::new(UpstreamGroup::new(
                config.clone(),
                Arc::new(lb),
                membership,
                metrics.upstream("handler"),
            ));
            let worker = Redeliverer::new(
                store.clone() as Arc<dyn twilio_notify_proxy::buffer::NotificationStore>,
                HashMap::from([("handler".to_string(), group)]),
                HashMap::from([(
                    "notify".to_string(),
                    RouteRedelivery {
                        policy: RetryPolicy::default(),
                        metrics: metrics.route("notify"),
                    },
                )]),
                Backoff::try_new(Duration::from_millis(500), Duration::from_secs(5), 0.5).unwrap(),
                Duration::from_millis(50),
                8,
                metrics.store(),
            );
            let started = Instant::now();
            while store.blocking_stats().unwrap().pending > 0 {
                worker.pass().await.unwrap();
            }
            assert_eq!(count.load(Ordering::Relaxed), n);
            started.elapsed()
        });
        println!(
            "  drain run {run}: {n} messages in {:.3} s ({:.0} msg/s)",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64()
        );
        drains.push(elapsed.as_secs_f64());
    }
    let d = median(drains);
    println!("redelivery drain (median of 3): {n} messages in {d:.3} s = {:.0} msg/s, {:.2} ms per message", n as f64 / d, d * 1000.0 / n as f64);
}
