//! `routes[].kind: twilio_errors` and the `twilio_errors:` section.

use super::{err, load, yaml, TOKEN_VAR};

const ERRORS_ROUTE: &str =
    "  - kind: twilio_errors\n    name: twilio-errors\n    public_url: https://voice.example.com/twilio/errors\n";

#[test]
fn a_twilio_errors_route_is_an_endpoint_only() {
    let config = load(&yaml(ERRORS_ROUTE, "", TOKEN_VAR)).unwrap();
    assert_eq!(config.routes.len(), 1, "notification routes");
    assert_eq!(config.error_routes.len(), 1);
    let r = &config.error_routes[0];
    assert_eq!(
        (r.name.as_str(), r.path.as_str()),
        ("twilio-errors", "/twilio/errors")
    );
    assert_eq!(r.public_url.as_ref().unwrap().host, "voice.example.com");

    // Every key about a handler is refused by name: it would do nothing.
    for (line, key) in [
        ("    upstream: handler", "upstream"),
        ("    body: form", "body"),
        ("    schema_mode: report", "schema_mode"),
        ("    retry: { max_attempts: 2 }", "retry"),
        ("    on_exhausted: buffer", "on_exhausted"),
        ("    buffer_ttl: 30s", "buffer_ttl"),
        ("    buffered_status: 202", "buffered_status"),
    ] {
        let e = err(&yaml(&format!("{ERRORS_ROUTE}{line}"), "", TOKEN_VAR));
        assert!(e.contains(&format!("routes[1].{key}")), "{key}: {e}");
        assert!(e.contains("forwards nothing"), "{e}");
    }
    // The endpoint rules are the notification routes' own.
    let e = err(&yaml(
        "  - kind: twilio_errors\n    public_url: https://bad_host.example.com/e\n",
        "",
        TOKEN_VAR,
    ));
    assert!(
        e.contains("routes[1].public_url") && e.contains("underscore"),
        "{e}"
    );
    let e = err(&yaml(
        "  - kind: twilio_errors\n    path: /e\n",
        "",
        TOKEN_VAR,
    ));
    assert!(e.contains("allowed_hosts"), "{e}");
    let hosts = load(&yaml(
        "  - kind: twilio_errors\n    path: /e\n    allowed_hosts: [Voice.Example.com]\n",
        "",
        TOKEN_VAR,
    ))
    .unwrap();
    assert_eq!(hosts.error_routes[0].allowed_hosts, ["voice.example.com"]);
    assert_eq!(
        hosts.error_routes[0].name, "/e",
        "the name defaults to the path"
    );
    let e = err(&yaml("  - kind: errors\n    path: /e\n", "", TOKEN_VAR));
    assert!(
        e.contains("routes[1].kind") && e.contains("twilio_errors"),
        "{e}"
    );
}

#[test]
fn paths_and_names_are_unique_across_kinds() {
    let e = err(&yaml(
        "  - kind: twilio_errors\n    public_url: https://voice.example.com/notify\n",
        "",
        TOKEN_VAR,
    ));
    assert!(
        e.contains("routes[1].path") && e.contains("already served"),
        "{e}"
    );
    let e = err(&yaml(
        "  - kind: twilio_errors\n    name: /notify\n    public_url: https://voice.example.com/e\n",
        "",
        TOKEN_VAR,
    ));
    assert!(
        e.contains("routes[1].name") && e.contains("used twice"),
        "{e}"
    );
}

#[test]
fn a_notification_route_still_needs_its_handler_keys() {
    let base = yaml("", "", TOKEN_VAR);
    let e = err(&base.replacen("    upstream: handler\n", "", 1));
    assert!(e.contains("routes[0].upstream: required"), "{e}");
    let e = err(&base.replacen("    body: json\n", "", 1));
    assert!(e.contains("routes[0].body: required"), "{e}");
    // And a file of error routes only serves no notification.
    let only = base.replacen(
        "  - path: /notify\n    public_url: https://voice.example.com/notify\n    upstream: handler\n    body: json\n",
        ERRORS_ROUTE,
        1,
    );
    let only = only.replace(&format!("    schema: {}\n", super::SCHEMA), "");
    let e = err(&only);
    assert!(e.contains("routes: at least one route is required"), "{e}");
}

#[test]
fn twilio_errors_memory_has_bounds_on_both_sides() {
    let c = load(&yaml("", "", TOKEN_VAR)).unwrap();
    assert_eq!(c.twilio_errors.remember.as_secs(), 600);
    assert_eq!(c.twilio_errors.max_calls.get(), 100_000);
    for (value, ok) in [
        ("remember: 1m", true),
        ("remember: 59s", false),
        ("remember: 24h", true),
        ("remember: 1441m", false),
        ("max_calls: 1", true),
        ("max_calls: 0", false),
        ("max_calls: 10000000", true),
        ("max_calls: 10000001", false),
    ] {
        let text = yaml("", &format!("twilio_errors: {{ {value} }}"), TOKEN_VAR);
        match load(&text) {
            Ok(_) => assert!(ok, "{value} should be refused"),
            Err(e) => {
                assert!(!ok, "{value}: {e:#}");
                assert!(format!("{e:#}").contains("twilio_errors."), "{e:#}");
            }
        }
    }
}

#[test]
fn check_shows_the_error_event_routes() {
    let config = load(&yaml(ERRORS_ROUTE, "", TOKEN_VAR)).unwrap();
    let shown = super::super::summary(&config);
    assert_eq!(
        shown.get("twilio errors").map(String::as_str),
        Some("/twilio/errors (remembered 600s, at most 100000 calls)")
    );
    let without = load(&yaml("", "", TOKEN_VAR)).unwrap();
    assert!(!super::super::summary(&without).contains_key("twilio errors"));
}
