//! End-to-end: what happens when the handler fails. Retries within the deadline, the `fail`
//! and `buffer` exhaustion policies, redelivery, TTL expiry to the dead letter table,
//! duplicates, the circuit breaker, and a proxy killed with SIGKILL while holding buffered
//! notifications.

mod harness;

use std::time::Duration;

use harness::*;

#[test]
fn two_503s_then_200_is_one_200_after_three_attempts() {
    let upstream = MockUpstream::start(Behaviour::Statuses(vec![503, 503, 200]));
    let proxy = Proxy::start(ProxySpec::new(upstream.addr));
    let raw = twilio_request(&notification());
    let resp = proxy.send(&raw);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let received = upstream.requests();
    assert_eq!(received.len(), 3);
    // Every attempt carried the identical request, signature header included.
    for r in &received {
        assert_eq!(r, &as_forwarded(&raw));
    }
    assert_eq!(
        proxy.metric(r#"notify_proxy_retries_total{route="notify"}"#),
        2.0
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_upstream_attempts_total{result="5xx",upstream="handler"}"#),
        2.0
    );
    assert_eq!(proxy.outcomes("forwarded_2xx"), 1.0);
}

#[test]
fn always_500_with_fail_policy_is_502_within_the_deadline() {
    let upstream = MockUpstream::start(Behaviour::status(500, "boom"));
    let mut spec = ProxySpec::new(upstream.addr);
    spec.route_extra =
        "    retry: { max_attempts: 10, deadline: 2s, backoff: { initial: 300ms, max: 2s, jitter: 0 } }"
            .into();
    let proxy = Proxy::start(spec);
    let resp = proxy.send(&twilio_request(&notification()));
    assert_eq!((resp.status, resp.reason().as_str()), (502, "upstream_5xx"));
    assert!(
        resp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("server error"),
        "{}",
        resp.text()
    );
    // The deadline, not max_attempts, ended it: attempts at 0, 0.3 and 0.9 s; the next would
    // start at 2.1 s, past the 2 s deadline. The gaps leave over a second of scheduling slack
    // either way, so the count does not depend on how busy the machine is.
    assert_eq!(upstream.request_count(), 3);
    assert_eq!(proxy.outcomes("upstream_5xx"), 1.0);
}

#[test]
fn buffered_notification_reaches_the_recovered_handler_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(500, "down"));
    let proxy = Proxy::start(buffering_spec(
        upstream.addr,
        &dir.path().join("buffer.redb"),
        "",
    ));
    let raw = twilio_request(&notification());
    let resp = proxy.send(&raw);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["buffered"], true);
    assert_eq!(proxy.outcomes("buffered"), 1.0);

    upstream.set_behaviour(Behaviour::status(200, "ok"));
    eventually("redelivery", || {
        proxy.metric(r#"notify_proxy_redeliveries_total{result="delivered",route="notify"}"#) == 1.0
    });
    let received = upstream.requests();
    assert_eq!(
        received.last().unwrap(),
        &as_forwarded(&raw),
        "the handler got the exact original request"
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_buffer_messages{table="pending"}"#),
        0.0
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_buffer_messages{table="dead_letter"}"#),
        0.0
    );
}

#[test]
fn expired_notification_moves_to_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(503, "down"));
    let mut spec = buffering_spec(upstream.addr, &dir.path().join("buffer.redb"), "");
    // Long enough for many 50 ms passes however slow the machine: the "failed" count below
    // needs at least one redelivery attempt before the TTL passes.
    spec.route_extra.push_str("\n    buffer_ttl: 2s");
    let proxy = Proxy::start(spec);
    buffer_one(&proxy, &twilio_request(&notification()));
    eventually("dead letter", || {
        proxy.metric(r#"notify_proxy_dead_lettered_total{reason="expired",route="notify"}"#) == 1.0
    });
    assert_eq!(
        proxy.metric(r#"notify_proxy_buffer_messages{table="dead_letter"}"#),
        1.0
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_buffer_messages{table="pending"}"#),
        0.0
    );
    assert!(
        proxy.metric(r#"notify_proxy_redeliveries_total{result="failed",route="notify"}"#) >= 1.0
    );
}

#[test]
fn duplicates_are_answered_without_forwarding_or_storing_twice() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = Proxy::start(ProxySpec::new(upstream.addr));
    let body = notification();
    let (target, sig) = sign(&body, TOKEN);
    let token = ("I-Twilio-Idempotency-Token", "dup-token-1");
    let raw = request_with(&target, &[("X-Twilio-Signature", &sig), token], &body);
    assert_delivered(&proxy, &upstream, &raw, 200, "ok");
    let again = proxy.send(&raw);
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(
        upstream.request_count(),
        1,
        "the duplicate was not forwarded"
    );
    assert_eq!(proxy.outcomes("duplicate"), 1.0);

    // A duplicate of a buffered notification is answered as buffered, and not stored again.
    let dir = tempfile::tempdir().unwrap();
    let down = MockUpstream::start(Behaviour::status(503, "down"));
    let proxy = Proxy::start(buffering_spec(
        down.addr,
        &dir.path().join("buffer.redb"),
        "  redelivery_interval: 1h\n",
    ));
    let raw = request_with(
        &target,
        &[
            ("X-Twilio-Signature", &sig),
            ("I-Twilio-Idempotency-Token", "dup-token-2"),
        ],
        &body,
    );
    assert_eq!(proxy.send(&raw).json()["buffered"], true);
    let again = proxy.send(&raw);
    assert_eq!(
        (again.status, again.json()["original"].as_str()),
        (200, Some("buffered"))
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_buffer_messages{table="pending"}"#),
        1.0
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_deduplicated_total{original="buffered",route="notify"}"#),
        1.0
    );
}

#[test]
fn open_circuit_skips_attempts_and_readiness_reports_it() {
    let (_guard, refusing) = refusing_address();
    let mut spec = ProxySpec::new(refusing);
    spec.upstream_extra = "    circuit_breaker: { failure_threshold: 2, open_for: 1h }".into();
    spec.route_extra =
        "    retry: { max_attempts: 5, backoff: { initial: 10ms, max: 20ms } }".into();
    let proxy = Proxy::start(spec);
    let resp = proxy.send(&twilio_request(&notification()));
    assert_refused(&resp, 502, "upstream_unreachable");
    let attempts = || {
        proxy.metric(
            r#"notify_proxy_upstream_attempts_total{result="connect_error",upstream="handler"}"#,
        )
    };
    assert_eq!(
        attempts(),
        2.0,
        "the circuit opened after 2 failures and stopped the retries"
    );

    let resp = proxy.send(&twilio_request(&notification()));
    assert_eq!(
        (resp.status, resp.reason().as_str()),
        (503, "upstream_unreachable")
    );
    assert!(resp.json()["detail"]
        .as_str()
        .unwrap()
        .contains("circuit open"));
    assert_eq!(attempts(), 2.0, "no attempt while the circuit is open");
    assert_eq!(
        proxy.metric(r#"notify_proxy_circuit_state{upstream="handler"}"#),
        1.0
    );
    let ready = http_get(proxy.admin, "/readyz").unwrap();
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["upstreams"]["handler"]["circuit"], "open");

    // 250 ms after opening the first probe is due: half-open (2) until one is let through.
    eventually("the circuit half-open once its first probe is due", || {
        proxy.metric(r#"notify_proxy_circuit_state{upstream="handler"}"#) == 2.0
    });
    let ready = http_get(proxy.admin, "/readyz").unwrap().json();
    assert_eq!(ready["upstreams"]["handler"]["circuit"], "half_open");
}

#[test]
fn retry_fails_over_to_the_other_peer() {
    let bad = MockUpstream::start(Behaviour::status(503, "bad"));
    let good = MockUpstream::start(Behaviour::status(200, "good"));
    let mut spec = ProxySpec::new(bad.addr);
    spec.upstream_peers = vec![bad.addr, good.addr];
    spec.upstream_extra = "    circuit_breaker: { failure_threshold: 1000 }".into();
    let proxy = Proxy::start(spec);
    for i in 0..6 {
        let bad_before = bad.request_count();
        let resp = proxy.send(&twilio_request(&notification()));
        assert_eq!((resp.status, resp.text().as_str()), (200, "good"));
        assert!(
            bad.request_count() - bad_before <= 1,
            "request {i}: the bad peer is never tried twice for one request"
        );
        assert_eq!(good.request_count(), i + 1);
    }
    // Round-robin started some requests on the bad peer: the failover above was exercised.
    assert!(bad.request_count() >= 1);
}

#[test]
fn full_store_answers_503_and_never_claims_the_notification() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(503, "down"));
    let spec = buffering_spec(
        upstream.addr,
        &dir.path().join("buffer.redb"),
        "  max_messages: 1\n",
    );
    let proxy = Proxy::start(spec);
    buffer_one(&proxy, &twilio_request(&notification()));
    let resp = proxy.send(&twilio_request(&notification()));
    assert_refused(&resp, 503, "buffer_failed");
    assert_eq!(proxy.outcomes("buffer_failed"), 1.0);
    assert_eq!(proxy.outcomes("buffered"), 1.0);
    let ready = http_get(proxy.admin, "/readyz").unwrap().json();
    assert_eq!(
        (
            ready["buffer"]["pending"].as_u64(),
            ready["buffer"]["max_messages"].as_u64()
        ),
        (Some(1), Some(1))
    );
}

#[test]
fn readiness_needs_a_way_to_deliver_or_room_to_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let (_guard, refusing) = refusing_address();
    let mut spec = buffering_spec(
        refusing,
        &dir.path().join("buffer.redb"),
        "  max_messages: 1\n",
    );
    spec.upstream_extra = "    circuit_breaker: { failure_threshold: 1, open_for: 1h }".into();
    let proxy = Proxy::start(spec);
    // Nothing failed yet (and the buffer has room anyway): ready.
    assert_eq!(http_get(proxy.admin, "/readyz").unwrap().status, 200);
    // One failure opens the circuit, and its notification fills the buffer: nothing can be taken.
    assert_eq!(
        proxy.send(&twilio_request(&notification())).json()["buffered"],
        true
    );
    let ready = http_get(proxy.admin, "/readyz").unwrap();
    assert_eq!(
        ready.status,
        503,
        "circuit open and the buffer full: {}",
        ready.text()
    );
    assert_eq!(ready.json()["upstreams"]["handler"]["circuit"], "open");
}

#[test]
fn sigkill_with_buffered_notifications_then_restart_delivers_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("buffer.redb");
    let (_guard, refusing) = refusing_address();
    let mut first = Proxy::start(buffering_spec(refusing, &store, ""));
    let mut sent = Vec::new();
    for _ in 0..5 {
        let body = notification();
        let raw = twilio_request(&body);
        let resp = first.send(&raw);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(resp.json()["buffered"], true);
        sent.push(as_forwarded(&raw));
    }
    first.kill(); // SIGKILL: no shutdown path runs

    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let second = Proxy::start(buffering_spec(upstream.addr, &store, ""));
    eventually("all five redelivered", || upstream.request_count() >= 5);
    let mut received = upstream.requests();
    received.sort();
    sent.sort();
    assert_eq!(
        received, sent,
        "every buffered notification, byte for byte, exactly once"
    );
    eventually("buffer drained", || {
        second.metric(r#"notify_proxy_buffer_messages{table="pending"}"#) == 0.0
    });
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn buffer_cli_lists_shows_replays_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("buffer.redb");
    let (_guard, refusing) = refusing_address();
    let mut spec = buffering_spec(refusing, &store, "");
    spec.route_extra.push_str("\n    buffer_ttl: 1h");
    let mut proxy = Proxy::start(spec);
    let raw = twilio_request(&notification());
    buffer_one(&proxy, &raw);
    buffer_one(&proxy, &twilio_request(&notification()));

    // While the proxy runs, the store is locked: the CLI says so and changes nothing.
    let config = proxy.config_path.to_str().unwrap().to_string();
    let (ok, _, err) = cli(&["buffer", "--config", &config, "list"]);
    assert!(!ok && err.contains("stop the proxy"), "{err}");
    proxy.kill();

    let (ok, out, err) = cli(&["buffer", "--config", &config, "list", "--format", "json"]);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let (ok, out, _) = cli(&["buffer", "--config", &config, "show", &ids[0].to_string()]);
    assert!(ok);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["table"], "pending");
    assert_eq!(
        shown["request"].as_str().unwrap().as_bytes(),
        &as_forwarded(&raw)[..],
        "the exact request is kept"
    );

    // Remove one by id (and an unknown id is an error).
    let (ok, out, _) = cli(&["buffer", "--config", &config, "remove", &ids[1].to_string()]);
    assert!(ok && out.contains("removed"), "{out}");
    let (ok, _, err) = cli(&["buffer", "--config", &config, "remove", "999999"]);
    assert!(!ok && err.contains("no buffered message"), "{err}");

    // Replay against a config whose upstream is up: delivered and removed.
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let live_config = dir.path().join("live.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &live_config,
        text.replace(&refusing.to_string(), &upstream.addr.to_string()),
    )
    .unwrap();
    let live_config = live_config.to_str().unwrap().to_string();
    let (ok, out, err) = cli(&["buffer", "--config", &live_config, "replay", "--all"]);
    assert!(ok, "{out}{err}");
    assert_eq!(upstream.request_count(), 1);
    assert_eq!(upstream.requests()[0], as_forwarded(&raw));
    let (_, out, _) = cli(&[
        "buffer",
        "--config",
        &live_config,
        "list",
        "--format",
        "json",
    ]);
    assert_eq!(out.trim(), "[]");

    // Dead letters: expire two. A replay that fails exits 1 and leaves them; one that works
    // delivers and removes them.
    let expire = |count: usize| {
        let mut spec = buffering_spec(refusing, &store, "");
        spec.route_extra.push_str("\n    buffer_ttl: 200ms");
        let mut expiring = Proxy::start(spec);
        for _ in 0..count {
            buffer_one(&expiring, &twilio_request(&notification()));
        }
        eventually("dead letters", || {
            expiring.metric(r#"notify_proxy_buffer_messages{table="dead_letter"}"#) == count as f64
        });
        expiring.kill();
        expiring // kept: its folder holds the config
    };
    let expired = expire(2);
    let config = expired.config_path.to_str().unwrap().to_string();
    let (ok, out, _) = cli(&["buffer", "--config", &config, "list", "--dead"]);
    assert!(ok && out.contains("expired"), "{out}");
    let dead_count = |config: &str| {
        let (ok, out, err) = cli(&[
            "buffer", "--config", config, "list", "--dead", "--format", "json",
        ]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    let out = std::process::Command::new(BIN)
        .args(["buffer", "--config", &config, "replay", "--dead"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a failed replay exits 1");
    assert_eq!(dead_count(&config), 2, "failed replays stay");
    // One message that fails is a failed replay too.
    let (_, out, _) = cli(&[
        "buffer", "--config", &config, "list", "--dead", "--format", "json",
    ]);
    let one = serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["id"].to_string();
    let out = std::process::Command::new(BIN)
        .args(["buffer", "--config", &config, "replay", &one])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed replay of one id exits 1"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 message(s) could not be delivered"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dead_count(&config), 2, "failed replays stay");
    let (ok, out, _) = cli(&[
        "buffer",
        "--config",
        &config,
        "purge",
        "--dead",
        "--older-than",
        "1h",
    ]);
    assert!(ok && out.contains("purged 0"), "{out}");
    let before = upstream.request_count();
    let (ok, out, err) = cli(&["buffer", "--config", &live_config, "replay", "--dead"]);
    assert!(ok, "{out}{err}");
    assert_eq!(upstream.request_count(), before + 2);
    assert_eq!(
        dead_count(&live_config),
        0,
        "delivered dead letters are removed"
    );

    let expired = expire(1);
    let config = expired.config_path.to_str().unwrap().to_string();
    let (ok, out, _) = cli(&["buffer", "--config", &config, "purge", "--dead"]);
    assert!(ok && out.contains("purged 1"), "{out}");
}

#[test]
fn test_and_upgrade_flags_check_the_store_before_taking_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let running = Proxy::start(buffering_spec(
        upstream.addr,
        &dir.path().join("buffer.redb"),
        "",
    ));
    let config = running.config_path.to_str().unwrap().to_string();
    let with_env = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env("TNP_TOKEN", TOKEN)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    // --test builds everything, the store included: locked by the running proxy, so a second
    // instance on the same store is refused, with the way to replace it without downtime.
    let out = with_env(&["run", "--config", &config, "--test"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another process") && err.contains("run --upgrade"),
        "{err}"
    );
    // With --upgrade the locked store is no reason to refuse: the successor opens a hand-off
    // file (see tests/upgrade.rs). --test stops before the sockets are taken, leaving that file
    // empty and unheld, and the running proxy adopts it.
    let out = std::process::Command::new(BIN)
        .args(["run", "--config", &config, "--upgrade", "--test"])
        .env("TNP_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("buffering into a hand-off file"), "{err}");
    let handoff_files = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".handoff-"))
            .count()
    };
    eventually_within(
        "the running proxy to adopt the hand-off file",
        Duration::from_secs(10),
        || handoff_files() == 0,
    );
    // The running proxy was not disturbed.
    assert_delivered(
        &running,
        &upstream,
        &twilio_request(&notification()),
        200,
        "ok",
    );
}

#[test]
fn a_replay_with_a_fresh_token_is_still_a_duplicate() {
    // The idempotency token is not signed; the message id is (through bodySHA256).
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = Proxy::start(ProxySpec::new(upstream.addr));
    let body = notification();
    let (target, sig) = sign(&body, TOKEN);
    let first = request_with(&target, &[("X-Twilio-Signature", &sig)], &body);
    let replay = request_with(&target, &[("X-Twilio-Signature", &sig)], &body);
    assert_ne!(first, replay, "different idempotency tokens");
    assert_delivered(&proxy, &upstream, &first, 200, "ok");
    assert_eq!(proxy.send(&replay).json()["duplicate"], true);
    assert_eq!(upstream.request_count(), 1);
}

/// `buffered_status`: the 2xx Twilio gets once the request is stored, and the one a copy of it
/// gets while it waits (a duplicate is answered what its original got).
#[test]
fn a_buffered_notification_and_its_copy_are_answered_the_routes_buffered_status() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(503, "down"));
    let mut spec = buffering_spec(upstream.addr, &dir.path().join("buffer.redb"), "");
    spec.route_extra.push_str("\n    buffered_status: 202");
    let proxy = Proxy::start(spec);
    let raw = twilio_request(&notification());
    let first = proxy.send(&raw);
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(first.json()["buffered"], true, "{}", first.text());
    assert_eq!(
        upstream.requests()[0],
        as_forwarded(&raw),
        "the live attempt"
    );

    let copy = proxy.send(&raw);
    assert_eq!(copy.status, 202, "{}", copy.text());
    let body = copy.json();
    assert_eq!(
        (&body["duplicate"], &body["original"]),
        (&serde_json::json!(true), &serde_json::json!("buffered")),
        "{body}"
    );
    assert_eq!(proxy.outcomes("buffered"), 1.0);
    assert_eq!(proxy.outcomes("duplicate"), 1.0);
    assert_eq!(proxy.pending(), 1.0, "stored once");

    upstream.set_behaviour(Behaviour::status(200, "ok"));
    eventually("the stored one redelivered", || {
        proxy.redeliveries("delivered") == 1.0
    });
    assert_eq!(upstream.requests().last(), Some(&as_forwarded(&raw)));
}

/// `buffer_ttl` counts from the request's arrival (docs/config.md), so the live attempts spent
/// part of it: the stored arrival is when the request came, not when the store took it.
#[test]
fn the_ttl_of_a_buffered_notification_counts_from_its_arrival() {
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("buffer.redb");
    // The one live attempt takes 1.5 s (inside the 2 s response timeout), then fails.
    let upstream = MockUpstream::start(Behaviour::Slow {
        status: 503,
        delay: Duration::from_millis(1500),
    });
    let mut spec = buffering_spec(upstream.addr, &store, "");
    spec.route_extra.push_str("\n    buffer_ttl: 1h");
    let mut proxy = Proxy::start(spec);
    let sent = now_ms();
    buffer_one(&proxy, &twilio_request(&notification()));
    let answered = now_ms();
    assert!(answered - sent >= 1500, "the live attempt took its time");
    proxy.kill();

    let config = proxy.config_path.to_str().unwrap().to_string();
    let (ok, out, err) = cli(&["buffer", "--config", &config, "list", "--format", "json"]);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ms = |key: &str| {
        listed[0][key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {out}"))
    };
    assert_eq!(
        ms("expires_at_ms") - ms("received_at_ms"),
        3_600_000,
        "{out}"
    );
    // The buffer's clock is the system's, read at start and advanced by the monotonic clock:
    // the arrival is nearer the send than the answer (1.5 s apart).
    assert!(
        ms("received_at_ms") < (sent + answered) / 2,
        "arrival {} is the store write, not the request ({sent}..{answered})",
        ms("received_at_ms")
    );
}
