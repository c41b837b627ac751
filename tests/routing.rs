//! Which URL the signature is checked against, end to end: routes without `public_url` rebuild
//! it from `Host`, or from `X-Forwarded-*` only when the peer is a trusted proxy (whose
//! `X-Forwarded-*` alone also reach the handler); and all of
//! Twilio's SDK signature vectors, JSON and form, through the real proxy with the reason each
//! invalid one is refused for.

mod harness;

use std::net::SocketAddr;

use harness::*;
use twilio_notify_proxy::signature::{sign_json, Algorithm, SigningKey};

/// A request to `target` with the given `Host`, forwarded headers and signature.
fn request(
    target: &str,
    host: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Vec<u8> {
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nI-Twilio-Idempotency-Token: {}\r\n",
        fresh_token()
    );
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw.into_bytes()
}

/// A proxy whose extra route `/rebuilt` has no `public_url`, trusting `trusted` as proxies.
fn rebuilding_proxy(upstream: SocketAddr, trusted: &str) -> Proxy {
    let mut spec = ProxySpec::new(upstream);
    spec.top_extra = format!("trusted_proxies: [{trusted}]");
    spec.route_extra = "  - name: rebuilt\n    path: /rebuilt\n    upstream: handler\n    body: json\n    \
                        allowed_hosts: [voice.example.com, other.example.com, \"lb.internal:8080\"]"
        .into();
    Proxy::start(spec)
}

/// A route without `public_url` answers only for its `allowed_hosts`: a signature Twilio made
/// for the same path on another host of the account does not verify here.
#[test]
fn a_rebuilt_url_must_name_one_of_the_allowed_hosts() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let mut spec = ProxySpec::new(upstream.addr);
    spec.route_extra =
        "  - name: rebuilt\n    path: /rebuilt\n    upstream: handler\n    body: json\n    \
                        allowed_hosts: [Voice.Example.com]"
            .into();
    let proxy = Proxy::start(spec);
    let key = SigningKey::new(Algorithm::HmacSha1, TOKEN.as_bytes());
    let signed_on = |host: &str| {
        let body = notification();
        let (signed, sig) =
            sign_json(&key, &format!("http://{host}/rebuilt"), body.as_bytes()).unwrap();
        let target = signed[signed.find("/rebuilt").unwrap()..].to_string();
        request(
            &target,
            host,
            "application/json",
            &[("X-Twilio-Signature", sig.as_str())],
            &body,
        )
    };
    let r = proxy.send(&signed_on("voice.example.com"));
    assert_eq!(r.status, 200, "{}", r.text());
    // Correctly signed for its own URL, on a host this route does not serve.
    let r = proxy.send(&signed_on("other.example.com"));
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, "signature_mismatch"),
        "publicly a mismatch: which hosts are served is not told"
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_rejections_total{reason="host_not_allowed",route="rebuilt"}"#),
        1.0
    );
    assert_eq!(upstream.request_count(), 1);
}

/// Sent through a load balancer: `Host` is the balancer's view, `X-Forwarded-*` say what
/// Twilio called. Which of the two URLs the signature must match depends on trust alone.
#[test]
fn forwarded_headers_are_used_only_from_trusted_proxies() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let untrusting = rebuilding_proxy(upstream.addr, "10.0.0.0/8");
    let trusting = rebuilding_proxy(upstream.addr, "127.0.0.1/32");
    let key = SigningKey::new(Algorithm::HmacSha1, TOKEN.as_bytes());
    let forwarded = [
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "voice.example.com"),
        ("X-Forwarded-For", "198.51.100.9"),
        ("X-Real-IP", "198.51.100.9"),
        ("Forwarded", "for=198.51.100.9;proto=https"),
    ];
    // The same notification signed for the URL Twilio called, and for the balancer's own URL.
    let signed_for = |url: &str| {
        let body = notification();
        let (signed, sig) = sign_json(&key, url, body.as_bytes()).unwrap();
        let target = signed[signed.find("/rebuilt").unwrap()..].to_string();
        let mut headers = forwarded.to_vec();
        headers.push(("X-Twilio-Signature", sig.as_str()));
        request(
            &target,
            "lb.internal:8080",
            "application/json",
            &headers,
            &body,
        )
    };
    let public = || signed_for("https://voice.example.com/rebuilt");
    let internal = || signed_for("http://lb.internal:8080/rebuilt");

    let r = untrusting.send(&public());
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, "signature_mismatch"),
        "an untrusted peer's X-Forwarded-* must be ignored"
    );
    let r = untrusting.send(&internal());
    assert_eq!(r.status, 200, "untrusted: URL from Host: {}", r.text());

    let r = trusting.send(&public());
    assert_eq!(
        r.status,
        200,
        "trusted: URL from X-Forwarded-*: {}",
        r.text()
    );
    let r = trusting.send(&internal());
    assert_eq!(
        (r.status, r.reason().as_str()),
        (403, "signature_mismatch"),
        "a trusted peer's X-Forwarded-* replace Host and scheme"
    );
    assert_eq!(upstream.request_count(), 2);

    // What the handler is told: an untrusted caller's claims are gone and the proxy says what
    // it saw; a trusted balancer's lines stay, and the peer joins X-Forwarded-For.
    let requests = upstream.requests();
    let headers = |raw: &[u8]| {
        let text = String::from_utf8_lossy(raw).to_string();
        let head = text.split("\r\n\r\n").next().unwrap().to_string();
        head.lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                ["x-forwarded-", "forwarded:", "x-real-ip:"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        headers(&requests[0]),
        ["X-Forwarded-For: 127.0.0.1", "X-Forwarded-Proto: http"],
        "from the untrusted peer"
    );
    assert_eq!(
        headers(&requests[1]),
        [
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: voice.example.com",
            "X-Forwarded-For: 198.51.100.9, 127.0.0.1",
            "X-Real-IP: 198.51.100.9",
            "Forwarded: for=198.51.100.9;proto=https"
        ],
        "from the trusted peer"
    );
}

#[derive(serde::Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
}

#[derive(serde::Deserialize)]
struct Vector {
    name: String,
    kind: String,
    url: String,
    #[serde(default)]
    params: Vec<(String, String)>,
    #[serde(default)]
    body: String,
    headers: std::collections::HashMap<String, String>,
    signature: String,
    valid: bool,
}

/// Why each invalid vector is refused (the SDK only says "invalid").
fn expected_reason(name: &str) -> &'static str {
    match name {
        "json_body_tampered" | "json_uppercase_hex_hash" => "body_hash_mismatch",
        "json_missing_body_hash" => "body_hash_missing",
        "form_tampered_param"
        | "form_wrong_token"
        | "notification_other_token"
        | "notification_sha256_sig_but_header_says_sha1" => "signature_mismatch",
        other => panic!("invalid vector {other} has no expected reason here"),
    }
}

/// Every vector computed with Twilio's SDK, sent as Twilio would through a trusted load
/// balancer to the real proxy: valid ones reach the handler with their exact body, invalid
/// ones get 403 with the reason the README documents.
#[test]
fn twilio_sdk_vectors_through_the_real_proxy() {
    let text = std::fs::read_to_string(repo_path("tests/fixtures/signature-vectors.json")).unwrap();
    let vectors = serde_json::from_str::<Vectors>(&text).unwrap().vectors;
    assert_eq!(vectors.len(), 20);
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    // The hosts the vectors were signed for, as the route allows them.
    let mut hosts: Vec<String> = vectors
        .iter()
        .map(|v| {
            let rest = v.url.split_once("://").unwrap().1;
            format!("\"{}\"", &rest[..rest.find('/').unwrap()])
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    let hosts = hosts.join(", ");
    let spec = |body: &str| {
        let mut spec = ProxySpec::new(upstream.addr);
        spec.secrets = "  auth_token: { env: TNP_TOKEN }\n  shared_keys:\n    webhooks_sharedkey_0123456789abcdef: { env: TNP_SHARED }\n".into();
        spec.env = vec![
            ("TNP_TOKEN".into(), "12345".into()),
            ("TNP_SHARED".into(), "sharedkey-secret-0123456789".into()),
        ];
        // The notification vectors share one twi_message_id: each must be judged, not deduped.
        spec.top_extra = "trusted_proxies: [127.0.0.1]\ndedupe: { enabled: false }".into();
        spec.route_extra = format!(
            "  - name: myapp\n    path: /myapp.php\n    upstream: handler\n    body: {body}\n    \
             allowed_hosts: [{hosts}]"
        );
        Proxy::start(spec)
    };
    let json = spec("json");
    let form = spec("form");

    for v in &vectors {
        let (scheme, rest) = v.url.split_once("://").unwrap();
        let slash = rest.find('/').unwrap();
        let (authority, target) = rest.split_at(slash);
        let (proxy, content_type, body) = if v.kind == "form" {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(v.params.iter())
                .finish();
            (&form, "application/x-www-form-urlencoded", body)
        } else {
            (&json, "application/json", v.body.clone())
        };
        let mut headers = vec![
            ("X-Forwarded-Proto", scheme),
            ("X-Forwarded-Host", authority),
            ("X-Twilio-Signature", v.signature.as_str()),
        ];
        headers.extend(v.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let before = upstream.request_count();
        let r = proxy.send(&request(
            target,
            "lb.internal",
            content_type,
            &headers,
            &body,
        ));
        if v.name == "form_repeated_key" {
            // Signed correctly, but a repeated key lets the form be respelled under the same
            // signature (issue 12, item 9): refused after the signature check.
            assert!(v.valid, "the vector itself is a valid signature");
            assert_eq!(
                (r.status, r.reason().as_str()),
                (400, "schema"),
                "vector {}",
                v.name
            );
            assert_eq!(upstream.request_count(), before, "vector {}", v.name);
        } else if v.valid {
            assert_eq!(r.status, 200, "vector {}: {}", v.name, r.text());
            let got = upstream.requests();
            assert_eq!(got.len(), before + 1, "vector {}", v.name);
            assert!(
                got[before].ends_with(format!("\r\n\r\n{body}").as_bytes()),
                "vector {}: body forwarded unchanged",
                v.name
            );
        } else {
            assert_eq!(
                (r.status, r.reason().as_str()),
                (403, expected_reason(&v.name)),
                "vector {}",
                v.name
            );
            assert_eq!(upstream.request_count(), before, "vector {}", v.name);
        }
    }
}
