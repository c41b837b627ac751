//! `probe` and `check --url` end to end: the real binary as the client, a real proxy, a real
//! handler. A probe must be verified in full by the proxy and answered there (the handler sees
//! nothing), and a failing probe must say why: a wrong token and a wrong URL are told apart.

mod harness;

use std::process::{Command, Output};

use harness::*;

/// A proxy whose route's public URL is its own plain-HTTP address (tests have no public TLS),
/// set through a live reload; `extra` goes to the top of the config.
fn proxy_with_local_public_url(upstream: std::net::SocketAddr, extra: &str) -> (Proxy, String) {
    let mut spec = ProxySpec::new(upstream);
    spec.top_extra = extra.to_string();
    let proxy = Proxy::start(spec);
    let url = format!("http://127.0.0.1:{}{PATH}", proxy.addr.port());
    let yaml = std::fs::read_to_string(&proxy.config_path)
        .unwrap()
        .replace(
            &format!("public_url: {PUBLIC_URL}"),
            &format!("public_url: {url}"),
        );
    proxy.reload_with(&yaml, "success");
    (proxy, url)
}

fn probe(args: &[&str], token: &str) -> (bool, String) {
    let out: Output = Command::new(BIN)
        .arg("probe")
        .args(args)
        .env("TWILIO_AUTH_TOKEN", token)
        .output()
        .expect("run probe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_probe_is_verified_and_answered_by_the_proxy_and_failures_say_why() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let (proxy, url) = proxy_with_local_public_url(upstream.addr, "");

    let (ok, out) = probe(&["--url", &url], TOKEN);
    assert!(ok, "{out}");
    assert!(out.contains("PASS connect"), "{out}");
    assert!(out.contains("PASS verified"), "{out}");
    assert!(
        out.contains("WARN url: not https"),
        "the test URL is http: {out}"
    );
    assert_eq!(
        upstream.request_count(),
        0,
        "a probe never reaches the handler"
    );
    assert_eq!(proxy.outcomes("probe"), 1.0);

    let (ok, out) = probe(&["--url", &url], "not-the-token");
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL verified: 403 wrong token"), "{out}");

    // The URL given to Twilio names the host differently from the route's public_url.
    let other = url.replace("127.0.0.1", "localhost");
    let connect = proxy.addr.to_string();
    let (ok, out) = probe(&["--url", &other, "--connect", &connect], TOKEN);
    assert!(!ok, "{out}");
    assert!(out.contains("public URL mismatch"), "{out}");
    assert!(
        out.contains(&format!("verifies signatures for {url}")),
        "{out}"
    );

    let (ok, out) = probe(&["--url", &url.replace(PATH, "/elsewhere")], TOKEN);
    assert!(!ok, "{out}");
    assert!(out.contains("no route serves this path"), "{out}");

    // Nothing is listening: the connect step fails.
    let (_held, refusing) = refusing_address();
    let (ok, out) = probe(&["--url", &format!("http://{refusing}{PATH}")], TOKEN);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL connect"), "{out}");
    assert_eq!(upstream.request_count(), 0);
}

#[test]
fn probe_through_reaches_the_handler_only_for_the_test_identity() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let (proxy, url) =
        proxy_with_local_public_url(upstream.addr, "probe:\n  identity: notify-proxy-probe\n");
    let (ok, out) = probe(&["--url", &url, "--through"], TOKEN);
    assert!(ok, "{out}");
    assert!(
        out.contains("PASS through: the handler answered 200"),
        "{out}"
    );
    assert_eq!(upstream.request_count(), 1);
    let forwarded = String::from_utf8_lossy(&upstream.requests()[0]).into_owned();
    assert!(
        forwarded.contains("\"twi_to\":\"client:notify-proxy-probe\""),
        "{forwarded}"
    );

    let (ok, out) = probe(&["--url", &url, "--through", "--identity", "alice"], TOKEN);
    assert!(!ok, "{out}");
    assert!(out.contains("probe.identity"), "{out}");
    assert_eq!(
        upstream.request_count(),
        1,
        "a real user's device is never notified"
    );
    assert_eq!(proxy.rejections("schema"), 1.0);
}

#[test]
fn check_url_lints_the_url_given_to_twilio() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let proxy = Proxy::start(ProxySpec::new(upstream.addr));
    let check = |url: &str| {
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&proxy.config_path)
            .args(["--url", url])
            .env("TNP_TOKEN", TOKEN)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = check(PUBLIC_URL);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("url ok"), "{out}");
    let (code, out) = check(&PUBLIC_URL.replace(".com", ".com:443"));
    assert_eq!(code, Some(0), "the default port is the same URL: {out}");

    for (url, expected) in [
        (PUBLIC_URL.replace("https", "http"), "not https"),
        (PUBLIC_URL.replace("voice.", "voice_1."), "underscore"),
        (
            PUBLIC_URL.replace(PATH, "/other"),
            "no route serves the path /other",
        ),
        (
            PUBLIC_URL.replace("voice.", "calls."),
            "routes[0].public_url is https://voice.example.com/twilio/client-notify",
        ),
    ] {
        let (code, out) = check(&url);
        assert_eq!(code, Some(1), "{url}: {out}");
        assert!(
            out.contains(expected),
            "{url}: expected {expected:?} in {out}"
        );
    }
}
