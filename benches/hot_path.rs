//! The per-request validation cost: signature + body hash + JSON parse + schema, as the proxy
//! runs it (`checks::check_request`), and its parts. Target: ≤ 3 µs for the whole check.
//!
//! Also what remembering an answer costs a request while a `twilio_errors` route exists (the
//! in-memory ledger at its bound: every new call forgets the oldest).
//!
//! Run: `cargo bench --bench hot_path`

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use twilio_notify_proxy::checks::{check_request, Inbound};
use twilio_notify_proxy::config::{BodyKind, Route, SchemaMode};
use twilio_notify_proxy::schema::{parse_json, NotificationSchema};
use twilio_notify_proxy::signature::{
    sign_json, verify_body_hash, verify_signature, Algorithm, KeyRing, SignedUrl, SigningKey,
};

const BODY: &str = r#"{"twi_account_sid":"AC0123456789abcdef0123456789abcdef","twi_bridge_token":"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl","twi_call_sid":"CA0123456789abcdef0123456789abcdef","twi_from":"client:alice","twi_message_id":"WB0123456789abcdef0123456789abcdef","twi_message_type":"twilio.voice.call","twi_to":"client:bob"}"#;
const PUBLIC: &str = "https://voice.example.com/twilio/client-notify";

fn schema() -> NotificationSchema {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/schemas/client-notification.schema.json"
    );
    let value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    NotificationSchema::compile(&value).unwrap()
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::new(Algorithm::HmacSha1, b"bench-token");
    let keys = KeyRing {
        auth_tokens: vec![key.clone()],
        ..Default::default()
    };
    let (url, signature) = sign_json(&key, PUBLIC, BODY.as_bytes()).unwrap();
    let signed_url = SignedUrl::parse(&url).unwrap();
    let schema = Arc::new(schema());
    let route = Route {
        name: "bench".into(),
        path: "/twilio/client-notify".into(),
        public_url: None,
        allowed_hosts: vec!["voice.example.com".into()],
        upstream: 0,
        body: BodyKind::Json,
        schema: Some(schema.clone()),
        schema_mode: SchemaMode::Enforce,
        retry: twilio_notify_proxy::policy::RetryPolicy::default(),
        on_exhausted: twilio_notify_proxy::config::OnExhausted::Fail,
    };
    let allowed = HashSet::new();
    let signatures = [signature.as_bytes()];
    let inbound = Inbound {
        url: signed_url,
        signatures: &signatures,
        signature_settings: None,
        body: BODY.as_bytes(),
    };
    assert!(check_request(&route, &keys, &allowed, &inbound).is_ok());

    c.bench_function(
        "check_request (signature + body hash + parse + schema)",
        |b| {
            b.iter(|| {
                check_request(black_box(&route), &keys, &allowed, black_box(&inbound)).unwrap()
            })
        },
    );
    c.bench_function("verify_signature (HMAC-SHA1, pre-keyed)", |b| {
        b.iter(|| {
            verify_signature(&[&key], black_box(&signed_url), b"", signature.as_bytes()).unwrap()
        })
    });
    c.bench_function("verify_body_hash (SHA-256)", |b| {
        b.iter(|| {
            verify_body_hash(black_box(signed_url.query), black_box(BODY.as_bytes())).unwrap()
        })
    });
    c.bench_function("parse_json", |b| {
        b.iter(|| parse_json(black_box(BODY.as_bytes())).unwrap())
    });
    let value = parse_json(BODY.as_bytes()).unwrap();
    c.bench_function("schema check (compiled)", |b| {
        b.iter(|| schema.check(black_box(&value)).unwrap())
    });
}

fn remember_answer(c: &mut Criterion) {
    use std::time::Duration;
    use twilio_notify_proxy::clock::SteadyClock;
    use twilio_notify_proxy::reconcile::{Answer, AnswerLedger, MemoryLedger};
    const CALLS: usize = 100_000;
    let ledger = MemoryLedger::new(
        CALLS,
        Duration::from_secs(600),
        Arc::new(SteadyClock::new()),
        "bench:1",
    );
    // Twice the bound of distinct calls, so every record past the first pass forgets one.
    let calls: Vec<String> = (0..2 * CALLS).map(|i| format!("CA{i:032x}")).collect();
    let answer = Answer {
        route: "client-notify",
        outcome: "forwarded_2xx",
        reason: None,
        status: 200,
        answered_at_ms: 0,
        request_id: twilio_notify_proxy::logging::request_id(),
        verified: true,
    };
    for call in &calls[..CALLS] {
        ledger.record(call, &answer);
    }
    let mut next = 0;
    c.bench_function("remember an answer (new call, ledger full)", |b| {
        b.iter(|| {
            ledger.record(black_box(&calls[next]), black_box(&answer));
            next = (next + 1) % calls.len();
        })
    });
}

criterion_group!(benches, bench, remember_answer);
criterion_main!(benches);
