//! Dedupe, end to end: what counts as "seen", for how long, and by which key. A repeat is
//! answered `{"duplicate":true}` only once the handler accepted the notification; a repeat of
//! one that failed (5xx, 404, timeout) is Twilio retrying and must reach the handler again.

mod harness;

use std::time::Duration;

use harness::*;

fn one_attempt_proxy(upstream: &MockUpstream, dedupe: &str) -> Proxy {
    let mut spec = ProxySpec::new(upstream.addr);
    spec.response_timeout = "500ms";
    spec.route_extra = "    retry: { max_attempts: 1 }".into();
    // The breaker must not turn the failures below into "circuit open".
    spec.upstream_extra = "    circuit_breaker: { failure_threshold: 1000 }".into();
    spec.top_extra = dedupe.into();
    Proxy::start(spec)
}

fn is_duplicate(r: &Response) -> bool {
    r.status == 200
        && serde_json::from_slice::<serde_json::Value>(&r.body)
            .is_ok_and(|v| v["duplicate"] == true)
}

/// Regression guard for dedupe recorded on arrival: the repeat of a failed delivery would be
/// answered "duplicate" and the call would never ring.
#[test]
fn repeat_after_a_failed_delivery_is_delivered_again() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = one_attempt_proxy(&upstream, "");
    for (failing, expected_status) in [
        (Behaviour::status(502, "bad gateway"), 502),
        (Behaviour::status(404, "no binding"), 404),
        (Behaviour::Hang, 504),
    ] {
        upstream.set_behaviour(failing);
        // The same notification with the same token, as Twilio retries it.
        let body = notification();
        let (target, sig) = sign(&body, TOKEN);
        let token = fresh_token();
        let raw = request_with(
            &target,
            &[
                ("X-Twilio-Signature", &sig),
                ("I-Twilio-Idempotency-Token", &token),
            ],
            &body,
        );
        let before = upstream.request_count();
        let first = proxy.send(&raw);
        assert_eq!(first.status, expected_status, "{}", first.text());
        upstream.set_behaviour(Behaviour::status(200, "ok"));
        let repeat = proxy.send(&raw);
        assert_eq!(
            (repeat.status, repeat.text().as_str()),
            (200, "ok"),
            "the repeat after a {expected_status} is delivered, not deduplicated"
        );
        assert_eq!(upstream.request_count(), before + 2);
        // Now it was delivered: the next repeat is a duplicate and is not forwarded.
        let again = proxy.send(&raw);
        assert!(is_duplicate(&again), "{}", again.text());
        assert_eq!(upstream.request_count(), before + 2);
    }
}

/// Two copies of one notification at once. Both are answered 200 and the handler's bytes are
/// identical; whichever arrived second either reached the handler too or was recognised. Once
/// both are answered, a third copy is a duplicate.
#[test]
fn identical_requests_in_flight_at_once() {
    let upstream = MockUpstream::start(Behaviour::Slow {
        status: 200,
        delay: Duration::from_millis(300),
    });
    let proxy = one_attempt_proxy(&upstream, "");
    let body = notification();
    let (target, sig) = sign(&body, TOKEN);
    let token = fresh_token();
    let raw = request_with(
        &target,
        &[
            ("X-Twilio-Signature", &sig),
            ("I-Twilio-Idempotency-Token", &token),
        ],
        &body,
    );
    let answers: Vec<Response> = std::thread::scope(|s| {
        let a = s.spawn(|| proxy.send(&raw));
        let b = s.spawn(|| proxy.send(&raw));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let forwarded = answers.iter().filter(|r| r.text() == "status 200").count();
    let duplicates = answers.iter().filter(|r| is_duplicate(r)).count();
    // The second copy waits for the first's claim, then answers as its duplicate.
    assert_eq!((forwarded, duplicates), (1, 1), "{answers:?}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), forwarded);
    assert!(
        seen.iter().all(|r| r == &seen[0]),
        "identical bytes each time"
    );
    let third = proxy.send(&raw);
    assert!(is_duplicate(&third), "{}", third.text());
    assert_eq!(upstream.request_count(), forwarded);
}

/// Sends `body` with `token` and says whether the handler got it.
fn delivered(proxy: &Proxy, upstream: &MockUpstream, body: &str, token: &str) -> bool {
    let (target, sig) = sign(body, TOKEN);
    let before = upstream.request_count();
    let r = proxy.send(&request_with(
        &target,
        &[
            ("X-Twilio-Signature", &sig),
            ("I-Twilio-Idempotency-Token", token),
        ],
        body,
    ));
    assert_eq!(r.status, 200, "{}", r.text());
    match upstream.request_count() - before {
        1 => true,
        0 => {
            assert!(is_duplicate(&r), "{}", r.text());
            false
        }
        n => panic!("forwarded {n} times"),
    }
}

/// `dedupe.key` picks what a repeat is recognised by; `enabled: false` forwards every copy.
#[test]
fn dedupe_key_modes_and_disabled() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    // (config, same token + other body is a duplicate, same body + fresh token is a duplicate)
    for (config, by_token, by_message) in [
        ("dedupe: { key: auto }", true, true),
        ("dedupe: { key: idempotency_token }", true, false),
        ("dedupe: { key: message_id }", false, true),
        ("dedupe: { enabled: false }", false, false),
    ] {
        let proxy = one_attempt_proxy(&upstream, config);
        let (body, token) = (notification(), fresh_token());
        assert!(delivered(&proxy, &upstream, &body, &token), "{config}");
        assert_eq!(
            !delivered(&proxy, &upstream, &notification(), &token),
            by_token,
            "{config}: same token, other notification"
        );
        assert_eq!(
            !delivered(&proxy, &upstream, &body, &fresh_token()),
            by_message,
            "{config}: same notification, fresh token"
        );
        assert_eq!(
            !delivered(&proxy, &upstream, &body, &token),
            by_token || by_message,
            "{config}: exact repeat"
        );
    }
}
