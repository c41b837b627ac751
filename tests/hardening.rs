//! End to end: what a request can make the proxy say, in its answer and in its log (issue 12).
//! Nothing the request carried (signature, signed URL, long values) and nothing internal
//! (addresses, OS errors) comes back; the answer's request id finds the specifics in the log.

mod harness;

use harness::*;

fn logging_proxy(upstream: std::net::SocketAddr) -> Proxy {
    let mut spec = ProxySpec::new(upstream);
    spec.capture_stderr = true;
    spec.env.push(("RUST_LOG".into(), "info".into()));
    Proxy::start(spec)
}

/// The log lines that carry `request_id`, waiting briefly for the background writer.
fn lines_with(proxy: &Proxy, request_id: &str) -> Vec<String> {
    let mut found = Vec::new();
    eventually_within(
        "the request's log line",
        std::time::Duration::from_secs(5),
        || {
            found = proxy
                .log_lines()
                .into_iter()
                .filter(|l| l.contains(request_id))
                .collect();
            !found.is_empty()
        },
    );
    found
}

/// The id the answer carries, in its header and its JSON body alike.
fn request_id(resp: &Response) -> String {
    let header = resp
        .header("X-Request-Id")
        .expect("X-Request-Id")
        .to_owned();
    assert_eq!(
        resp.json()["request_id"],
        header.as_str(),
        "{}",
        resp.text()
    );
    header
}

/// Regression (issue 12, item 1): Pingora's parse error quotes the raw head; it was logged and
/// answered verbatim, signature and signed URL included.
#[test]
fn malformed_head_with_a_signature_is_neither_logged_nor_echoed() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let proxy = logging_proxy(upstream.addr);
    let body = notification();
    let (target, signature) = sign(&body, TOKEN);
    let raw = format!(
        "POST {target} HTTP/1.1\r\nHost: voice.example.com\r\nX-Twilio-Signature: {signature}\r\n\
         Bad Header Name: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = proxy.send(raw.as_bytes());
    assert_eq!((resp.status, resp.reason().as_str()), (400, "malformed"));
    let secret_bits = [signature.as_str(), "bodySHA256", "twi_bridge_token"];
    for bit in secret_bits {
        assert!(
            !resp.text().contains(bit),
            "answer echoes {bit}: {}",
            resp.text()
        );
    }
    lines_with(&proxy, &request_id(&resp));
    for line in proxy.log_lines() {
        for bit in secret_bits {
            assert!(!line.contains(bit), "log line echoes {bit}: {line}");
        }
    }
    assert_eq!(upstream.request_count(), 0);
}

/// Regression (issue 12, item 3): a 502 said `cannot connect to 127.0.0.1:<port> ...
/// Connection refused (os error 111)`; now a fixed detail, and the log line with the same
/// request id says what happened.
#[test]
fn upstream_failure_answer_names_no_address_and_its_log_line_does() {
    let (_held, refusing) = refusing_address();
    let proxy = logging_proxy(refusing);
    let resp = proxy.send(&twilio_request(&notification()));
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.reason(), "upstream_unreachable");
    let text = resp.text();
    let port = refusing.port().to_string();
    for internal in ["127.0.0.1", port.as_str(), "os error", "refused"] {
        assert!(!text.contains(internal), "answer names {internal}: {text}");
    }
    let id = request_id(&resp);
    let lines = lines_with(&proxy, &id);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&port) && l.contains("delivery failed")),
        "the log line with the request id names the peer: {lines:?}"
    );
}

/// Regression (issue 12, item 4): `unknown_key` told an unauthenticated caller which SharedKey
/// ids are configured. The answer says `signature_mismatch`; metric and log keep the truth.
#[test]
fn unknown_key_is_answered_as_signature_mismatch_and_counted_as_unknown_key() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let proxy = logging_proxy(upstream.addr);
    let body = notification();
    let (target, signature) = sign(&body, TOKEN);
    let raw = request_with(
        &target,
        &[
            ("X-Twilio-Signature", &signature),
            (
                "X-Twilio-Webhooks-Signature-Settings",
                "key=probe-k1,algorithm=HMAC_SHA256",
            ),
        ],
        &body,
    );
    let resp = proxy.send(&raw);
    assert_eq!(
        (resp.status, resp.reason().as_str()),
        (403, "signature_mismatch")
    );
    assert!(!resp.text().contains("probe-k1"), "{}", resp.text());
    assert_eq!(proxy.rejections("unknown_key"), 1.0);
    assert_eq!(proxy.rejections("signature_mismatch"), 0.0);
    let lines = lines_with(&proxy, &request_id(&resp));
    assert!(lines.iter().any(|l| l.contains("unknown_key")), "{lines:?}");
}

/// Regression (issue 12, item 2): the path of an unknown route was logged whole (up to the
/// head limit); now at most ~128 bytes of it, and the answer echoes none.
#[test]
fn a_long_unknown_path_is_logged_bounded_and_not_echoed() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let proxy = logging_proxy(upstream.addr);
    let path = format!("/{}", "p".repeat(20_000));
    let raw =
        format!("POST {path} HTTP/1.1\r\nHost: voice.example.com\r\nContent-Length: 0\r\n\r\n");
    let resp = proxy.send(raw.as_bytes());
    assert_eq!(
        (resp.status, resp.reason().as_str()),
        (404, "unknown_route")
    );
    assert!(!resp.text().contains("ppp"), "{}", resp.text());
    let lines = lines_with(&proxy, &request_id(&resp));
    let longest = lines.iter().map(String::len).max().unwrap_or(0);
    assert!(longest < 1024, "a {longest}-byte log line");
    assert!(
        lines.iter().any(|l| l.contains("+19873 bytes")),
        "{lines:?}"
    );
}

/// Regression (issue 12, items 5 and 6): a second `Content-Type` was forwarded unchecked, and
/// `Connection` tokens made the hop strip headers it had just validated.
#[test]
fn forwarded_headers_are_the_checked_ones() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let proxy = Proxy::start(ProxySpec::new(upstream.addr));
    let body = notification();
    let (target, signature) = sign(&body, TOKEN);
    let twice = request_with(
        &target,
        &[
            ("X-Twilio-Signature", &signature),
            ("Content-Type", "text/plain"),
        ],
        &body,
    );
    let resp = proxy.send(&twice);
    assert_eq!((resp.status, resp.reason().as_str()), (415, "content_type"));

    let body = notification();
    let (target, signature) = sign(&body, TOKEN);
    let stripping = request_with(
        &target,
        &[
            ("X-Twilio-Signature", &signature),
            ("Connection", "keep-alive, content-type, x-twilio-signature"),
        ],
        &body,
    );
    let resp = proxy.send(&stripping);
    assert_eq!(
        (resp.status, resp.reason().as_str()),
        (400, "forbidden_header")
    );
    assert_eq!(upstream.request_count(), 0, "neither reached the handler");
}

/// A buffered notification's log lines carry the id its answer carries: the failed delivery
/// and the buffer insert are both found by it.
#[test]
fn a_buffered_notification_is_found_in_the_log_by_its_request_id() {
    let upstream = MockUpstream::start(Behaviour::status(503, "{}"));
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ProxySpec::new(upstream.addr);
    spec.capture_stderr = true;
    spec.env.push(("RUST_LOG".into(), "info".into()));
    spec.top_extra = format!(
        "buffer:\n  path: {}",
        dir.path().join("buffer.redb").display()
    );
    spec.route_extra = "    on_exhausted: buffer\n    retry: { max_attempts: 1 }".into();
    let proxy = Proxy::start(spec);
    let resp = proxy.send(&twilio_request(&notification()));
    assert_eq!(resp.json()["buffered"], true, "{}", resp.text());
    let id = request_id(&resp);
    eventually_within(
        "both log lines of the buffered request",
        std::time::Duration::from_secs(5),
        || {
            let lines = proxy.log_lines();
            let with_id = |what: &str| lines.iter().any(|l| l.contains(&id) && l.contains(what));
            with_id("delivery failed") && with_id("buffered for redelivery")
        },
    );
}
