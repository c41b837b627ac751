//! The redelivery worker, end to end: it removes a message after the handler's final answer
//! (counted by result), waits while the circuit is open, keeps to its concurrency limit,
//! dead-letters a message whose upstream group left the config, and exports the age of the
//! oldest pending message.

mod harness;

use std::time::Duration;

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

/// Regression guard for the worker ignoring the circuit: while `handler`'s circuit is open,
/// its buffered message is not sent, though the worker is busy (it redelivers the other
/// group's message in the same passes). The age of the waiting message is exported.
#[test]
fn worker_waits_while_the_circuit_is_open() {
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

    handler.set_behaviour(Behaviour::status(200, "ok"));
    other.set_behaviour(Behaviour::status(200, "ok"));
    eventually("the other group's message redelivered", || {
        proxy.metric(r#"notify_proxy_redeliveries_total{result="delivered",route="second"}"#) == 1.0
    });
    // Passes keep running every 50 ms; let several run that could (wrongly) send the waiting
    // message.
    proxy.wait_passes(5);
    assert_eq!(handler.request_count(), 1, "sent while the circuit is open");
    assert_eq!(proxy.pending(), 1.0);
    assert_eq!(proxy.redeliveries("failed"), 0.0, "skipped, not failed");
    assert_eq!(proxy.attempts("2xx"), 0.0);
    // The message waiting behind the open circuit: its age is exported, and grows.
    eventually("oldest age exported", || {
        let age = proxy.metric("notify_proxy_buffer_oldest_age_seconds");
        (0.2..60.0).contains(&age)
    });
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
