//! Unit tests of the redelivery worker against a real store (in a temp dir) and a tiny
//! in-process handler on 127.0.0.1, with an injected clock.

use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use std::time::Instant;

use crate::buffer::{BufferedMessage, NewMessage, RedbStore};
use crate::clock::ManualClock;
use crate::config::UpstreamConfig;
use crate::delivery::new_balancer;
use crate::metrics::Metrics;

const NOW: u64 = 10_000_000;

/// A handler that answers 200 after `delay` (forever with `None`), counting requests.
async fn handler(delay: Option<Duration>) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                count.fetch_add(1, Ordering::SeqCst);
                match delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, seen)
}

fn group(peer: std::net::SocketAddr, response_timeout: Duration) -> Arc<UpstreamGroup> {
    let config = UpstreamConfig {
        name: "handler".into(),
        peers: vec![peer],
        resolved: vec![crate::config::ResolvedPeer {
            spec: crate::config::PeerSpec::Addr(peer),
            addrs: vec![peer],
        }],
        resolve_interval: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(1),
        response_timeout,
        idle_timeout: Duration::from_secs(1),
        pool_size: NonZeroUsize::new(4).unwrap(),
        health_check_interval: None,
        breaker_threshold: NonZeroU32::new(100).unwrap(),
        breaker_open_for: Duration::from_secs(10),
    };
    let (lb, membership) = new_balancer(&config).unwrap();
    Arc::new(UpstreamGroup::new(
        config,
        Arc::new(lb),
        membership,
        Metrics::new().upstream("handler"),
    ))
}

fn message(next_attempt_at_ms: u64) -> NewMessage {
    NewMessage {
        route: "notify".into(),
        upstream: "handler".into(),
        received_at_ms: NOW - 1_000,
        expires_at_ms: NOW + 60_000,
        attempts: 1,
        next_attempt_at_ms,
        last_error: "refused".into(),
        message_id: None,
        call_sid: None,
    }
}

fn worker(store: &RedbStore, group: Arc<UpstreamGroup>, clock: Arc<ManualClock>) -> Redeliverer {
    let metrics = Metrics::new();
    let routes = HashMap::from([(
        "notify".to_string(),
        RouteRedelivery {
            policy: RetryPolicy::default(),
            metrics: metrics.route("notify"),
        },
    )]);
    Redeliverer::new(
        Arc::new(store.clone()),
        HashMap::from([("handler".to_string(), group)]),
        routes,
        Backoff::try_new(Duration::from_secs(1), Duration::from_secs(30), 0.0).unwrap(),
        Duration::from_secs(1),
        1,
        metrics.store(),
    )
    .with_clock(clock)
}

const REQUEST: &[u8] = b"POST /notify HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}";

/// Regression (issue 12, item 10): after the clock stepped back an hour, a schedule written
/// before lies an hour ahead; it was not due until the clock caught up.
#[tokio::test]
async fn a_schedule_left_far_ahead_by_a_clock_step_back_is_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("b.redb"), 100).unwrap();
    store
        .blocking_insert(&message(NOW + 3_600_000), REQUEST)
        .unwrap();
    let (peer, seen) = handler(Some(Duration::ZERO)).await;
    let clock = Arc::new(ManualClock::at(NOW));
    let summary = worker(&store, group(peer, Duration::from_secs(2)), clock)
        .pass()
        .await
        .unwrap();
    assert_eq!(summary.delivered, 1);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(store.blocking_stats().unwrap().pending, 0);
}

/// Expiry follows the injected clock, not the system's.
#[tokio::test]
async fn expiry_follows_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("b.redb"), 100).unwrap();
    store.blocking_insert(&message(NOW), REQUEST).unwrap();
    let (peer, seen) = handler(Some(Duration::ZERO)).await;
    let clock = Arc::new(ManualClock::at(NOW + 60_000));
    let summary = worker(&store, group(peer, Duration::from_secs(2)), clock)
        .pass()
        .await
        .unwrap();
    assert_eq!(summary.expired, 1);
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

/// Regression (issue 12, item 11): a pass ran every due message even after shutdown began
/// (8 rounds x response_timeout), past the shutdown budget.
#[tokio::test]
async fn shutdown_stops_a_pass_between_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("b.redb"), 100).unwrap();
    for _ in 0..3 {
        store.blocking_insert(&message(NOW), REQUEST).unwrap();
    }
    let (peer, seen) = handler(Some(Duration::from_millis(100))).await;
    let clock = Arc::new(ManualClock::at(NOW));
    let worker = worker(&store, group(peer, Duration::from_secs(2)), clock);
    // Shutdown begins once the first message is on its way.
    let stopping = AtomicBool::new(false);
    // False before the first message (so it starts), true from then on.
    let stop = || stopping.swap(true, Ordering::SeqCst);
    let summary = worker.pass_until(&stop).await.unwrap();
    assert_eq!(summary.delivered, 1, "{summary:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(store.blocking_stats().unwrap().pending, 2, "the rest wait");
}

/// Regression (issue 12, item 11): an attempt under way at shutdown could last a whole
/// response_timeout, longer than graceful_shutdown_timeout; now it ends within the budget
/// and the message stays pending (rescheduled), never lost.
#[tokio::test]
async fn an_attempt_ends_within_the_shutdown_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("b.redb"), 100).unwrap();
    store.blocking_insert(&message(NOW), REQUEST).unwrap();
    let (peer, _seen) = handler(None).await;
    let clock = Arc::new(ManualClock::at(NOW));
    let worker = worker(&store, group(peer, Duration::from_secs(30)), clock)
        .with_shutdown_budget(Duration::from_millis(300));
    let started = Instant::now();
    let summary = worker.pass().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(summary.failed, 1);
    assert_eq!(store.blocking_stats().unwrap().pending, 1);
}

/// Regression (issue 12, item 13): evictions from the capped dead letter table are counted.
#[tokio::test]
async fn dead_letters_beyond_the_cap_are_evicted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("b.redb"), 100)
        .unwrap()
        .with_max_dead_letters(1);
    for _ in 0..3 {
        store.blocking_insert(&message(NOW), REQUEST).unwrap();
    }
    let (peer, _) = handler(Some(Duration::ZERO)).await;
    let clock = Arc::new(ManualClock::at(NOW + 60_000));
    let worker = worker(&store, group(peer, Duration::from_secs(2)), clock);
    let summary = worker.pass().await.unwrap();
    assert_eq!(summary.expired, 3);
    assert_eq!(worker.inner.store_metrics.dead_letters_evicted.get(), 2);
    assert_eq!(store.blocking_stats().unwrap().dead, 1);
}

/// From main: the worker survives a store that panics or fails.
mod flaky {
    use super::*;

    use crate::buffer::fixtures::{Script, Scripted};

    /// A store whose first `due` panics and whose second fails; after that it is empty.
    #[derive(Debug, Default)]
    struct FlakyStore {
        due_calls: AtomicUsize,
    }

    #[async_trait]
    impl Script for FlakyStore {
        async fn due(&self) -> Result<Vec<BufferedMessage>, StoreError> {
            match self.due_calls.fetch_add(1, Ordering::SeqCst) {
                0 => panic!("a bug in a store backend"),
                1 => Err(StoreError::Aborted { operation: "due" }),
                _ => Ok(Vec::new()),
            }
        }
    }

    #[tokio::test]
    async fn the_worker_survives_a_panicking_and_a_failing_store_read() {
        let metrics = Metrics::new();
        let worker = Redeliverer::new(
            Arc::new(Scripted(FlakyStore::default())),
            HashMap::new(),
            HashMap::new(),
            Backoff::try_new(Duration::from_millis(10), Duration::from_millis(20), 0.0).unwrap(),
            Duration::from_millis(10),
            2,
            metrics.store(),
        );
        assert!(
            worker.pass().await.is_err(),
            "the panic is an error of this pass"
        );
        assert!(worker.pass().await.is_err(), "so is a failed read");
        assert_eq!(worker.pass().await.unwrap(), PassSummary::default());
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains(r#"notify_proxy_buffer_store_errors_total{operation="due"} 1"#),
            "the panic is counted: {text}"
        );
    }
}
