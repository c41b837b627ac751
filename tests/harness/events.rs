//! Twilio's error events as Twilio sends them, for the `twilio_errors` route: the Console
//! Debugger's webhook (a form, signed as form webhooks are) and an Event Streams batch (JSON
//! CloudEvents, signed with `bodySHA256`), each shaped as Twilio's documentation shows it.

use serde_json::{json, Value};
use twilio_notify_proxy::signature::{
    form_signing_suffix, sign_json, Algorithm, SignedUrl, SigningKey,
};

use super::{fresh_token, TOKEN};

pub const ERRORS_URL: &str = "https://voice.example.com/twilio/errors";
pub const ERRORS_PATH: &str = "/twilio/errors";
/// The route's name (its `route` label).
pub const ERRORS_ROUTE_NAME: &str = "twilio-errors";
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

/// The `routes:` entry of a `twilio_errors` route at [`ERRORS_URL`] (to append to a spec's
/// `route_extra`).
pub fn errors_route() -> String {
    format!(
        "\n  - kind: twilio_errors\n    name: {ERRORS_ROUTE_NAME}\n    public_url: {ERRORS_URL}\n"
    )
}

/// A SID of `prefix` no other call in this process has: two capitals and 32 hex digits.
pub fn sid(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "{prefix}{:016x}{:016x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a Debugger event says about the webhook Twilio called.
pub struct Called<'a> {
    pub url: &'a str,
    pub status: Option<u16>,
}

/// The `Payload` of a Debugger event for `code` about `call_sid`.
pub fn debugger_payload(code: &str, call_sid: Option<&str>, called: &Called<'_>) -> Value {
    let mut payload = json!({
        "service_sid": null,
        "error_code": code,
        "more_info": {"Msg": "Client Notification URL Error Response", "ErrorCode": code, "LogLevel": "ERROR"},
        "webhook": {
            "type": "application/json",
            "request": {
                "url": called.url,
                "method": "POST",
                "headers": {"Content-Type": "application/json"},
                "parameters": {}
            },
            "response": {
                "status_code": called.status,
                "headers": {"Content-Type": "application/json"},
                "body": "{\"error\":\"upstream_5xx\"}"
            }
        }
    });
    if let Some(call) = call_sid {
        payload["resource_sid"] = json!(call);
    }
    payload
}

/// A Debugger webhook's form body: `Sid`, `AccountSid`, `Timestamp`, `Level`, `PayloadType`,
/// `Payload`.
pub fn debugger_form(event_sid: &str, level: &str, payload: &Value) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("AccountSid", ACCOUNT)
        .append_pair("Level", level)
        .append_pair("Payload", &payload.to_string())
        .append_pair("PayloadType", "application/json")
        .append_pair("Sid", event_sid)
        .append_pair("Timestamp", "2026-12-06T03:00:00Z")
        .finish()
}

/// A Debugger 13807 (or `code`) for `call_sid`, Twilio having called the notification URL.
pub fn debugger_error(event_sid: &str, code: &str, call_sid: Option<&str>) -> String {
    let called = Called {
        url: super::PUBLIC_URL,
        status: Some(502),
    };
    debugger_form(
        event_sid,
        "Error",
        &debugger_payload(code, call_sid, &called),
    )
}

/// The form request Twilio sends to [`ERRORS_URL`] for `form`, signed with `token`.
pub fn debugger_request_signed(form: &str, token: &str) -> Vec<u8> {
    let key = SigningKey::new(Algorithm::HmacSha1, token.as_bytes());
    let signature = key.sign(
        &SignedUrl::parse(ERRORS_URL).unwrap(),
        &form_signing_suffix(form.as_bytes()),
    );
    request(
        ERRORS_PATH,
        "application/x-www-form-urlencoded",
        &[("X-Twilio-Signature", &signature)],
        form,
    )
}

/// [`debugger_request_signed`] with the test token.
pub fn debugger_request(form: &str) -> Vec<u8> {
    debugger_request_signed(form, TOKEN)
}

/// An Event Streams error log (`com.twilio.error-logs.error.logged`, `ErrorLogs.Error/2`).
pub fn error_logged(event_sid: &str, level: &str, code: &str, call_sid: Option<&str>) -> Value {
    let mut event = json!({
        "specversion": "1.0",
        "type": "com.twilio.error-logs.error.logged",
        "source": "AB00000000000000000000000001",
        "id": sid("EV"),
        "dataschema": "https://events-schemas.twilio.com/ErrorLogs.Error/2",
        "datacontenttype": "application/json",
        "time": "2026-12-06T03:00:00.000Z",
        "data": {
            "sid": event_sid,
            "account_sid": ACCOUNT,
            "date_created": "2026-12-06T03:00:00.000Z",
            "level": level,
            "master_account_sid": ACCOUNT,
            "request_sid": sid("RQ"),
            "product_name": "Programmable Voice",
            "error_code": code
        }
    });
    if let Some(call) = call_sid {
        event["data"]["correlation_sid"] = json!(call);
    }
    event
}

/// The test event Twilio sends to a new sink.
pub fn sink_test_event() -> Value {
    json!({
        "specversion": "1.0",
        "type": "com.twilio.eventstreams.test-event",
        "source": "Sink",
        "id": ACCOUNT,
        "dataschema": "https://events-schemas.twilio.com/EventStreams.TestSink/1.json",
        "datacontenttype": "application/json",
        "time": "2026-12-06T03:00:00.000Z",
        "data": {"test_id": "cae2f9e2-c277-4612-8ad3-93c1a7a3ef88"}
    })
}

/// The JSON request an Event Streams sink sends for `batch`: the URL with `bodySHA256`, signed.
pub fn event_streams_request(batch: &str) -> Vec<u8> {
    let key = SigningKey::new(Algorithm::HmacSha1, TOKEN.as_bytes());
    let (url, signature) = sign_json(&key, ERRORS_URL, batch.as_bytes()).unwrap();
    let target = url.strip_prefix("https://voice.example.com").unwrap();
    request(
        target,
        "application/json",
        &[("X-Twilio-Signature", &signature)],
        batch,
    )
}

/// A POST to `target` with `content_type`, `extra` headers and `body`.
pub fn request(target: &str, content_type: &str, extra: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: voice.example.com\r\nUser-Agent: TwilioProxy/1.1\r\n\
         Content-Type: {content_type}\r\nI-Twilio-Idempotency-Token: {}\r\n",
        fresh_token()
    );
    for (k, v) in extra {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw.into_bytes()
}

/// A notification for `call_sid` (else [`super::notification`]).
pub fn notification_for(call_sid: &str) -> String {
    super::notification().replace("CA0123456789abcdef0123456789abcdef", call_sid)
}
