//! Unit tests of the ordered request checks.

use super::*;
use crate::config::Limits;
use crate::schema::NotificationSchema;
use crate::signature::{sign_json, Algorithm, SigningKey};
use std::sync::Arc;
use std::time::Duration;

const BODY: &str = r#"{"twi_account_sid":"AC0123456789abcdef0123456789abcdef","twi_bridge_token":"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl","twi_call_sid":"CA0123456789abcdef0123456789abcdef","twi_from":"client:alice","twi_message_id":"WB0123456789abcdef0123456789abcdef","twi_message_type":"twilio.voice.call","twi_to":"client:bob"}"#;
const PUBLIC: &str = "https://voice.example.com/twilio/client-notify";

fn route(body: BodyKind, mode: SchemaMode) -> Route {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/schemas/client-notification.schema.json"
    );
    let value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    Route {
        name: "n".into(),
        path: "/twilio/client-notify".into(),
        public_url: None,
        allowed_hosts: vec!["voice.example.com".into()],
        upstream: 0,
        body,
        schema: (body == BodyKind::Json)
            .then(|| Arc::new(NotificationSchema::compile(&value).unwrap())),
        schema_mode: mode,
        retry: crate::policy::RetryPolicy::default(),
        on_exhausted: crate::config::OnExhausted::Fail,
    }
}

/// `check_request` with the test keys, no allow-list and no settings header.
fn check(
    route: &Route,
    url: SignedUrl<'_>,
    sigs: &[&[u8]],
    body: &[u8],
) -> Result<Verified, Rejection> {
    check_request(
        route,
        &keys(),
        &HashSet::new(),
        &Inbound {
            url,
            signatures: sigs,
            signature_settings: None,
            body,
        },
    )
}

fn keys() -> KeyRing {
    KeyRing {
        auth_tokens: vec![SigningKey::new(Algorithm::HmacSha1, b"tok")],
        ..Default::default()
    }
}

fn run(body: &str, mode: SchemaMode, allowed: &[&str]) -> Result<Verified, Rejection> {
    let (url, sig) = sign_json(
        &SigningKey::new(Algorithm::HmacSha1, b"tok"),
        PUBLIC,
        body.as_bytes(),
    )
    .unwrap();
    let url = SignedUrl::parse(&url).unwrap();
    let allowed = allowed.iter().map(|s| s.to_string()).collect();
    let sigs = [sig.as_bytes()];
    check_request(
        &route(BodyKind::Json, mode),
        &keys(),
        &allowed,
        &Inbound {
            url,
            signatures: &sigs,
            signature_settings: None,
            body: body.as_bytes(),
        },
    )
}

#[test]
fn good_notification_passes_and_is_parsed_once() {
    let v = run(BODY, SchemaMode::Enforce, &[]).unwrap();
    assert_eq!(
        v.notification().call_sid,
        Some("CA0123456789abcdef0123456789abcdef")
    );
    assert!(v.reported_violation.is_none());
}

#[test]
fn signature_comes_before_content_checks() {
    let url =
        SignedUrl::parse("https://voice.example.com/twilio/client-notify?bodySHA256=00").unwrap();
    let sigs = [&b"bm90LWEtc2lnbmF0dXJl"[..]];
    let err = check(
        &route(BodyKind::Json, SchemaMode::Enforce),
        url,
        &sigs,
        b"not json",
    )
    .unwrap_err();
    assert_eq!(err.reason, Reason::SignatureMismatch);
}

#[test]
fn missing_and_duplicate_signatures() {
    let url = SignedUrl::parse(PUBLIC).unwrap();
    let r = route(BodyKind::Json, SchemaMode::Enforce);
    let none: [&[u8]; 0] = [];
    let two = [&b"a"[..], b"b"];
    let e = check(&r, url, &none, BODY.as_bytes()).unwrap_err();
    assert_eq!(e.reason, Reason::SignatureMissing);
    let e = check(&r, url, &two, BODY.as_bytes()).unwrap_err();
    assert_eq!(e.reason, Reason::SignatureDuplicate);
}

#[test]
fn not_json_and_schema_after_valid_signature() {
    assert_eq!(
        run("{not json", SchemaMode::Enforce, &[])
            .unwrap_err()
            .reason,
        Reason::NotJson
    );
    let wrong = BODY.replace("twilio.voice.call", "twilio.sms");
    let e = run(&wrong, SchemaMode::Enforce, &[]).unwrap_err();
    assert_eq!(e.reason, Reason::Schema);
    assert!(e.detail.starts_with("/twi_message_type"), "{}", e.detail);
    let v = run(&wrong, SchemaMode::Report, &[]).unwrap();
    assert_eq!(v.reported_violation.unwrap().field, "/twi_message_type");
}

#[test]
fn ambiguous_identity_is_refused_after_the_signature() {
    // Signed correctly, but names two accounts: a first-wins handler would act on the other.
    let twice = BODY.replacen(
        '{',
        r#"{"twi_account_sid":"AC00000000000000000000000000000009","#,
        1,
    );
    let e = run(&twice, SchemaMode::Enforce, &[]).unwrap_err();
    assert_eq!(e.reason, Reason::NotJson);
    assert!(e.detail.contains("duplicate field"), "{}", e.detail);

    let body = "AccountSid=AC0123456789abcdef0123456789abcdef&AccountSid=AC00000000000000000000000000000009";
    let url = SignedUrl::parse("https://voice.example.com/voice").unwrap();
    let sig = SigningKey::new(Algorithm::HmacSha1, b"tok")
        .sign(&url, &signature::form_signing_suffix(body.as_bytes()));
    let sigs = [sig.as_bytes()];
    let e = check(
        &route(BodyKind::Form, SchemaMode::Enforce),
        url,
        &sigs,
        body.as_bytes(),
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::Schema);
}

#[test]
fn account_allow_list() {
    assert!(run(
        BODY,
        SchemaMode::Enforce,
        &["AC0123456789abcdef0123456789abcdef"]
    )
    .is_ok());
    let e = run(
        BODY,
        SchemaMode::Enforce,
        &["AC00000000000000000000000000000001"],
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::UnknownAccount);
}

#[test]
fn form_route_signs_sorted_params() {
    let body =
        "To=%2B18005551212&From=%2B14158675309&AccountSid=AC0123456789abcdef0123456789abcdef";
    let url = SignedUrl::parse("https://voice.example.com/voice").unwrap();
    let sig = SigningKey::new(Algorithm::HmacSha1, b"tok")
        .sign(&url, &signature::form_signing_suffix(body.as_bytes()));
    let sigs = [sig.as_bytes()];
    let r = route(BodyKind::Form, SchemaMode::Enforce);
    let ok = check(&r, url, &sigs, body.as_bytes());
    assert!(ok.is_ok(), "{ok:?}");
    let e = check(
        &r,
        url,
        &sigs,
        body.replace("8005551212", "8005550000").as_bytes(),
    );
    assert_eq!(e.unwrap_err().reason, Reason::SignatureMismatch);
}

#[test]
fn head_checks() {
    let limits = Limits {
        max_body_bytes: 100,
        body_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        max_connections: std::num::NonZeroUsize::MIN,
    };
    let r = route(BodyKind::Json, SchemaMode::Enforce);
    let head =
        |method, ct: Option<&'static str>, cl: Option<&'static str>, te: Option<&'static str>| {
            check_head(
                &r,
                &limits,
                &RequestHead {
                    method,
                    content_type: ct.map(str::as_bytes),
                    content_type_count: usize::from(ct.is_some()),
                    // The edge frames the head by the one rule; the checks only read its verdict.
                    framing: crate::framing::request_framing(
                        te.map(str::as_bytes),
                        cl.map(str::as_bytes),
                    )
                    .expect("a head the edge would have parsed"),
                    transfer_encoding: te.map(str::as_bytes),
                    connection: &[],
                },
            )
        };
    let json = Some("application/json; charset=utf-8");
    assert_eq!(
        head(&Method::POST, json, Some("10"), None),
        Ok(BodyFraming::Length(10))
    );
    assert_eq!(
        head(
            &Method::POST,
            Some("Application/JSON"),
            None,
            Some("chunked")
        ),
        Ok(BodyFraming::Chunked)
    );
    assert_eq!(
        head(&Method::GET, json, None, None).unwrap_err().reason,
        Reason::Method
    );
    assert_eq!(
        head(&Method::POST, Some("text/plain"), Some("1"), None)
            .unwrap_err()
            .reason,
        Reason::ContentType
    );
    assert_eq!(
        head(&Method::POST, None, Some("1"), None)
            .unwrap_err()
            .reason,
        Reason::ContentType
    );
    assert_eq!(
        head(&Method::POST, json, None, None).unwrap_err().reason,
        Reason::LengthRequired
    );
    // A list of one length is that length (RFC 9112 §6.3), as the edge read it.
    assert_eq!(
        head(&Method::POST, json, Some("5, 5"), None),
        Ok(BodyFraming::Length(5))
    );
    assert_eq!(
        head(&Method::POST, json, Some("100"), None),
        Ok(BodyFraming::Length(100)),
        "exactly max_body_bytes"
    );
    assert_eq!(
        head(&Method::POST, json, Some("101"), None)
            .unwrap_err()
            .reason,
        Reason::TooLarge
    );
    assert_eq!(
        head(&Method::POST, json, None, Some("gzip"))
            .unwrap_err()
            .reason,
        Reason::LengthRequired
    );
}

const LIMITS: Limits = Limits {
    max_body_bytes: 100,
    body_timeout: Duration::from_secs(1),
    header_timeout: Duration::from_secs(1),
    write_timeout: Duration::from_secs(1),
    max_connections: std::num::NonZeroUsize::new(10).unwrap(),
};

/// Regression (issue 12, item 5): only the first `Content-Type` was checked, every copy was
/// forwarded.
#[test]
fn duplicate_content_type_is_refused() {
    let r = route(BodyKind::Json, SchemaMode::Enforce);
    let head = RequestHead {
        method: &Method::POST,
        content_type: Some(b"application/json"),
        content_type_count: 2,
        framing: crate::framing::Framing::Length(2),
        transfer_encoding: None,
        connection: &[],
    };
    let e = check_head(&r, &LIMITS, &head).unwrap_err();
    assert_eq!(e.reason, Reason::ContentType);
}

/// Regression (issue 12, item 6): `Connection: content-type, x-twilio-signature` made the hop
/// strip headers the checks had just validated.
#[test]
fn connection_tokens_naming_end_to_end_headers_are_refused() {
    let r = route(BodyKind::Json, SchemaMode::Enforce);
    let check = |connection: &[&[u8]]| {
        check_head(
            &r,
            &LIMITS,
            &RequestHead {
                method: &Method::POST,
                content_type: Some(b"application/json"),
                content_type_count: 1,
                framing: crate::framing::Framing::Length(2),
                transfer_encoding: None,
                connection,
            },
        )
    };
    assert!(check(&[b"keep-alive", b"Close"]).is_ok());
    assert!(check(&[b" , TE"]).is_ok());
    for bad in [
        &b"content-type, x-twilio-signature"[..],
        b"close, X-Twilio-Signature",
    ] {
        assert_eq!(check(&[bad]).unwrap_err().reason, Reason::Forbidden);
    }
}

/// Regression (issue 12, item 9): the signed string runs keys and values together, so an
/// empty or repeated key lets a form be respelled under the same signature.
#[test]
fn forms_with_empty_or_repeated_keys_are_refused_after_the_signature() {
    let r = route(BodyKind::Form, SchemaMode::Enforce);
    let signer = SigningKey::new(Algorithm::HmacSha1, b"tok");
    let url = SignedUrl::parse(PUBLIC).unwrap();
    for (body, ok) in [
        ("Body=hello&From=%2B1", true),
        ("Body=hello&=From%2B1", false),
        ("Body=hello&Body=x", false),
        ("Body=hello&From=%2B1&From=%2B2", false),
    ] {
        let sig = signer.sign(&url, &signature::form_signing_suffix(body.as_bytes()));
        let result = check(&r, url, &[sig.as_bytes()], body.as_bytes());
        match ok {
            true => assert!(result.is_ok(), "{body}: {result:?}"),
            false => assert_eq!(result.unwrap_err().reason, Reason::Schema, "{body}"),
        }
    }
}

/// A Debugger webhook's form naming `account`, as Twilio posts it.
fn debugger_form(account: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("AccountSid", account)
        .append_pair("Level", "Error")
        .append_pair(
            "Payload",
            r#"{"resource_sid":"CA0123456789abcdef0123456789abcdef","error_code":"13807"}"#,
        )
        .append_pair("PayloadType", "application/json")
        .append_pair("Sid", "NO0123456789abcdef0123456789abcdef")
        .append_pair("Timestamp", "2026-12-06T03:00:00Z")
        .finish()
}

#[test]
fn an_error_event_is_verified_with_the_key_of_the_account_it_names_and_read_whole() {
    const SUB: &str = "AC11111111111111111111111111111111";
    let mut ring = keys();
    ring.accounts
        .insert(SUB.into(), SigningKey::new(Algorithm::HmacSha1, b"sub"));
    let url = SignedUrl::parse("https://voice.example.com/twilio/errors").unwrap();
    let events = |body: &str, token: &[u8]| {
        let sig = SigningKey::new(Algorithm::HmacSha1, token)
            .sign(&url, &signature::form_signing_suffix(body.as_bytes()));
        let sigs = [sig.as_bytes()];
        check_error_events(
            &ring,
            &HashSet::new(),
            &Inbound {
                url,
                signatures: &sigs,
                signature_settings: None,
                body: body.as_bytes(),
            },
            BodyKind::Form,
        )
    };
    // The subaccount's event is signed with the subaccount's token, picked by its AccountSid.
    let items = events(&debugger_form(SUB), b"sub").unwrap();
    assert_eq!(items.len(), 1);
    let twilio_errors::Item::Error(event) = &items[0] else {
        panic!("an error event: {items:?}")
    };
    assert_eq!(
        (
            event.account_sid.as_str(),
            event.code,
            event.call_sid.as_deref()
        ),
        (SUB, 13807, Some("CA0123456789abcdef0123456789abcdef"))
    );
    // The primary token does not sign for a subaccount, nor the subaccount's for the primary.
    let primary = "AC0123456789abcdef0123456789abcdef";
    assert_eq!(
        events(&debugger_form(SUB), b"tok").unwrap_err().reason,
        Reason::SignatureMismatch
    );
    assert_eq!(
        events(&debugger_form(primary), b"sub").unwrap_err().reason,
        Reason::SignatureMismatch
    );
    assert!(events(&debugger_form(primary), b"tok").is_ok());
}
