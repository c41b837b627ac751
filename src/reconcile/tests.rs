use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::SteadyClock;
use crate::metrics::Metrics;
use crate::twilio_errors::{Channel, ErrorEvent, Item};

fn event(sid: &str, code: u32, call: Option<&str>) -> Item {
    Item::Error(ErrorEvent {
        sid: sid.into(),
        account_sid: "AC1".into(),
        code,
        call_sid: call.map(Into::into),
        called_url: Some("https://voice.example.com/n".into()),
        status_seen: Some(502),
        channel: Channel::Debugger,
    })
}

fn answer(status: u16) -> Answer<'static> {
    Answer {
        route: "notify",
        outcome: "upstream_5xx",
        reason: None,
        status,
        answered_at_ms: 1,
        request_id: crate::logging::RequestId::for_test(1),
        verified: true,
    }
}

fn sample(metrics: &Metrics, name: &str) -> f64 {
    let text = String::from_utf8(metrics.render()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

fn reconciler(metrics: &Metrics) -> (Reconciler, ReconcileWorker) {
    let ledger = Arc::new(MemoryLedger::new(
        100,
        Duration::from_secs(600),
        Arc::new(SteadyClock::new()),
        "test",
    ));
    let served: ServedUrls = Arc::new(|| {
        vec![crate::twilio_errors::ServedUrl::Hosts {
            hosts: vec!["voice.example.com".into()],
            path: "/n".into(),
        }]
    });
    Reconciler::new(ledger, metrics.twilio_errors(), served)
}

#[tokio::test]
async fn ignored_events_count_at_once_and_a_full_queue_drops_the_rest() {
    let metrics = Metrics::new();
    let (reconciler, _worker) = reconciler(&metrics);
    assert_eq!(reconciler.take(vec![Item::Ignored, Item::Ignored], "r"), 0);
    assert_eq!(
        sample(
            &metrics,
            "notify_proxy_twilio_events_total{result=\"ignored\"}"
        ),
        2.0
    );
    // The worker is not running: the queue holds QUEUE events, the next is dropped.
    let items: Vec<Item> = (0..QUEUE)
        .map(|i| event(&format!("NO{i}"), 11200, None))
        .collect();
    assert_eq!(reconciler.take(items, "r"), QUEUE);
    let dropped = "notify_proxy_twilio_events_total{result=\"dropped\"}";
    assert_eq!(
        sample(&metrics, dropped),
        0.0,
        "at the bound nothing is dropped"
    );
    reconciler.take(vec![event("NOx", 11200, None)], "r");
    assert_eq!(sample(&metrics, dropped), 1.0, "one past it is");
}

#[tokio::test(start_paused = true)]
async fn the_worker_counts_once_and_reconciles_a_13807_after_its_wait() {
    let metrics = Metrics::new();
    let (reconciler, worker) = reconciler(&metrics);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(async move { worker.start(shutdown).await });

    reconciler.record("CA1", &answer(502));
    reconciler.take(vec![event("NO1", 13807, Some("CA1"))], "r");
    reconciler.take(vec![event("NO1", 13807, Some("CA1"))], "r");
    reconciler.take(vec![event("NO2", 13807, Some("CA2"))], "r");
    let seen = |s: &str| {
        sample(
            &metrics,
            &format!("notify_proxy_twilio_13807_total{{seen=\"{s}\"}}"),
        )
    };
    // Counted at once, reconciled only after RECONCILE_AFTER.
    tokio::time::sleep(RECONCILE_AFTER - Duration::from_millis(10)).await;
    assert_eq!(
        sample(
            &metrics,
            "notify_proxy_twilio_errors_total{error_code=\"13807\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "notify_proxy_twilio_events_total{result=\"duplicate\"}"
        ),
        1.0
    );
    assert_eq!(
        seen("answered_error") + seen("not_seen"),
        0.0,
        "not before the wait"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(seen("answered_error"), 1.0);
    assert_eq!(seen("not_seen"), 1.0);
    assert_eq!(
        sample(&metrics, "notify_proxy_twilio_13807_unknown_url_total"),
        0.0
    );

    // A 13807 still waiting at shutdown is reconciled then, without waiting.
    reconciler.take(vec![event("NO3", 13807, None)], "r");
    tokio::time::sleep(Duration::from_millis(1)).await;
    stop.send(true).unwrap();
    running.await.unwrap();
    assert_eq!(seen("unknown"), 1.0);
}
