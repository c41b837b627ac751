//! Twilio's error events on a `twilio_errors` route, through the real proxy: the Debugger
//! webhook and Event Streams batches, signed as Twilio signs them, counted by code once each;
//! refused like notifications when unsigned, tampered, oversized or malformed; and every 13807
//! reconciled with what the proxy answered for its call.

mod harness;

use harness::events::*;
use harness::*;
use serde_json::json;

fn errors(proxy: &Proxy, code: &str) -> f64 {
    proxy.metric(&format!(
        "notify_proxy_twilio_errors_total{{error_code=\"{code}\"}}"
    ))
}

fn events(proxy: &Proxy, result: &str) -> f64 {
    proxy.metric(&format!(
        "notify_proxy_twilio_events_total{{result=\"{result}\"}}"
    ))
}

fn seen(proxy: &Proxy, seen: &str) -> f64 {
    proxy.metric(&format!(
        "notify_proxy_twilio_13807_total{{seen=\"{seen}\"}}"
    ))
}

fn route_outcome(proxy: &Proxy, outcome: &str) -> f64 {
    proxy.metric(&format!(
        "notify_proxy_requests_total{{outcome=\"{outcome}\",route=\"{ERRORS_ROUTE_NAME}\"}}"
    ))
}

fn route_rejections(proxy: &Proxy, reason: &str) -> f64 {
    proxy.metric(&format!(
        "notify_proxy_rejections_total{{reason=\"{reason}\",route=\"{ERRORS_ROUTE_NAME}\"}}"
    ))
}

fn spec(handler: &MockUpstream) -> ProxySpec {
    let mut spec = ProxySpec::new(handler.addr);
    spec.route_extra = errors_route();
    spec.capture_stderr = true;
    // The reconciler's lines are warnings: visible at the usual `warn` too.
    spec.env.push(("RUST_LOG".into(), "warn".into()));
    spec
}

#[track_caller]
fn taken(r: &Response, received: u64, counted: u64) {
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("X-Request-Id").expect("X-Request-Id");
    assert_eq!(
        r.json(),
        json!({"received": received, "errors": counted, "request_id": id}),
        "{}",
        r.text()
    );
}

#[test]
fn error_events_of_both_channels_are_counted_by_code_once_each() {
    let handler = MockUpstream::start(Behaviour::status(200, "{}"));
    let proxy = Proxy::start(spec(&handler));

    // Every series exists before the first event.
    for code in [
        "13807", "13806", "11200", "11205", "11210", "11220", "11236", "other",
    ] {
        assert_eq!(errors(&proxy, code), 0.0, "{code}");
    }
    for result in ["counted", "duplicate", "ignored", "dropped"] {
        assert_eq!(events(&proxy, result), 0.0, "{result}");
    }

    // The Debugger webhook: a 13807 for a call this proxy never saw.
    let event = sid("NO");
    let form = debugger_error(&event, "13807", Some(&sid("CA")));
    taken(&proxy.send(&debugger_request(&form)), 1, 1);
    eventually("the 13807 counted", || errors(&proxy, "13807") == 1.0);
    assert_eq!(events(&proxy, "counted"), 1.0);

    // Twilio's retry of it, and the same error through Event Streams: one error still.
    taken(&proxy.send(&debugger_request(&form)), 1, 1);
    let batch = json!([error_logged(&event, "ERROR", "13807", None)]).to_string();
    taken(&proxy.send(&event_streams_request(&batch)), 1, 1);
    eventually("both copies seen as duplicates", || {
        events(&proxy, "duplicate") == 2.0
    });
    assert_eq!(errors(&proxy, "13807"), 1.0);

    // An Event Streams batch: errors by code (one not in the list is `other`), the rest ignored.
    let batch = json!([
        error_logged(&sid("NO"), "ERROR", "11200", None),
        error_logged(&sid("NO"), "INFO", "82005", None),
        sink_test_event(),
        error_logged(&sid("NO"), "ERROR", "99999", None),
    ])
    .to_string();
    taken(&proxy.send(&event_streams_request(&batch)), 4, 2);
    eventually("11200 and other counted", || {
        errors(&proxy, "11200") == 1.0 && errors(&proxy, "other") == 1.0
    });
    assert_eq!(events(&proxy, "ignored"), 2.0);
    // A Debugger warning is taken and ignored too.
    let warning = debugger_form(
        &sid("NO"),
        "Warning",
        &debugger_payload(
            "15003",
            None,
            &Called {
                url: ERRORS_URL,
                status: None,
            },
        ),
    );
    taken(&proxy.send(&debugger_request(&warning)), 1, 0);
    eventually("the warning ignored", || events(&proxy, "ignored") == 3.0);

    assert_eq!(route_outcome(&proxy, "twilio_events"), 5.0);
    assert_eq!(events(&proxy, "counted"), 3.0);
    assert_eq!(handler.request_count(), 0, "events are never forwarded");
}

#[test]
fn unsigned_tampered_oversized_and_malformed_events_are_refused_and_not_counted() {
    let handler = MockUpstream::start(Behaviour::status(200, "{}"));
    let mut spec = spec(&handler);
    spec.max_body_bytes = 4096;
    spec.top_extra = format!("allowed_accounts: [{ACCOUNT}]\n");
    let proxy = Proxy::start(spec);

    let form = debugger_error(&sid("NO"), "13807", Some(&sid("CA")));
    let unsigned = request(ERRORS_PATH, "application/x-www-form-urlencoded", &[], &form);
    assert_refused(&proxy.send(&unsigned), 403, "signature_missing");
    let wrong_token = debugger_request_signed(&form, "not-the-token");
    assert_refused(&proxy.send(&wrong_token), 403, "signature_mismatch");
    // Signed, then the code changed on the way.
    let tampered = String::from_utf8(debugger_request(&form))
        .unwrap()
        .replace("13807", "11200");
    assert_refused(&proxy.send(tampered.as_bytes()), 403, "signature_mismatch");
    let batch = json!([error_logged(&sid("NO"), "ERROR", "13807", None)]).to_string();
    let tampered = String::from_utf8(event_streams_request(&batch))
        .unwrap()
        .replace("13807", "11200");
    assert_refused(&proxy.send(tampered.as_bytes()), 403, "body_hash_mismatch");

    // Signed but not what Twilio sends: the field is named.
    let bad_sid = debugger_form(
        "no-sid",
        "Error",
        &debugger_payload(
            "13807",
            None,
            &Called {
                url: ERRORS_URL,
                status: Some(502),
            },
        ),
    );
    let r = proxy.send(&debugger_request(&bad_sid));
    assert_refused(&r, 400, "schema");
    assert!(
        r.json()["detail"].as_str().unwrap().starts_with("Sid:"),
        "{}",
        r.text()
    );
    let not_a_batch = json!({"type": "x"}).to_string();
    assert_refused(
        &proxy.send(&event_streams_request(&not_a_batch)),
        400,
        "not_json",
    );
    let other_account = form.replace(ACCOUNT, "AC9999999999abcdef0123456789abcdef");
    assert_refused(
        &proxy.send(&debugger_request(&other_account)),
        403,
        "unknown_account",
    );
    let xml = request(ERRORS_PATH, "text/xml", &[], "<x/>");
    assert_refused(&proxy.send(&xml), 415, "content_type");

    // Size: exactly max_body_bytes is taken, one byte more is 413.
    let sized = |len: usize| {
        let base = debugger_error(&sid("NO"), "11205", None);
        let pad = len - base.len() - "&Pad=".len();
        format!("{base}&Pad={}", "x".repeat(pad))
    };
    taken(&proxy.send(&debugger_request(&sized(4096))), 1, 1);
    assert_refused(
        &proxy.send(&debugger_request(&sized(4097))),
        413,
        "too_large",
    );
    eventually("the event of exactly the limit counted", || {
        errors(&proxy, "11205") == 1.0
    });

    for reason in [
        "signature_missing",
        "body_hash_mismatch",
        "schema",
        "not_json",
        "unknown_account",
        "content_type",
        "too_large",
    ] {
        assert_eq!(route_rejections(&proxy, reason), 1.0, "{reason}");
    }
    assert_eq!(route_rejections(&proxy, "signature_mismatch"), 2.0);
    assert_eq!(route_outcome(&proxy, "rejected"), 9.0);
    assert_eq!(route_outcome(&proxy, "twilio_events"), 1.0);
    assert_eq!(errors(&proxy, "13807"), 0.0, "nothing refused was counted");
    assert_eq!(events(&proxy, "counted"), 1.0);
    assert_eq!(handler.request_count(), 0);
}

/// The log line the reconciler wrote for `call`.
fn reconciled_line(proxy: &Proxy, call: &str) -> String {
    let mut line = String::new();
    eventually(&format!("the 13807 line for {call}"), || {
        match proxy
            .log_lines()
            .into_iter()
            .find(|l| l.contains("Twilio logged 13807") && l.contains(call))
        {
            Some(l) => {
                line = l;
                true
            }
            None => false,
        }
    });
    line
}

#[test]
fn each_13807_is_classified_by_what_the_proxy_answered_for_its_call() {
    let handler = MockUpstream::start(Behaviour::status(500, "{\"oops\":1}"));
    let mut spec = spec(&handler);
    spec.route_extra = format!("    retry: {{ max_attempts: 1 }}{}", errors_route());
    let proxy = Proxy::start(spec);

    // Call A: the handler failed, the proxy answered 502.
    let call_a = sid("CA");
    let r = proxy.send(&twilio_request(&notification_for(&call_a)));
    assert_refused(&r, 502, "upstream_5xx");
    // Call B: delivered, 200.
    handler.set_behaviour(Behaviour::status(200, "{\"dispatched\":\"bob\"}"));
    let call_b = sid("CA");
    let r = proxy.send(&twilio_request(&notification_for(&call_b)));
    assert_eq!(r.status, 200);
    // Call D: a copy with a wrong signature, refused 403 (its body, and call, unverified).
    let call_d = sid("CA");
    let body = notification_for(&call_d);
    let (target, _) = sign(&body, TOKEN);
    let (_, wrong) = sign(&body, "another-token");
    let r = proxy.send(&request_with(
        &target,
        &[("X-Twilio-Signature", &wrong)],
        &body,
    ));
    assert_refused(&r, 403, "signature_mismatch");
    // Call C: never sent.
    let call_c = sid("CA");

    for call in [&call_a, &call_b, &call_c, &call_d] {
        let form = debugger_error(&sid("NO"), "13807", Some(call));
        taken(&proxy.send(&debugger_request(&form)), 1, 1);
    }
    let line = reconciled_line(&proxy, &call_a);
    assert!(line.contains("seen=\"answered_error\""), "{line}");
    assert!(line.contains("channel=\"debugger\""), "{line}");
    assert!(line.contains("proxy_outcome=\"upstream_5xx\""), "{line}");
    assert!(
        line.contains("proxy_status=\"502\"") && line.contains("twilio_status=\"502\""),
        "{line}"
    );
    assert!(
        line.contains("proxy_verified=\"true\"") && line.contains("url_known=\"yes\""),
        "{line}"
    );
    let line = reconciled_line(&proxy, &call_b);
    assert!(
        line.contains("seen=\"answered_ok\"") && line.contains("proxy_status=\"200\""),
        "{line}"
    );
    let line = reconciled_line(&proxy, &call_c);
    assert!(
        line.contains("seen=\"not_seen\"") && line.contains("proxy_outcome=\"-\""),
        "{line}"
    );
    let line = reconciled_line(&proxy, &call_d);
    assert!(line.contains("seen=\"answered_error\""), "{line}");
    assert!(
        line.contains("proxy_reason=\"signature_mismatch\""),
        "{line}"
    );
    assert!(line.contains("proxy_verified=\"false\""), "{line}");
    assert_eq!(seen(&proxy, "answered_error"), 2.0);
    assert_eq!(seen(&proxy, "answered_ok"), 1.0);
    assert_eq!(seen(&proxy, "not_seen"), 1.0);
    assert_eq!(seen(&proxy, "unknown"), 0.0);

    // The URL Twilio called is none this proxy serves: said in the line and counted.
    let wrong_url = format!(
        "https://voice.example.com/twilio/client-notfy?{}",
        "x".repeat(5000)
    );
    let call_e = sid("CA");
    let form = debugger_form(
        &sid("NO"),
        "Error",
        &debugger_payload(
            "13807",
            Some(&call_e),
            &Called {
                url: &wrong_url,
                status: Some(404),
            },
        ),
    );
    taken(&proxy.send(&debugger_request(&form)), 1, 1);
    let line = reconciled_line(&proxy, &call_e);
    assert!(
        line.contains("url_known=\"no\"") && line.contains("not a public_url"),
        "{line}"
    );
    assert!(
        line.len() < 2000,
        "the URL is echoed bounded: {} bytes",
        line.len()
    );
    assert_eq!(
        proxy.metric("notify_proxy_twilio_13807_unknown_url_total"),
        1.0
    );

    // An event naming no call cannot be reconciled.
    let form = debugger_error(&sid("NO"), "13807", None);
    taken(&proxy.send(&debugger_request(&form)), 1, 1);
    eventually("the call-less 13807 counted unknown", || {
        seen(&proxy, "unknown") == 1.0
    });
    // Only 13807s are reconciled: an 11200 for call A is counted, and not reconciled (the
    // worker takes events in order, so once the 13807 after it is, it would have been).
    let form = debugger_error(&sid("NO"), "11200", Some(&call_a));
    taken(&proxy.send(&debugger_request(&form)), 1, 1);
    let form = debugger_error(&sid("NO"), "13807", None);
    taken(&proxy.send(&debugger_request(&form)), 1, 1);
    eventually("the next 13807 reconciled", || {
        seen(&proxy, "unknown") == 2.0
    });
    assert_eq!(errors(&proxy, "11200"), 1.0);
    assert_eq!(
        (
            seen(&proxy, "answered_error"),
            seen(&proxy, "answered_ok"),
            seen(&proxy, "not_seen")
        ),
        (2.0, 1.0, 2.0)
    );
}

/// A `twilio_errors` route added by SIGHUP takes events from the next request, and the answers
/// given from then on are remembered for it; `twilio_errors:` itself needs a restart.
#[test]
fn a_reload_adds_a_twilio_errors_route_and_its_memory_starts_then() {
    let handler = MockUpstream::start(Behaviour::status(200, "{}"));
    let mut spec = spec(&handler);
    spec.route_extra = String::new();
    let proxy = Proxy::start(spec);
    let form = debugger_error(&sid("NO"), "13807", None);
    let r = proxy.send(&debugger_request(&form));
    assert_refused(&r, 404, "unknown_route");

    let call = sid("CA");
    // The route goes after the notification route, at the end of the file.
    proxy.reload_with(&format!("{}{}", proxy.config(), errors_route()), "success");
    taken(&proxy.send(&debugger_request(&form)), 1, 1);
    assert_eq!(
        proxy.send(&twilio_request(&notification_for(&call))).status,
        200
    );
    let form = debugger_error(&sid("NO"), "13807", Some(&call));
    taken(&proxy.send(&debugger_request(&form)), 1, 1);
    eventually(
        "the 13807 reconciled with the answer given after the reload",
        || seen(&proxy, "answered_ok") == 1.0,
    );

    let changed = format!("{}twilio_errors: {{ remember: 5m }}\n", proxy.config());
    proxy.reload_with(&changed, "restart_required");
}
