//! The metric taxonomy holds: every outcome and every rejection reason is reachable through the
//! real proxy, and each request is counted exactly once, under exactly one outcome (and, when
//! rejected, exactly one reason).

mod harness;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use harness::*;
use twilio_notify_proxy::signature::{sign_json, Algorithm, SigningKey};

const BUFFERED_URL: &str = "https://voice.example.com/buffered";

/// All samples of one metric family, by their label string.
fn samples(proxy: &Proxy, family: &str) -> BTreeMap<String, f64> {
    proxy
        .metrics()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            Some((labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The one series that changed between two snapshots, and by how much in total.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> (Vec<String>, f64) {
    let mut changed = Vec::new();
    let mut total = 0.0;
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        if d != 0.0 {
            changed.push(k.clone());
            total += d;
        }
    }
    (changed, total)
}

fn signed_for(url: &str, body: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let key = SigningKey::new(Algorithm::HmacSha1, TOKEN.as_bytes());
    let (signed, sig) = sign_json(&key, url, body.as_bytes()).unwrap();
    let target = signed.strip_prefix("https://voice.example.com").unwrap();
    let mut headers = vec![("X-Twilio-Signature", sig.as_str())];
    headers.extend_from_slice(extra);
    request_with(target, &headers, body)
}

/// Sends `raw` (or runs `send`) and checks it was counted once, as `outcome` (and `reason`).
fn expect_counted(
    proxy: &Proxy,
    what: &str,
    outcome: &str,
    reason: Option<&str>,
    send: impl FnOnce(),
) {
    let requests_before = samples(proxy, "notify_proxy_requests_total");
    let rejections_before = samples(proxy, "notify_proxy_rejections_total");
    send();
    let (changed, total) = delta(
        &requests_before,
        &samples(proxy, "notify_proxy_requests_total"),
    );
    assert_eq!(
        total, 1.0,
        "{what}: exactly one request counted, got {changed:?}"
    );
    assert!(
        changed.len() == 1 && changed[0].contains(&format!("outcome=\"{outcome}\"")),
        "{what}: expected outcome {outcome}, got {changed:?}"
    );
    let (changed, total) = delta(
        &rejections_before,
        &samples(proxy, "notify_proxy_rejections_total"),
    );
    match reason {
        Some(reason) => {
            assert_eq!(total, 1.0, "{what}: one rejection counted, got {changed:?}");
            assert!(
                changed[0].contains(&format!("reason=\"{reason}\"")),
                "{what}: {changed:?}"
            );
        }
        None => assert_eq!(total, 0.0, "{what}: no rejection counted, got {changed:?}"),
    }
}

#[test]
fn every_outcome_and_reason_is_reachable_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let mut spec = ProxySpec::new(upstream.addr);
    spec.response_timeout = "1s";
    spec.top_extra = format!(
        "allowed_accounts: [AC0123456789abcdef0123456789abcdef]\nbuffer:\n  path: {}\n  max_messages: 1\n  redelivery_interval: 1h",
        dir.path().join("b.redb").display()
    );
    spec.route_extra = format!(
        "    retry: {{ max_attempts: 1 }}\n  - name: buffered\n    public_url: {BUFFERED_URL}\n    upstream: handler\n    body: json\n    on_exhausted: buffer\n    retry: {{ max_attempts: 1 }}"
    );
    spec.upstream_extra = "    circuit_breaker: { failure_threshold: 1000 }".into();
    let proxy = Proxy::start(spec);
    let body = notification();
    let send = |raw: Vec<u8>| {
        let _ = send_raw(proxy.addr, &raw);
    };

    // Outcomes from the handler's answers.
    for (status, outcome) in [
        (200, "forwarded_2xx"),
        (302, "forwarded_other"),
        (404, "no_binding"),
        (401, "upstream_4xx"),
        (500, "upstream_5xx"),
    ] {
        upstream.set_behaviour(Behaviour::status(status, "x"));
        expect_counted(&proxy, outcome, outcome, None, || {
            send(twilio_request(&notification()))
        });
    }
    upstream.set_behaviour(Behaviour::Hang);
    expect_counted(&proxy, "hang", "upstream_timeout", None, || {
        send(twilio_request(&notification()))
    });
    upstream.set_behaviour(Behaviour::Raw("NOT HTTP AT ALL\r\n\r\n".into()));
    expect_counted(&proxy, "garbage", "upstream_protocol", None, || {
        send(twilio_request(&notification()))
    });

    // Buffering, duplicates, a full buffer.
    upstream.set_behaviour(Behaviour::status(503, "down"));
    let token = [("I-Twilio-Idempotency-Token", "taxonomy-dup")];
    expect_counted(&proxy, "buffered", "buffered", None, || {
        send(signed_for(BUFFERED_URL, &body, &token))
    });
    expect_counted(&proxy, "duplicate", "duplicate", None, || {
        send(signed_for(BUFFERED_URL, &body, &token))
    });
    expect_counted(&proxy, "buffer full", "buffer_failed", None, || {
        send(signed_for(BUFFERED_URL, &notification(), &[]))
    });

    // Every rejection reason.
    let (target, sig) = sign(&body, TOKEN);
    let with = |extra: &[(&str, &str)], b: &str| request_with(&target, extra, b);
    let other_account = body.replace(
        "AC0123456789abcdef0123456789abcdef",
        "AC00000000000000000000000000000009",
    );
    let mut missing: serde_json::Value = serde_json::from_str(&body).unwrap();
    missing.as_object_mut().unwrap().remove("twi_to");
    let no_hash_sig = SigningKey::new(Algorithm::HmacSha1, TOKEN.as_bytes()).sign(
        &twilio_notify_proxy::signature::SignedUrl::parse(PUBLIC_URL).unwrap(),
        b"",
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("method", format!("GET {PATH} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes()),
        ("content_type", String::from_utf8(with(&[("X-Twilio-Signature", &sig)], &body)).unwrap().replace("application/json", "text/plain").into_bytes()),
        ("length_required", format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\r\n").into_bytes()),
        ("too_large", format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 99999\r\n\r\n").into_bytes()),
        ("unknown_route", request_with(&format!("/elsewhere{target}"), &[("X-Twilio-Signature", &sig)], &body)),
        ("malformed", b"POST /twilio/client-notify HTTP/1.1\r\nHost: h\r\nBad Header Name: x\r\n\r\n".to_vec()),
        ("signature_missing", with(&[], &body)),
        ("signature_duplicate", with(&[("X-Twilio-Signature", &sig), ("X-Twilio-Signature", &sig)], &body)),
        ("signature_mismatch", with(&[("X-Twilio-Signature", "bm9wZQ==")], &body)),
        ("body_hash_missing", request_with(PATH, &[("X-Twilio-Signature", &no_hash_sig)], &body)),
        ("body_hash_mismatch", with(&[("X-Twilio-Signature", &sig)], &body.replace("bob", "eve"))),
        ("unknown_key", with(&[("X-Twilio-Signature", &sig), ("X-Twilio-Webhooks-Signature-Settings", "key=nope,algorithm=HMAC_SHA256")], &body)),
        ("unknown_account", twilio_request(&other_account)),
        ("not_json", twilio_request("{")),
        ("schema", twilio_request(&missing.to_string())),
    ];
    for (reason, raw) in cases {
        expect_counted(&proxy, reason, "rejected", Some(reason), || send(raw));
    }
    // The two that need a misbehaving client: a body that stalls, and one cut short.
    let stalled = format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{{");
    expect_counted(
        &proxy,
        "body_timeout",
        "rejected",
        Some("body_timeout"),
        || {
            let mut s = TcpStream::connect(proxy.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(stalled.as_bytes()).unwrap();
            let _ = read_response(&mut std::io::BufReader::new(s));
        },
    );
    expect_counted(
        &proxy,
        "body_incomplete",
        "rejected",
        Some("body_incomplete"),
        || {
            let _ = send_and_half_close(proxy.addr, stalled.as_bytes());
        },
    );

    // upstream_unreachable needs a handler that refuses connections: a second proxy.
    let (_guard, refusing) = refusing_address();
    let mut spec = ProxySpec::new(refusing);
    spec.route_extra = "    retry: { max_attempts: 1 }".into();
    let down = Proxy::start(spec);
    expect_counted(&down, "refused", "upstream_unreachable", None, || {
        let _ = send_raw(down.addr, &twilio_request(&body));
    });

    // Nothing above was left out: every outcome and reason label now has a non-zero series.
    let mut seen_outcomes: Vec<String> = samples(&proxy, "notify_proxy_requests_total")
        .into_iter()
        .chain(samples(&down, "notify_proxy_requests_total"))
        .filter(|(_, v)| *v > 0.0)
        .filter_map(|(k, _)| {
            k.split("outcome=\"")
                .nth(1)
                .map(|r| r.split('"').next().unwrap().to_string())
        })
        .collect();
    seen_outcomes.sort();
    seen_outcomes.dedup();
    let mut all: Vec<String> = twilio_notify_proxy::outcome::Outcome::ALL
        .iter()
        .map(|o| o.as_str().to_string())
        .collect();
    all.sort();
    assert_eq!(seen_outcomes, all);
    let reasons = samples(&proxy, "notify_proxy_rejections_total");
    for r in twilio_notify_proxy::outcome::Reason::ALL {
        assert!(
            reasons
                .iter()
                .any(|(k, v)| k.contains(&format!("reason=\"{}\"", r.as_str())) && *v > 0.0),
            "reason {} never counted",
            r.as_str()
        );
    }
}
