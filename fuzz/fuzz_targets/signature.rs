//! Fuzz target: signed-URL parsing, the port variants, signing and verification, the body hash,
//! the form suffix, the SharedKey settings header, and the request checks built on them.
//!
//! Input: NUL-separated fields `kind \0 url \0 secret \0 signature \0 settings \0 body`
//! (missing fields are empty; `kind` is `json` or `form`). The seeds in `fuzz/seeds/signature/`
//! are the SDK vectors of `tests/fixtures/signature-vectors.json` in this format.
//!
//! Properties, beyond "no panic":
//! - a URL that parses prints back to a string that parses to the same parts;
//! - what `sign` produces, `verify_signature` accepts, for the port as given and for the other
//!   spelling (port removed, or the scheme's default added); another port, a flipped bit or
//!   another secret never verifies;
//! - a fuzzed signature that verifies is, decoded, the MAC of one of those two spellings;
//! - `verify_body_hash` accepts exactly when the query holds one `bodySHA256` equal to the hex
//!   SHA-256 of the body, and `sign_json` output verifies on both counts;
//! - the form suffix does not depend on parameter order;
//! - a settings header that parses names a non-empty, trimmed key id taken from the header;
//! - `check_head` never admits a declared length above the limit, and `check_request` passes
//!   a correctly signed request on every signature check (whatever the body then fails on) and
//!   lets nothing through whose signature, body hash or schema does not hold.
#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http::Method;
use libfuzzer_sys::fuzz_target;
use twilio_notify_proxy::config::{BodyKind, Limits, OnExhausted, Route, SchemaMode};
use twilio_notify_proxy::policy::RetryPolicy;
use twilio_notify_proxy::outcome::Reason;
use twilio_notify_proxy::checks::{self, Inbound, RequestHead};
use twilio_notify_proxy::schema::{self, NotificationSchema};
use twilio_notify_proxy::signature::{
    body_sha256_hex, form_signing_suffix, sign_json, verify_body_hash, verify_signature, Algorithm,
    KeyRing, SignatureError, SignatureSettings, SignedUrl, SigningKey,
};

fn schema() -> Arc<NotificationSchema> {
    static SCHEMA: OnceLock<Arc<NotificationSchema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let text = include_str!("../../conf/schemas/client-notification.schema.json");
            let value = serde_json::from_str(text).expect("the shipped schema is JSON");
            Arc::new(NotificationSchema::compile(&value).expect("the shipped schema compiles"))
        })
        .clone()
}

fn route(body: BodyKind, schema_mode: SchemaMode) -> Route {
    Route {
        name: "fuzz".into(),
        path: "/n".into(),
        public_url: None,
        allowed_hosts: vec!["fuzz.example.com".into()],
        upstream: 0,
        body,
        schema: (body == BodyKind::Json).then(schema),
        schema_mode,
        retry: RetryPolicy::default(),
        on_exhausted: OnExhausted::Fail,
    }
}

fn is_signature_reason(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::SignatureMissing
            | Reason::SignatureDuplicate
            | Reason::SignatureMismatch
            | Reason::BodyHashMissing
            | Reason::BodyHashMismatch
            | Reason::UnknownKey
    )
}

fn default_port(scheme: &str) -> &'static str {
    if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    }
}

/// The other spelling of the port that verification must also accept.
fn other_spelling<'a>(url: &SignedUrl<'a>) -> SignedUrl<'a> {
    SignedUrl {
        port: match url.port {
            Some(_) => None,
            None => Some(default_port(url.scheme)),
        },
        ..*url
    }
}

fn fields(data: &[u8]) -> [&[u8]; 6] {
    let mut out: [&[u8]; 6] = [b""; 6];
    let mut parts = data.splitn(6, |&b| b == 0);
    for slot in out.iter_mut() {
        *slot = parts.next().unwrap_or(b"");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [kind, url, secret, signature, settings, body] = fields(data);
    let form = kind == b"form";
    let params = if form {
        form_signing_suffix(body)
    } else {
        Vec::new()
    };

    check_form_suffix(body);
    check_settings(settings);
    check_head(kind, url, signature);

    let Ok(url_text) = std::str::from_utf8(url) else {
        check_body_hash(url, body);
        return;
    };
    check_sign_json(url_text, body);
    let Ok(parsed) = SignedUrl::parse(url_text) else {
        check_body_hash(url, body);
        return;
    };
    check_body_hash(parsed.query, body);
    // A second reading of the printed URL gives the same parts.
    let printed = parsed.to_url_string();
    assert_eq!(
        SignedUrl::parse(&printed).as_ref(),
        Ok(&parsed),
        "{printed:?}"
    );
    assert!(
        parsed.scheme.eq_ignore_ascii_case("https") || parsed.scheme.eq_ignore_ascii_case("http")
    );
    if let Some(port) = parsed.port {
        assert!(!port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()));
    }

    let algorithm = if settings.is_empty() {
        Algorithm::HmacSha1
    } else {
        Algorithm::HmacSha256
    };
    let key = SigningKey::new(algorithm, secret);
    check_round_trip(&key, &parsed, &params, secret, algorithm);
    check_fuzzed_signature(&key, &parsed, &params, signature);
    check_sequence(
        form,
        &parsed,
        secret,
        signature,
        (!settings.is_empty()).then_some(settings),
        body,
    );
});

/// sign → verify for both port spellings; another port, a flipped bit, another secret fail.
fn check_round_trip(
    key: &SigningKey,
    url: &SignedUrl<'_>,
    params: &[u8],
    secret: &[u8],
    algorithm: Algorithm,
) {
    let as_given = key.sign(url, params);
    assert_eq!(
        verify_signature(&[key], url, params, as_given.as_bytes()),
        Ok(())
    );
    let other = key.sign(&other_spelling(url), params);
    assert_eq!(
        verify_signature(&[key], url, params, other.as_bytes()),
        Ok(())
    );

    // Without a path or query the port's digits could run into the form parameters, so the
    // strings signed for two ports may coincide; with one they cannot.
    if !url.path.is_empty() || !url.query.is_empty() {
        let stray = match url.port {
            Some("8") => "9",
            _ => "8",
        };
        if Some(stray) != url.port && stray != default_port(url.scheme) {
            let wrong = key.sign(
                &SignedUrl {
                    port: Some(stray),
                    ..*url
                },
                params,
            );
            assert_eq!(
                verify_signature(&[key], url, params, wrong.as_bytes()),
                Err(SignatureError::Mismatch)
            );
        }
    }

    let mut raw = BASE64.decode(&as_given).expect("we just encoded it");
    let bit = secret.first().copied().unwrap_or(0) as usize % (raw.len() * 8);
    raw[bit / 8] ^= 1 << (bit % 8);
    let flipped = BASE64.encode(&raw);
    assert_eq!(
        verify_signature(&[key], url, params, flipped.as_bytes()),
        Err(SignatureError::Mismatch)
    );

    // HMAC pads short keys with zeros, so "another secret" changes a byte rather than appending.
    let mut other_secret = secret.to_vec();
    match other_secret.first_mut() {
        Some(b) => *b ^= 0x80,
        None => other_secret.push(1),
    }
    let stranger = SigningKey::new(algorithm, &other_secret);
    assert_eq!(
        verify_signature(&[&stranger], url, params, as_given.as_bytes()),
        Err(SignatureError::Mismatch)
    );
}

/// Whatever the header says: it verifies only if it is the MAC of one accepted spelling.
fn check_fuzzed_signature(key: &SigningKey, url: &SignedUrl<'_>, params: &[u8], signature: &[u8]) {
    if verify_signature(&[key], url, params, signature).is_ok() {
        let decoded = BASE64
            .decode(signature.trim_ascii())
            .expect("a verified signature is base64");
        let accepted = [
            key.sign(url, params),
            key.sign(&other_spelling(url), params),
        ]
        .map(|s| BASE64.decode(s).expect("we encoded it"));
        assert!(
            accepted.contains(&decoded),
            "verified a signature we did not make"
        );
    }
}

/// The body hash is accepted exactly when one `bodySHA256` equals the body's lowercase hex
/// SHA-256, with or without the query's leading `?`.
fn check_body_hash(query: &[u8], body: &[u8]) {
    let hex = body_sha256_hex(body);
    let bare = query.strip_prefix(b"?").unwrap_or(query);
    let values: Vec<_> = form_urlencoded::parse(bare)
        .filter(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
        .collect();
    let expect_ok = values.len() == 1 && values[0].as_bytes() == hex.as_slice();
    assert_eq!(verify_body_hash(query, body).is_ok(), expect_ok);
    let with_mark = [b"?".as_slice(), bare].concat();
    assert_eq!(verify_body_hash(&with_mark, body).is_ok(), expect_ok);
}

/// What `sign_json` makes for a public URL verifies: signature and body hash. A URL that
/// already carries a `bodySHA256` is left out: two hashes are refused by design.
fn check_sign_json(public: &str, body: &[u8]) {
    let Ok(parsed) = SignedUrl::parse(public) else {
        return;
    };
    let query = parsed.query.strip_prefix(b"?").unwrap_or(parsed.query);
    if form_urlencoded::parse(query).any(|(k, _)| k == "bodySHA256") {
        return;
    }
    let key = SigningKey::new(Algorithm::HmacSha1, b"fuzz");
    if let Ok((signed_url, signature)) = sign_json(&key, public, body) {
        let signed = SignedUrl::parse(&signed_url).expect("sign_json output parses");
        assert_eq!(
            verify_signature(&[&key], &signed, b"", signature.as_bytes()),
            Ok(())
        );
        assert_eq!(
            verify_body_hash(signed.query, body),
            Ok(()),
            "{signed_url:?}"
        );
    }
}

/// Form parameters are sorted before signing: their order in the body does not matter.
fn check_form_suffix(body: &[u8]) {
    let suffix = form_signing_suffix(body);
    let pairs: Vec<_> = form_urlencoded::parse(body).collect();
    let reversed = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().rev())
        .finish();
    assert_eq!(form_signing_suffix(reversed.as_bytes()), suffix);
}

fn check_settings(settings: &[u8]) {
    if let Ok(parsed) = SignatureSettings::parse(settings) {
        assert!(!parsed.key_id.is_empty());
        assert_eq!(parsed.key_id, parsed.key_id.trim());
    }
}

/// The head checks, with the fuzzed fields standing in for Content-Type, Content-Length and
/// Transfer-Encoding.
fn check_head(content_type: &[u8], content_length: &[u8], transfer_encoding: &[u8]) {
    let limits = Limits {
        max_body_bytes: 65536,
        body_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
        max_connections: std::num::NonZeroUsize::new(100).expect("100 > 0"),
    };
    for body in [BodyKind::Json, BodyKind::Form] {
        let route = route(body, SchemaMode::Enforce);
        let transfer_encoding = (!transfer_encoding.is_empty()).then_some(transfer_encoding);
        // The edge frames the head first; a head it refuses never reaches the checks.
        let Ok(framing) = twilio_notify_proxy::framing::request_framing(
            transfer_encoding,
            (!content_length.is_empty()).then_some(content_length),
        ) else {
            continue;
        };
        let head = RequestHead {
            method: &Method::POST,
            content_type: Some(content_type),
            content_type_count: 1,
            framing,
            transfer_encoding,
            connection: &[],
        };
        match checks::check_head(&route, &limits, &head) {
            Ok(checks::BodyFraming::Length(n)) => assert!(n <= limits.max_body_bytes),
            Ok(checks::BodyFraming::Chunked) => assert!(head.transfer_encoding.is_some()),
            Err(_) => {}
        }
    }
}

/// The whole signature → body hash → JSON → schema sequence, with a fuzzed and a correct
/// signature.
fn check_sequence(
    form: bool,
    url: &SignedUrl<'_>,
    secret: &[u8],
    signature: &[u8],
    settings: Option<&[u8]>,
    body: &[u8],
) {
    let mut keys = KeyRing::default();
    let mut signer = SigningKey::new(Algorithm::HmacSha1, secret);
    match settings.map(SignatureSettings::parse) {
        Some(Ok(s)) if s.algorithm == Algorithm::HmacSha256 => {
            signer = SigningKey::new(Algorithm::HmacSha256, secret);
            keys.shared_keys
                .insert(s.key_id.to_string(), signer.clone());
        }
        _ => keys.auth_tokens.push(signer.clone()),
    }
    let kind = if form { BodyKind::Form } else { BodyKind::Json };
    let params = if form {
        form_signing_suffix(body)
    } else {
        Vec::new()
    };
    // A settings header that does not parse names no key: every signature is refused.
    let bad_settings = settings.is_some_and(|s| SignatureSettings::parse(s).is_err());
    let correct = signer.sign(url, &params);
    let none = HashSet::new();
    for mode in [SchemaMode::Enforce, SchemaMode::Report] {
        let route = route(kind, mode);
        for sig in [signature, correct.as_bytes()] {
            let sigs = [sig];
            let inbound = Inbound {
                url: *url,
                signatures: &sigs,
                signature_settings: settings,
                body,
            };
            let verdict = checks::check_request(&route, &keys, &none, &inbound);
            match &verdict {
                Ok(_) if bad_settings => panic!("passed with unparsable settings"),
                Err(rejection) if bad_settings => {
                    assert_eq!(rejection.reason, Reason::UnknownKey)
                }
                Ok(verified) => {
                    assert!(verify_signature(&[&signer], url, &params, sig).is_ok());
                    if !form {
                        assert_eq!(verify_body_hash(url.query, body), Ok(()));
                        let json = verified.json.as_ref().expect("json routes keep the body");
                        assert_eq!(schema::parse_json(body).as_ref(), Ok(json));
                        let verdict = schema().check(json);
                        match mode {
                            SchemaMode::Enforce => assert_eq!(verdict, Ok(())),
                            SchemaMode::Report => {
                                assert_eq!(verdict.err(), verified.reported_violation)
                            }
                        }
                    }
                }
                Err(rejection) if sig == correct.as_bytes() => {
                    // Correctly signed: only the body hash (JSON) or the content may fail.
                    let hash_reason = matches!(
                        rejection.reason,
                        Reason::BodyHashMissing | Reason::BodyHashMismatch
                    );
                    assert!(
                        !is_signature_reason(rejection.reason) || (!form && hash_reason),
                        "a correct signature was refused: {rejection:?}"
                    );
                }
                Err(_) => {}
            }
        }
    }
}
