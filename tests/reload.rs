//! Live reload end to end: the real binary, a real handler, a real SIGHUP.
//!
//! The Auth Token is rotated under load through `secondary_auth_token` (secrets come from
//! files: a running process's environment cannot change). No request may fail across the
//! reloads; the new token passes once loaded; the old one stops passing once removed. A reload
//! that changes a restart-only key, or a file that does not validate, is refused and the
//! running config keeps serving.

mod harness;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use harness::*;

const NEW_TOKEN: &str = "rotated-auth-token-9876543210";

fn request_signed_with(token: &str) -> Vec<u8> {
    let body = notification();
    let (target, signature) = sign(&body, token);
    request_with(
        &target,
        &[("X-Twilio-Signature", signature.as_str())],
        &body,
    )
}

fn secrets(dir: &Path, primary: &str, secondary: Option<&str>) -> String {
    let mut s = format!(
        "  auth_token: {{ file: {} }}\n",
        dir.join(primary).display()
    );
    if let Some(secondary) = secondary {
        s.push_str(&format!(
            "  secondary_auth_token: {{ file: {} }}\n",
            dir.join(secondary).display()
        ));
    }
    s
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The one `notify_proxy_config_info` sample: a reload replaces the series, never adds one.
fn config_info(proxy: &Proxy) -> String {
    let metrics = proxy.metrics();
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("notify_proxy_config_info{"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one series, the file serving now: {lines:?}"
    );
    lines[0].to_string()
}

/// The sample for a config file `text`: the first 16 hex digits of its SHA-256.
fn config_info_of(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("notify_proxy_config_info{{hash=\"{hex}\"}} 1")
}

#[test]
fn auth_token_rotation_under_load_fails_no_request() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("new"), format!("{NEW_TOKEN}\n")).unwrap();
    let mut spec = ProxySpec::new(upstream.addr);
    spec.secrets = secrets(dir.path(), "old", None);
    spec.env.clear();
    let proxy = Arc::new(Proxy::start(spec));
    let original = std::fs::read_to_string(&proxy.config_path).unwrap();
    let old_secrets = secrets(dir.path(), "old", None);
    assert!(original.contains(&old_secrets));

    // Load: one sender, signing like Twilio with whichever token Twilio uses at the time.
    let use_new = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // A failed assertion below must stop the sender too, or the test would hang instead of fail.
    let _stop_on_exit = StopOnDrop(stop.clone());
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let (proxy, use_new, stop) = (proxy.clone(), use_new.clone(), stop.clone());
        let (sent, failures) = (sent.clone(), failures.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let token = if use_new.load(Ordering::Relaxed) {
                    NEW_TOKEN
                } else {
                    TOKEN
                };
                match send_raw(proxy.addr, &request_signed_with(token)) {
                    Some(r) if r.status == 200 => {}
                    other => failures
                        .lock()
                        .unwrap()
                        .push(other.map(|r| (r.status, r.text()))),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let wait_for_traffic = || {
        let from = sent.load(Ordering::Relaxed);
        eventually_within(
            "requests under load",
            std::time::Duration::from_secs(10),
            || sent.load(Ordering::Relaxed) >= from + 20,
        );
    };
    wait_for_traffic();
    eventually("config_info (exported once SIGHUP is handled)", || {
        proxy.metrics().contains("notify_proxy_config_info{")
    });
    assert_eq!(config_info(&proxy), config_info_of(&original));

    // 1. Overlap: the new token primary, the old one secondary. Twilio may use either.
    let overlap = original.replace(&old_secrets, &secrets(dir.path(), "new", Some("old")));
    proxy.reload_with(&overlap, "success");
    assert_eq!(proxy.send(&request_signed_with(NEW_TOKEN)).status, 200);
    assert_eq!(proxy.send(&request_signed_with(TOKEN)).status, 200);
    assert_eq!(
        config_info(&proxy),
        config_info_of(&overlap),
        "the config hash follows the file"
    );
    wait_for_traffic();
    use_new.store(true, Ordering::Relaxed);
    wait_for_traffic();

    // 2. The old token removed: it stops passing, the new one keeps passing.
    let rotated = original.replace(&old_secrets, &secrets(dir.path(), "new", None));
    proxy.reload_with(&rotated, "success");
    let refused = proxy.send(&request_signed_with(TOKEN));
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.reason(), "signature_mismatch");
    assert_eq!(proxy.send(&request_signed_with(NEW_TOKEN)).status, 200);
    wait_for_traffic();

    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across the reloads: {:?}",
        failures.len(),
        sent.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
}

#[test]
fn a_reload_that_needs_a_restart_or_does_not_validate_keeps_the_old_config() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let proxy = Proxy::start(ProxySpec::new(upstream.addr));
    let original = std::fs::read_to_string(&proxy.config_path).unwrap();
    let hash = config_info(&proxy);

    // The listener's port is bound at start: changing it needs a restart. The same file also
    // changes a reloadable key (the route path): nothing of it may apply.
    let port = proxy.addr.port().to_string();
    let restart = original
        .replace(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{}", free_port()),
        )
        .replace(&format!("path: {PATH}"), "path: /moved");
    proxy.reload_with(&restart, "restart_required");
    assert_eq!(proxy.send(&twilio_request(&notification())).status, 200);
    assert_eq!(config_info(&proxy), hash);

    // A route naming an upstream that does not exist: what `check` refuses, reload refuses.
    let invalid = original.replace("upstream: handler", "upstream: nowhere");
    proxy.reload_with(&invalid, "invalid");
    assert_eq!(proxy.send(&twilio_request(&notification())).status, 200);
    assert_eq!(config_info(&proxy), hash);

    // Not YAML at all.
    proxy.reload_with("routes: [", "invalid");
    assert_eq!(proxy.send(&twilio_request(&notification())).status, 200);
    assert_eq!(
        proxy.metric("notify_proxy_config_reloads_total{result=\"success\"}"),
        0.0
    );
}

#[test]
fn a_reload_moves_the_route_to_a_new_handler_address() {
    let first = MockUpstream::start(Behaviour::status(200, "{}"));
    let second = MockUpstream::start(Behaviour::status(200, "{}"));
    let proxy = Proxy::start(ProxySpec::new(first.addr));
    let original = std::fs::read_to_string(&proxy.config_path).unwrap();
    assert_eq!(proxy.send(&twilio_request(&notification())).status, 200);
    assert_eq!(first.request_count(), 1);

    let moved = original.replace(&first.addr.to_string(), &second.addr.to_string());
    proxy.reload_with(&moved, "success");
    assert_eq!(proxy.send(&twilio_request(&notification())).status, 200);
    assert_eq!(first.request_count(), 1);
    assert_eq!(second.request_count(), 1);
}

/// A reload changes how buffered notifications are judged at the same moment as live ones:
/// with 500 added to `retry.on_status`, a 500 from the handler keeps a buffered message for
/// another try instead of ending it as a final answer.
#[test]
fn a_reloaded_retry_policy_applies_to_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(503, "down"));
    let mut spec = ProxySpec::new(upstream.addr);
    spec.top_extra = format!(
        "buffer:\n  path: {}\n  redelivery_interval: 50ms\n  redelivery_backoff: {{ initial: 50ms, max: 100ms }}",
        dir.path().join("b.redb").display()
    );
    spec.route_extra =
        "    on_exhausted: buffer\n    retry: { max_attempts: 1, on_status: [502, 503, 504] }"
            .into();
    spec.upstream_extra = "    circuit_breaker: { failure_threshold: 100000 }".into();
    let proxy = Proxy::start(spec);
    let answer = proxy.send(&twilio_request(&notification()));
    assert_eq!(answer.json()["buffered"], true, "{}", answer.text());

    let yaml = std::fs::read_to_string(&proxy.config_path).unwrap();
    proxy.reload_with(
        &yaml.replace(
            "on_status: [502, 503, 504]",
            "on_status: [500, 502, 503, 504]",
        ),
        "success",
    );
    upstream.set_behaviour(Behaviour::status(500, "still failing"));
    let failed =
        |p: &Proxy| p.metric(r#"notify_proxy_redeliveries_total{result="failed",route="notify"}"#);
    let before = failed(&proxy);
    eventually_within(
        "redeliveries answered 500",
        std::time::Duration::from_secs(20),
        || failed(&proxy) >= before + 3.0,
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_redeliveries_total{result="final_other",route="notify"}"#),
        0.0,
        "the 500 is retryable now, as on the live path"
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_buffer_messages{table="pending"}"#),
        1.0
    );
}

/// README: `trusted_proxies` applies live, from the next request after SIGHUP. Seen in what
/// the handler is told: an untrusted caller's `X-Forwarded-For` is dropped; once the reload
/// trusts 127.0.0.1 its list is kept and the peer joins it; trusted no more, dropped again.
#[test]
fn a_reload_changing_trusted_proxies_applies_to_the_next_request() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let mut spec = ProxySpec::new(upstream.addr);
    spec.top_extra = "trusted_proxies: [10.0.0.0/8]".into();
    let proxy = Proxy::start(spec);
    let told = || {
        let body = notification();
        let (target, signature) = sign(&body, TOKEN);
        let raw = request_with(
            &target,
            &[
                ("X-Twilio-Signature", &signature),
                ("X-Forwarded-For", "203.0.113.9"),
            ],
            &body,
        );
        let r = proxy.send(&raw);
        assert_eq!((r.status, r.text().as_str()), (200, "{}"));
        forwarded_lines(upstream.requests().last().unwrap())
    };
    let untrusted = ["X-Forwarded-For: 127.0.0.1", "X-Forwarded-Proto: http"];
    assert_eq!(told(), untrusted);

    let original = proxy.config();
    let trusting = original.replace(
        "trusted_proxies: [10.0.0.0/8]",
        "trusted_proxies: [10.0.0.0/8, 127.0.0.1/32]",
    );
    assert_ne!(trusting, original);
    proxy.reload_with(&trusting, "success");
    assert_eq!(
        told(),
        [
            "X-Forwarded-For: 203.0.113.9, 127.0.0.1",
            "X-Forwarded-Proto: http"
        ]
    );

    proxy.reload_with(&original, "success");
    assert_eq!(told(), untrusted);
    assert_eq!(upstream.request_count(), 3);
}

/// The other keys the README calls live: `limits`, `allowed_accounts`, `routes` (a path) and
/// `logging.access_log`, each changed under SIGHUP and seen in effect on the next request.
#[test]
fn a_reload_applies_limits_allowed_accounts_routes_and_access_log() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let mut spec = ProxySpec::new(upstream.addr);
    spec.capture_stderr = true;
    spec.env.push(("RUST_LOG".into(), "access=info".into()));
    let proxy = Proxy::start(spec);
    let original = proxy.config();
    let access_lines = || {
        proxy
            .log_lines()
            .iter()
            .filter(|l| l.contains("access"))
            .count()
    };
    assert_delivered(
        &proxy,
        &upstream,
        &twilio_request(&notification()),
        200,
        "{}",
    );
    eventually("the access line", || access_lines() == 1);

    // limits: a body limit below the notification's size.
    let small = original.replace("max_body_bytes: 65536", "max_body_bytes: 100");
    assert_ne!(small, original);
    proxy.reload_with(&small, "success");
    assert_refused(
        &proxy.send(&twilio_request(&notification())),
        413,
        "too_large",
    );

    // allowed_accounts: another account only.
    let others = format!("allowed_accounts: [AC00000000000000000000000000000001]\n{original}");
    proxy.reload_with(&others, "success");
    assert_refused(
        &proxy.send(&twilio_request(&notification())),
        403,
        "unknown_account",
    );

    // routes: the path moves (the public URL Twilio signs stays).
    let moved = original.replace(&format!("path: {PATH}"), "path: /moved");
    assert_ne!(moved, original);
    proxy.reload_with(&moved, "success");
    let r = proxy.send(&twilio_request(&notification()));
    assert_refused(&r, 404, "unknown_route");
    let body = notification();
    let (target, signature) = sign(&body, TOKEN);
    let raw = request_with(
        &target.replace(PATH, "/moved"),
        &[("X-Twilio-Signature", &signature)],
        &body,
    );
    assert_delivered(&proxy, &upstream, &raw, 200, "{}");

    // logging.access_log: off, no access line for the next request.
    let quiet = format!("logging: {{ access_log: false }}\n{original}");
    proxy.reload_with(&quiet, "success");
    let lines = access_lines();
    assert_delivered(
        &proxy,
        &upstream,
        &twilio_request(&notification()),
        200,
        "{}",
    );
    // The request's own lines (if any) are written before its answer; give the writer a pass.
    proxy.reload_with(&original, "success");
    assert_delivered(
        &proxy,
        &upstream,
        &twilio_request(&notification()),
        200,
        "{}",
    );
    eventually(
        "the access line of the request after access_log is on again",
        || access_lines() > lines,
    );
    assert_eq!(
        access_lines(),
        lines + 1,
        "only the request after the second reload was logged"
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_config_reloads_total{result="success"}"#),
        5.0
    );
}
