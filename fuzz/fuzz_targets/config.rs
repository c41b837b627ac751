//! Fuzz target: the config loader (`Config::from_yaml`), from YAML text to the validated config.
//!
//! Input: the YAML text, loaded as if it were a file in `conf/` (so the shipped schema resolves
//! as `schemas/client-notification.schema.json`). `TWILIO_AUTH_TOKEN` is set. Seeds: the
//! example config and variants of it from the config tests.
//!
//! Inputs are skipped (not loaded) when they would make the loader touch the machine rather
//! than the text: a peer that is not an `IP:port` (the loader resolves host names through DNS)
//! and a file path (schema, secret, TLS) that is absolute or climbs out with `..`, which could
//! name a device such as /dev/zero. Everything else goes through.
//!
//! Properties, beyond "no panic":
//! - loading is deterministic: the same text gives the same verdict, the same error text or the
//!   same config (compared through its summary and every route's settings);
//! - an accepted config holds the documented invariants: listeners, routes and peers present;
//!   admin apart from the listeners; body limit in 1..=1 MiB; unique route paths and names,
//!   each path starting with `/` without a query and found by the route table; deadlines below
//!   Twilio's 15 s; only 5xx retried; buffered routes have a buffer and answer 2xx; form routes
//!   carry no schema; a public URL reads back as the same host, port and path; error-event
//!   routes share the unique paths and names and are pinned by a public URL or allowed hosts;
//! - every backoff in an accepted config stays within its cap for any retry count and random
//!   draw, and never panics (durations are user input: `1000000y` is legal humantime).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde_yaml::Value;
use twilio_notify_proxy::config::{self, BodyKind, Config, OnExhausted};
use twilio_notify_proxy::policy::{Backoff, RetryPolicy};
use twilio_notify_proxy::signature::SignedUrl;

fn config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/fuzz-input.yaml")
}

/// Whether loading `value` stays inside the text: see the module doc.
fn stays_inside(value: &Value) -> bool {
    match value {
        Value::Tagged(t) => stays_inside(&t.value),
        Value::Sequence(items) => items.iter().all(stays_inside),
        Value::Mapping(map) => map.iter().all(|(k, v)| {
            let key = match k {
                Value::String(s) => s.as_str(),
                _ => "",
            };
            let ok_here = match key {
                "schema" | "file" | "cert_file" | "key_file" => safe_path(v),
                "peers" => match untag(v) {
                    Value::Sequence(peers) => peers.iter().all(|p| {
                        matches!(untag(p), Value::String(s) if s.parse::<std::net::SocketAddr>().is_ok())
                    }),
                    _ => false,
                },
                _ => true,
            };
            ok_here && stays_inside(k) && stays_inside(v)
        }),
        _ => true,
    }
}

fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

fn safe_path(value: &Value) -> bool {
    match untag(value) {
        Value::Null => true,
        Value::String(s) => {
            let p = Path::new(s);
            !s.contains('\0')
                && p.is_relative()
                && p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
        }
        _ => false,
    }
}

/// The parts of a config that must come out the same from the same text.
fn fingerprint(c: &Config) -> String {
    let routes: Vec<String> = c
        .routes
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} -> {} {:?} {:?} schema={} {:?} {:?}",
                r.name,
                r.path,
                r.public_url,
                c.upstreams[r.upstream].name,
                r.body,
                r.schema_mode,
                r.schema.is_some(),
                r.retry,
                r.on_exhausted
            )
        })
        .collect();
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {routes:?}",
        config::summary(c),
        c.server,
        c.listeners,
        c.limits,
        c.trusted_proxies,
        c.upstreams,
        c.buffer,
        c.dedupe,
        c.logging,
        c.warnings,
        {
            let mut a: Vec<_> = c.allowed_accounts.iter().collect();
            a.sort();
            a
        },
    )
}

fn check_backoff(b: &Backoff) {
    let cap = b.delay(u32::MAX, 0.0);
    let mut previous = Duration::ZERO;
    for retry in [0, 1, 2, 3, 10, 31, 32, 1000, u32::MAX] {
        let full = b.delay(retry, 0.0);
        assert!(full <= cap && full >= previous, "{b:?} retry {retry}");
        previous = full;
        for random in [0.25, 0.5, 0.999_999] {
            assert!(b.delay(retry, random) <= full, "{b:?} retry {retry}");
        }
    }
}

fn check_retry(r: &RetryPolicy) {
    check_backoff(&r.backoff);
    assert!(!r.deadline.is_zero() && r.deadline < Duration::from_secs(15));
    assert!(r.retry_statuses.iter().all(|s| (500..=599).contains(s)));
    for done in [0, 1, r.max_attempts.get(), u32::MAX] {
        // Elapsed is time since arrival: realistic values only.
        for elapsed in [Duration::ZERO, r.deadline / 2, r.deadline] {
            if let Some(wait) = r.next_attempt(done, elapsed, 0.5) {
                assert!(done < r.max_attempts.get());
                assert!(elapsed + wait < r.deadline);
            }
        }
    }
}

fn check_invariants(c: &Config) {
    assert!(!c.listeners.is_empty());
    assert!(c.listeners.iter().all(|l| l.address != c.admin_address));
    assert!((1..=1024 * 1024).contains(&c.limits.max_body_bytes));
    assert!(!c.limits.body_timeout.is_zero() && !c.limits.header_timeout.is_zero());
    assert!(!c.upstreams.is_empty());
    assert!(c.upstreams.iter().all(|u| !u.peers.is_empty()));
    assert!(!c.routes.is_empty());
    for (i, r) in c.routes.iter().enumerate() {
        assert!(
            r.path.starts_with('/') && !r.path.contains('?'),
            "{:?}",
            r.path
        );
        // Routes are found by exact path: one route per path.
        assert_eq!(c.routes.iter().filter(|o| o.path == r.path).count(), 1, "route {i}");
        assert_eq!(c.routes.iter().filter(|o| o.name == r.name).count(), 1);
        assert!(r.upstream < c.upstreams.len());
        assert!(r.body == BodyKind::Json || r.schema.is_none());
        check_retry(&r.retry);
        if let OnExhausted::Buffer { ttl, status } = r.on_exhausted {
            assert!(c.buffer.is_some() && !ttl.is_zero() && status.is_success());
        }
        if let Some(u) = &r.public_url {
            assert!(!u.host.contains('_'));
            let port = u.port.as_ref().map(|p| format!(":{p}")).unwrap_or_default();
            let text = format!("{}://{}{}{}", u.scheme, u.host, port, u.path);
            let again = SignedUrl::parse(&text).expect("a public URL reads back");
            assert_eq!(
                (again.scheme, again.host, again.port, again.path),
                (
                    u.scheme.as_str(),
                    u.host.as_str(),
                    u.port.as_deref(),
                    u.path.as_bytes()
                )
            );
            assert!(again.query.is_empty());
        }
    }
    // Routes of Twilio's error events share the paths' and names' namespace, and the rules of
    // the public URL.
    for e in &c.error_routes {
        assert!(e.path.starts_with('/') && !e.path.contains('?'), "{:?}", e.path);
        assert!(c.routes.iter().all(|r| r.path != e.path && r.name != e.name));
        assert_eq!(c.error_routes.iter().filter(|o| o.path == e.path).count(), 1);
        assert_eq!(c.error_routes.iter().filter(|o| o.name == e.name).count(), 1);
        assert!(e.public_url.is_some() != !e.allowed_hosts.is_empty());
        assert!(e.public_url.as_ref().is_none_or(|u| !u.host.contains('_')));
    }
    assert!((60..=86_400).contains(&c.twilio_errors.remember.as_secs()));
    assert!(c.twilio_errors.max_calls.get() <= 10_000_000);
    if let Some(b) = &c.buffer {
        assert!(b.max_messages >= 1);
        check_backoff(&b.redelivery_backoff);
    }
    if let Some(d) = &c.dedupe {
        assert!((1..=10_000_000).contains(&d.capacity) && !d.ttl.is_zero());
    }
}

fuzz_target!(|data: &[u8]| {
    static ENV: Once = Once::new();
    // The example config names this variable; set before any load, while single-threaded.
    ENV.call_once(|| std::env::set_var("TWILIO_AUTH_TOKEN", "fuzz-token"));

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = serde_yaml::from_str::<Value>(text) else {
        // Not YAML at all: the loader must refuse it too (and not panic doing so).
        assert!(Config::from_yaml(text, &config_path()).is_err());
        return;
    };
    let mut merged = value.clone();
    if merged.apply_merge().is_err() || !stays_inside(&value) || !stays_inside(&merged) {
        return;
    }
    let path = config_path();
    let first = Config::from_yaml(text, &path);
    let second = Config::from_yaml(text, &path);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(fingerprint(a), fingerprint(b));
            check_invariants(a);
        }
        (Err(a), Err(b)) => assert_eq!(format!("{a:#}"), format!("{b:#}")),
        _ => panic!("the same text loaded differently"),
    }
});
