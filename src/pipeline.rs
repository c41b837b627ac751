//! The request checks, in order: head (method, content type, framing, size), then signature,
//! body hash, JSON, account allow-list and schema.
//!
//! Owns the order of the checks and what each failure is called. Pure logic over borrowed bytes:
//! no sockets, no Pingora types, no metrics; the proxy glue gathers the inputs, calls
//! [`check_head`] before reading the body and [`check_request`] after, and acts on the verdict.

use std::collections::HashSet;

use http::Method;
use serde_json::Value;

use crate::config::{BodyKind, Limits, Route, SchemaMode};
use crate::outcome::{Reason, Rejection};
use crate::schema::{self, Notification, SchemaViolation};
use crate::signature::{self, KeyRing, SignatureError, SignedUrl};

/// What the head says about the body, for the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Length(usize),
    Chunked,
}

/// The parts of a request head the checks look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    pub content_type: Option<&'a [u8]>,
    pub content_length: Option<&'a [u8]>,
    pub transfer_encoding: Option<&'a [u8]>,
}

/// Method, content type, framing and declared size: everything decidable before reading a byte
/// of body.
pub fn check_head(
    route: &Route,
    limits: &Limits,
    head: &RequestHead<'_>,
) -> Result<BodyFraming, Rejection> {
    if head.method != Method::POST {
        return Err(Rejection::new(
            Reason::Method,
            format!(
                "{} is not allowed; Twilio notifications are POSTed",
                head.method
            ),
        ));
    }
    let expected = match route.body {
        BodyKind::Json => "application/json",
        BodyKind::Form => "application/x-www-form-urlencoded",
    };
    let media_type = head
        .content_type
        .map(|ct| ct.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii());
    if !media_type.is_some_and(|mt| mt.eq_ignore_ascii_case(expected.as_bytes())) {
        let got = head
            .content_type
            .map_or("none".into(), |c| String::from_utf8_lossy(c).into_owned());
        return Err(Rejection::new(
            Reason::ContentType,
            format!("Content-Type must be {expected}, got {got}"),
        ));
    }
    if let Some(te) = head.transfer_encoding {
        // Only plain chunked is meaningful for a request body; anything else we cannot frame.
        if !te.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(Rejection::new(
                Reason::LengthRequired,
                format!(
                    "Transfer-Encoding {:?} is not supported; send Content-Length or chunked",
                    String::from_utf8_lossy(te)
                ),
            ));
        }
        return Ok(BodyFraming::Chunked);
    }
    let Some(raw_len) = head.content_length else {
        return Err(Rejection::new(
            Reason::LengthRequired,
            "Content-Length (or chunked encoding) is required",
        ));
    };
    let len: usize = std::str::from_utf8(raw_len)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Rejection::new(Reason::LengthRequired, "Content-Length is not a number"))?;
    if len > limits.max_body_bytes {
        return Err(too_large(limits));
    }
    Ok(BodyFraming::Length(len))
}

pub fn too_large(limits: &Limits) -> Rejection {
    Rejection::new(
        Reason::TooLarge,
        format!("body exceeds {} bytes", limits.max_body_bytes),
    )
}

/// A request whose body has been read, as the signature and schema checks see it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The public URL Twilio signed, as reconstructed by the caller.
    pub url: SignedUrl<'a>,
    /// Every `X-Twilio-Signature` value (more than one is a rejection).
    pub signatures: &'a [&'a [u8]],
    pub signature_settings: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// What the checks learned about a request they let through.
#[derive(Debug, Default)]
pub struct Verified {
    /// The parsed body (JSON routes).
    pub json: Option<Value>,
    /// A schema violation let through because the route is in report mode.
    pub reported_violation: Option<SchemaViolation>,
}

impl Verified {
    pub fn notification(&self) -> Notification<'_> {
        self.json
            .as_ref()
            .map(Notification::from_json)
            .unwrap_or_default()
    }
}

/// Signature, body hash, JSON, account allow-list and schema, in that order: nothing about the
/// body's content is judged (or reported back) before the request is known to come from Twilio.
pub fn check_request(
    route: &Route,
    keys: &KeyRing,
    allowed_accounts: &HashSet<String>,
    req: &Inbound<'_>,
) -> Result<Verified, Rejection> {
    let signature = match req.signatures {
        [] => return Err(SignatureError::Missing.into()),
        [one] => *one,
        _ => return Err(SignatureError::Duplicate.into()),
    };

    // The account picks the key, so it is read before the signature is checked; nothing else
    // is done with the unverified body.
    let mut ambiguous_form = false;
    let (json, form_suffix, account) = match route.body {
        BodyKind::Json => {
            // An unparsable (or ambiguous) body is judged after the signature: until then it
            // only means "no account to pick a subaccount token by".
            let json = schema::parse_json(req.body);
            let account = json.as_ref().ok().and_then(|v| {
                v.get("twi_account_sid")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            (Some(json), Vec::new(), account)
        }
        BodyKind::Form => {
            let mut accounts = form_urlencoded::parse(req.body).filter(|(k, _)| k == "AccountSid");
            let account = accounts.next().map(|(_, v)| v.into_owned());
            if accounts.next().is_some() {
                // Which one would the handler use? Refuse rather than guess (after the signature).
                ambiguous_form = true;
            }
            (None, signature::form_signing_suffix(req.body), account)
        }
    };

    let candidates = keys.select(req.signature_settings, account.as_deref())?;
    signature::verify_signature(&candidates, &req.url, &form_suffix, signature)?;
    if route.body == BodyKind::Json {
        signature::verify_body_hash(req.url.query, req.body)?;
    }

    if ambiguous_form {
        return Err(Rejection::new(
            Reason::Schema,
            "AccountSid appears more than once in the form body",
        ));
    }
    // A body that is not JSON names no account: say what is wrong with it first.
    let json = json
        .map(|j| {
            j.map_err(|e| Rejection::new(Reason::NotJson, format!("body is not valid JSON: {e}")))
        })
        .transpose()?;

    if !allowed_accounts.is_empty() {
        match account.as_deref() {
            Some(sid) if allowed_accounts.contains(sid) => {}
            Some(sid) => {
                return Err(Rejection::new(
                    Reason::UnknownAccount,
                    format!("account {sid} is not in allowed_accounts"),
                ))
            }
            None => {
                return Err(Rejection::new(
                    Reason::UnknownAccount,
                    "the body names no account, and allowed_accounts is set",
                ))
            }
        }
    }

    let mut verified = Verified::default();
    if let Some(json) = json {
        if let Some(schema) = &route.schema {
            if let Err(violation) = schema.check(&json) {
                match route.schema_mode {
                    SchemaMode::Enforce => {
                        return Err(Rejection::new(Reason::Schema, violation.to_string()))
                    }
                    SchemaMode::Report => verified.reported_violation = Some(violation),
                }
            }
        }
        verified.json = Some(json);
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
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
        let url = SignedUrl::parse("https://voice.example.com/twilio/client-notify?bodySHA256=00")
            .unwrap();
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
        };
        let r = route(BodyKind::Json, SchemaMode::Enforce);
        let head = |method,
                    ct: Option<&'static str>,
                    cl: Option<&'static str>,
                    te: Option<&'static str>| {
            check_head(
                &r,
                &limits,
                &RequestHead {
                    method,
                    content_type: ct.map(str::as_bytes),
                    content_length: cl.map(str::as_bytes),
                    transfer_encoding: te.map(str::as_bytes),
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
        assert_eq!(
            head(&Method::POST, json, Some("x"), None)
                .unwrap_err()
                .reason,
            Reason::LengthRequired
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
}
