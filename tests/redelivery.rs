//! The redelivery worker, end to end: it removes a message after the handler's final answer
//! (counted by result), waits while the circuit is open, keeps to its concurrency limit,
//! dead-letters a message whose upstream group left the config, and exports the age of the
//! oldest pending message.

mod harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::*;
use twilio_notify_proxy::signature::{sign_json, Algorithm, SigningKey};

/// A 404 (no binding) or another 4xx is the handler's final word: the message is removed, not
/// retried until its TTL, and counted as `no_binding` / `final_other`.
#[test]
fn final_answers_remove_the_message_and_are_counted_by_result() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(503, "down"));
    let proxy = Proxy::start(buffering_spec(
        upstream.addr,
        &dir.path().join("b.redb"),
        "",
    ));
    for (status, result) in [(404, "no_binding"), (401, "final_other")] {
        upstream.set_behaviour(Behaviour::status(503, "down"));
        let raw = twilio_request(&notification());
        buffer_one(&proxy, &raw);
        upstream.set_behaviour(Behaviour::status(status, "final"));
        eventually(result, || proxy.redeliveries(result) == 1.0);
        eventually("removed", || proxy.pending() == 0.0);
        assert_eq!(upstream.requests().last().unwrap(), &as_forwarded(&raw));
        let seen = upstream.request_count();
        // Removed means never sent again: the worker's next passes find nothing to send.
        proxy.wait_passes(3);
        assert_eq!(
            upstream.request_count(),
            seen,
            "{result}: redelivered after a final answer"
        );
    }
    assert_eq!(proxy.redeliveries("delivered"), 0.0);
    assert_eq!(
        proxy.metric(r#"notify_proxy_buffer_messages{table="dead_letter"}"#),
        0.0
    );
}

/// Regression guard for the worker ignoring the circuit: while `handler`'s circuit is open and
/// its probes fail, its buffered message goes out only as those probes (one at a time, 250 ms
/// after opening, then twice the last wait), though the worker is busy (it redelivers the
/// other group's message in the same passes). The age of the waiting message is exported.
#[test]
fn worker_sends_only_probes_while_the_circuit_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let handler = MockUpstream::start(Behaviour::status(503, "down"));
    let other = MockUpstream::start(Behaviour::status(503, "down"));
    let mut spec = buffering_spec(handler.addr, &dir.path().join("b.redb"), "");
    spec.upstream_extra = format!(
        "    circuit_breaker: {{ failure_threshold: 1, open_for: 1h }}\n  other:\n    peers: [{}]\n    circuit_breaker: {{ failure_threshold: 1000 }}",
        other.addr
    );
    spec.route_extra.push_str(
        "\n  - name: second\n    public_url: https://voice.example.com/second\n    upstream: other\n    body: json\n    on_exhausted: buffer\n    retry: { max_attempts: 1 }",
    );
    let proxy = Proxy::start(spec);
    let opened = Instant::now();
    buffer_one(&proxy, &twilio_request(&notification()));
    assert_eq!(
        proxy.metric(r#"notify_proxy_circuit_state{upstream="handler"}"#),
        1.0
    );
    let key = SigningKey::new(Algorithm::HmacSha1, TOKEN.as_bytes());
    let body = notification();
    let (url, sig) = sign_json(&key, "https://voice.example.com/second", body.as_bytes()).unwrap();
    let target = url.strip_prefix("https://voice.example.com").unwrap();
    buffer_one(
        &proxy,
        &request_with(target, &[("X-Twilio-Signature", &sig)], &body),
    );

    other.set_behaviour(Behaviour::status(200, "ok"));
    eventually("the other group's message redelivered", || {
        proxy.metric(r#"notify_proxy_redeliveries_total{result="delivered",route="second"}"#) == 1.0
    });
    eventually("the first probe, 250 ms after opening", || {
        proxy.metric(r#"notify_proxy_circuit_probes_total{result="failed",upstream="handler"}"#)
            >= 1.0
    });
    // Passes run every 50 ms, 20 a second; probes come at 0.25, 0.75, 1.75, 3.75 s...
    std::thread::sleep(Duration::from_millis(600));
    let elapsed = opened.elapsed().as_secs_f64();
    let probes = (handler.request_count() - 1) as f64;
    let at_most = (elapsed / 0.25 + 1.0).log2().floor() + 1.0;
    assert!(
        (1.0..=at_most).contains(&probes),
        "{probes} probes in {elapsed:.2} s (at most {at_most})"
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_circuit_probes_total{result="failed",upstream="handler"}"#),
        probes
    );
    assert_eq!(
        proxy.redeliveries("failed"),
        probes,
        "only probes were attempted"
    );
    assert_eq!(proxy.pending(), 1.0);
    assert_eq!(proxy.attempts("2xx"), 0.0);
    // The message waiting behind the open circuit: its age is exported, and grows.
    eventually("oldest age exported", || {
        let age = proxy.metric("notify_proxy_buffer_oldest_age_seconds");
        (0.2..60.0).contains(&age)
    });
}

/// The ring window: a handler that was down comes back, and although `open_for` is 10 s the
/// backlog reaches it within ~1.5 s (the connect check makes the probe due), with no backoff
/// earned during the outage; a live notification sent after that is forwarded, not buffered.
/// Each buffered delivery is counted inside the ring window.
#[test]
fn a_recovered_handler_gets_the_backlog_within_seconds_whatever_open_for_says() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // The defaults' pace, and a backoff that would show if the outage earned one.
    let mut spec = buffering_spec(
        addr,
        &dir.path().join("b.redb"),
        "  redelivery_interval: 250ms\n  redelivery_backoff: { initial: 5s, max: 10s }\n",
    );
    spec.upstream_extra = "    circuit_breaker: { failure_threshold: 2, open_for: 10s }".into();
    let proxy = Proxy::start(spec);
    // Nothing listens: connects are refused, the circuit opens, every message is buffered.
    for _ in 0..20 {
        buffer_one(&proxy, &twilio_request(&notification()));
    }
    eventually("the circuit opened", || {
        proxy.metric(r#"notify_proxy_circuit_state{upstream="handler"}"#) > 0.0
    });
    // Until the waits between probes have grown to 8 s (0.25, 0.5, 1, 2, 4, then 8): without
    // the connect check the next probe would come ~8 s after the handler is back.
    eventually("five probes failed", || {
        proxy.metric(r#"notify_proxy_circuit_probes_total{result="failed",upstream="handler"}"#)
            >= 5.0
    });
    let handler = MockUpstream::start_on(addr, Behaviour::status(200, "ok"));
    let back = Instant::now();
    eventually("all 20 delivered", || handler.request_count() >= 20);
    let took = back.elapsed();
    assert!(took < Duration::from_millis(1500), "backlog took {took:?}");
    assert_eq!(handler.request_count(), 20, "each once");
    assert_eq!(
        proxy.metric(r#"notify_proxy_circuit_probes_total{result="passed",upstream="handler"}"#),
        1.0
    );
    assert!(
        proxy.metric(
            r#"notify_proxy_circuit_connect_checks_total{result="connected",upstream="handler"}"#
        ) >= 1.0
    );
    // The handler has them; the worker counts each once it read the answer.
    eventually("each delivery counted", || {
        proxy.metric(r#"notify_proxy_buffered_delivery_seconds_count{route="notify"}"#) == 20.0
    });
    assert_eq!(
        proxy.metric(
            r#"notify_proxy_buffered_delivered_total{ring_window="inside",route="notify"}"#
        ),
        20.0
    );
    assert_eq!(
        proxy
            .metric(r#"notify_proxy_buffered_delivered_total{ring_window="after",route="notify"}"#),
        0.0
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_buffered_delivery_seconds_count{route="notify"}"#),
        20.0
    );
    // Live again: forwarded, answered by the handler.
    let r = proxy.send(&twilio_request(&notification()));
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(handler.request_count(), 21);
    eventually("drained", || proxy.pending() == 0.0);
}

/// `redelivery_concurrency: 2`: never more than two redeliveries at the handler at once, and
/// the two slots are used.
#[test]
fn worker_keeps_to_its_concurrency_limit() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(503, "down"));
    let proxy = Proxy::start(buffering_spec(
        upstream.addr,
        &dir.path().join("b.redb"),
        "  redelivery_concurrency: 2",
    ));
    for _ in 0..5 {
        buffer_one(&proxy, &twilio_request(&notification()));
    }
    upstream.set_behaviour(Behaviour::Slow {
        status: 200,
        delay: Duration::from_millis(200),
    });
    eventually("all five redelivered", || {
        proxy.redeliveries("delivered") == 5.0
    });
    assert_eq!(upstream.max_in_flight(), 2);
    assert_eq!(proxy.pending(), 0.0);
    assert_eq!(proxy.metric("notify_proxy_buffer_oldest_age_seconds"), 0.0);
}

/// A buffered message whose upstream group is gone from the config (renamed here) cannot be
/// delivered anywhere: it moves to the dead letters as `orphaned`, counted once.
#[test]
fn message_of_a_removed_upstream_group_is_dead_lettered_as_orphaned() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("b.redb");
    let (_guard, refusing) = refusing_address();
    let mut first = Proxy::start(buffering_spec(refusing, &store, ""));
    buffer_one(&first, &twilio_request(&notification()));
    first.kill();
    let config = std::fs::read_to_string(&first.config_path).unwrap();
    drop(first);

    // The same store under a config whose group is renamed, on new ports.
    let renamed = config
        .replace("  handler:\n", "  renamed:\n")
        .replace("upstream: handler", "upstream: renamed");
    let restarted = Proxy::launch(&Launch::run(), |ports| {
        renamed
            .lines()
            .map(|l| {
                if l.starts_with("  - address: 127.0.0.1:") {
                    format!("  - address: 127.0.0.1:{}", ports.public)
                } else if l.starts_with("  address: 127.0.0.1:") {
                    format!("  address: 127.0.0.1:{}", ports.admin)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    let metric = |sample: &str| restarted.metric(sample);
    eventually("orphaned dead letter", || {
        metric(r#"notify_proxy_dead_lettered_total{reason="orphaned",route="notify"}"#) == 1.0
    });
    assert_eq!(
        metric(r#"notify_proxy_dead_lettered_total{reason="expired",route="notify"}"#),
        0.0
    );
    assert_eq!(
        metric(r#"notify_proxy_buffer_messages{table="dead_letter"}"#),
        1.0
    );
    assert_eq!(
        metric(r#"notify_proxy_buffer_messages{table="pending"}"#),
        0.0
    );
}

/// One rule settles every answer, whoever delivered it (regression: the live path, the worker
/// and `buffer replay` used to disagree on a 501 not in `retry.on_status` and on a 3xx). A 501
/// and a 302 are final everywhere: passed through live, removed by the worker, removed by a
/// replay. A 503 (listed) is retried everywhere: buffered live, kept by the worker and by a
/// replay.
#[test]
fn an_answer_settles_alike_on_the_live_path_in_the_worker_and_in_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("b.redb");
    let upstream = MockUpstream::start(Behaviour::status(503, "down"));
    let mut proxy = Proxy::start(buffering_spec(upstream.addr, &store, ""));

    for (status, live_outcome) in [(501, "upstream_5xx"), (302, "forwarded_other")] {
        // Live: passed through unchanged, not buffered.
        upstream.set_behaviour(Behaviour::status(status, "handler says"));
        let r = proxy.send(&twilio_request(&notification()));
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(proxy.outcomes(live_outcome), 1.0, "{live_outcome}");
        // Worker: a buffered message answered so is removed as final_other.
        upstream.set_behaviour(Behaviour::status(503, "down"));
        buffer_one(&proxy, &twilio_request(&notification()));
        upstream.set_behaviour(Behaviour::status(status, "handler says"));
        eventually("removed by the worker", || proxy.pending() == 0.0);
    }
    assert_eq!(proxy.redeliveries("final_other"), 2.0);

    // Worker: a listed 503 keeps the message pending.
    upstream.set_behaviour(Behaviour::status(503, "down"));
    buffer_one(&proxy, &twilio_request(&notification()));
    eventually("a failed redelivery", || {
        proxy.redeliveries("failed") >= 1.0
    });
    assert_eq!(proxy.pending(), 1.0);
    proxy.kill();

    // Replay: 503 keeps it (exit 1), 501 removes it (exit 0), like the worker.
    let config = proxy.config_path.to_str().unwrap().to_string();
    let replay = || {
        std::process::Command::new(BIN)
            .args(["buffer", "--config", &config, "replay", "--all"])
            .output()
            .unwrap()
    };
    let kept = replay();
    assert_eq!(
        kept.status.code(),
        Some(1),
        "a 503 is retried, so the replay failed"
    );
    upstream.set_behaviour(Behaviour::status(501, "final"));
    let settled = replay();
    assert!(
        settled.status.success(),
        "{}",
        String::from_utf8_lossy(&settled.stderr)
    );
    let listed = std::process::Command::new(BIN)
        .args(["buffer", "--config", &config, "list", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}

/// A backlog larger than one pass (8 × `redelivery_concurrency`) drains pass after pass at the
/// handler's pace, not one pass per `redelivery_interval`: here the interval is an hour, so
/// everything past the first 8 would otherwise wait that long.
#[test]
fn a_backlog_drains_without_waiting_an_interval_between_full_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("b.redb");
    let (held, handler_addr) = refusing_address();
    let mut first = Proxy::start(buffering_spec(handler_addr, &store, ""));
    for _ in 0..30 {
        buffer_one(&first, &twilio_request(&notification()));
    }
    first.kill();
    // Past the longest backoff (100 ms) of the first instance's failed tries: all are due.
    std::thread::sleep(Duration::from_millis(300));
    drop(held);
    let upstream = MockUpstream::start_on(handler_addr, Behaviour::status(200, "ok"));
    let mut spec = buffering_spec(upstream.addr, &store, "  redelivery_concurrency: 1\n");
    spec.top_extra = spec
        .top_extra
        .replace("redelivery_interval: 50ms", "redelivery_interval: 1h");
    let second = Proxy::start(spec);
    eventually("all 30 redelivered", || {
        second.redeliveries("delivered") == 30.0
    });
    assert_eq!(second.pending(), 0.0);
}

/// `buffer.ring_window`: a buffered notification delivered later than this after its arrival
/// counts as `after` (the call had most likely stopped ringing), with its whole wait in the
/// histogram.
#[test]
fn a_delivery_later_than_the_ring_window_counts_as_after() {
    let dir = tempfile::tempdir().unwrap();
    let handler = MockUpstream::start(Behaviour::status(503, "down"));
    // After a failed redelivery the message waits 400 ms: its delivery comes well past 100 ms.
    let spec = buffering_spec(
        handler.addr,
        &dir.path().join("buffer.redb"),
        "  ring_window: 100ms\n  redelivery_backoff: { initial: 400ms, max: 400ms, jitter: 0 }\n",
    );
    let proxy = Proxy::start(spec);
    let raw = twilio_request(&notification());
    buffer_one(&proxy, &raw);
    eventually("a failed redelivery", || {
        proxy.redeliveries("failed") >= 1.0
    });
    handler.set_behaviour(Behaviour::status(200, "ok"));
    eventually("delivered", || proxy.redeliveries("delivered") == 1.0);
    assert_eq!(handler.requests().last(), Some(&as_forwarded(&raw)));
    let ring = |window: &str| {
        proxy.metric(&format!(
            "notify_proxy_buffered_delivered_total{{ring_window=\"{window}\",route=\"notify\"}}"
        ))
    };
    assert_eq!((ring("inside"), ring("after")), (0.0, 1.0));
    assert_eq!(
        proxy.metric(r#"notify_proxy_buffered_delivery_seconds_count{route="notify"}"#),
        1.0
    );
    assert!(
        proxy.metric(r#"notify_proxy_buffered_delivery_seconds_sum{route="notify"}"#) >= 0.4,
        "the wait includes the backoff"
    );
}
