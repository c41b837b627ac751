//! How a request ends: the one place that names every ending and gives each its status code,
//! JSON body and metric label.
//!
//! Owns [`Reason`] (why the proxy itself refused a request, and that refusal's status and public
//! detail), [`Outcome`] (how every request ended), in [`answer`] the answers the proxy makes
//! when it ends a request for another reason (gave up, buffered, buffer failed, duplicate,
//! probe, Twilio's error events taken), in [`delivery`] the result kinds of attempts, redeliveries, dead letters and store
//! calls, in [`reload`] how a live reload ended, and in [`twilio`] what became of Twilio's
//! error events. What a handler's status means is
//! [`crate::policy::StatusClass`], from which the labels here derive. Adding a variant here is
//! how the taxonomy grows; nothing else spells these strings or picks these statuses. No I/O.

mod answer;
mod delivery;
mod reload;
mod twilio;

use http::StatusCode;

pub use answer::{GaveUp, MadeAnswer, Original};
pub use delivery::{AttemptResult, DeadLetterReason, RedeliveryResult, StoreOperation};
pub use reload::ReloadResult;
pub use twilio::{EventResult, Seen};

use crate::policy::StatusClass;
use crate::signature::SignatureError;

/// Why the proxy refused a request before it reached the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The request head is not valid HTTP/1.1 (Pingora refused to parse it).
    Malformed,
    Method,
    ContentType,
    LengthRequired,
    TooLarge,
    BodyTimeout,
    BodyIncomplete,
    UnknownRoute,
    SignatureMissing,
    SignatureDuplicate,
    SignatureMismatch,
    BodyHashMissing,
    BodyHashMismatch,
    UnknownKey,
    /// A route without `public_url` was called on a host not in its `allowed_hosts`.
    HostNotAllowed,
    UnknownAccount,
    NotJson,
    Schema,
    /// A header would make the forwarded request differ from the checked one (a second
    /// `Content-Type`, a `Connection` token naming an end-to-end header).
    Forbidden,
}

impl Reason {
    pub const ALL: [Reason; 19] = [
        Reason::Malformed,
        Reason::Method,
        Reason::ContentType,
        Reason::LengthRequired,
        Reason::TooLarge,
        Reason::BodyTimeout,
        Reason::BodyIncomplete,
        Reason::UnknownRoute,
        Reason::SignatureMissing,
        Reason::SignatureDuplicate,
        Reason::SignatureMismatch,
        Reason::BodyHashMissing,
        Reason::BodyHashMismatch,
        Reason::UnknownKey,
        Reason::HostNotAllowed,
        Reason::UnknownAccount,
        Reason::NotJson,
        Reason::Schema,
        Reason::Forbidden,
    ];

    /// The label value and the `error` field of the JSON answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::Method => "method",
            Reason::ContentType => "content_type",
            Reason::LengthRequired => "length_required",
            Reason::TooLarge => "too_large",
            Reason::BodyTimeout => "body_timeout",
            Reason::BodyIncomplete => "body_incomplete",
            Reason::UnknownRoute => "unknown_route",
            Reason::SignatureMissing => "signature_missing",
            Reason::SignatureDuplicate => "signature_duplicate",
            Reason::SignatureMismatch => "signature_mismatch",
            Reason::BodyHashMissing => "body_hash_missing",
            Reason::BodyHashMismatch => "body_hash_mismatch",
            Reason::UnknownKey => "unknown_key",
            Reason::HostNotAllowed => "host_not_allowed",
            Reason::UnknownAccount => "unknown_account",
            Reason::NotJson => "not_json",
            Reason::Schema => "schema",
            Reason::Forbidden => "forbidden_header",
        }
    }

    /// The reason an unauthenticated caller is told. `unknown_key` would tell anyone which
    /// SharedKey ids and subaccounts are configured, and `host_not_allowed` which hosts a route
    /// serves, so both are answered as `signature_mismatch` (the metric label and the log keep
    /// the real reason).
    pub fn public(self) -> Reason {
        match self {
            Reason::UnknownKey | Reason::HostNotAllowed => Reason::SignatureMismatch,
            other => other,
        }
    }

    /// The fixed `detail` of the public answer: says what to fix without echoing anything the
    /// request carried or anything about the proxy's insides. The specifics are in the log
    /// line that carries the same request id.
    pub fn public_detail(self) -> &'static str {
        match self {
            Reason::Malformed => "the request head is not valid HTTP/1.1",
            Reason::Method => "only POST is allowed; Twilio notifications are POSTed",
            Reason::ContentType => {
                "Content-Type must be the route's body type (application/json, or \
                 application/x-www-form-urlencoded for form routes), given once"
            }
            Reason::LengthRequired => "send one Content-Length, or Transfer-Encoding: chunked",
            Reason::TooLarge => "the body exceeds limits.max_body_bytes",
            Reason::BodyTimeout => "the body did not arrive within limits.body_timeout",
            Reason::BodyIncomplete => "the body could not be read completely",
            Reason::UnknownRoute => "no route for this path",
            Reason::SignatureMissing => "the X-Twilio-Signature header is missing",
            Reason::SignatureDuplicate => {
                "the request carries more than one X-Twilio-Signature header"
            }
            Reason::SignatureMismatch | Reason::UnknownKey | Reason::HostNotAllowed => {
                "X-Twilio-Signature does not match the public URL and body"
            }
            Reason::BodyHashMissing => {
                "the URL has no bodySHA256 query parameter, so the body is not signed"
            }
            Reason::BodyHashMismatch => "bodySHA256 does not match the SHA-256 of the body",
            Reason::UnknownAccount => "the account is not allowed on this proxy",
            Reason::NotJson => "the body is not valid JSON",
            Reason::Schema => "the body does not match the notification schema",
            Reason::Forbidden => "the request's headers cannot be forwarded as checked",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Reason::Method => StatusCode::METHOD_NOT_ALLOWED,
            Reason::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Reason::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reason::Malformed
            | Reason::BodyIncomplete
            | Reason::NotJson
            | Reason::Schema
            | Reason::Forbidden => StatusCode::BAD_REQUEST,
            Reason::UnknownRoute => StatusCode::NOT_FOUND,
            Reason::SignatureMissing
            | Reason::SignatureDuplicate
            | Reason::SignatureMismatch
            | Reason::BodyHashMissing
            | Reason::BodyHashMismatch
            | Reason::UnknownKey
            | Reason::HostNotAllowed
            | Reason::UnknownAccount => StatusCode::FORBIDDEN,
        }
    }
}

/// A refusal: the reason, a detail for the log line (never for the answer: it may name what
/// the request carried), and for schema violations of a verified body the field, which the
/// answer names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
    /// The JSON pointer of the violating field (schema violations of a signed body only).
    pub field: Option<String>,
    /// Added to the public detail: only for a caller that asked for diagnosis (a `probe`),
    /// and never anything from the request itself.
    pub hint: Option<String>,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            field: None,
            hint: None,
        }
    }

    /// A schema violation of a body already known to come from Twilio: the answer may name
    /// the field (a JSON pointer, bounded), so the sender can see what to fix.
    pub fn schema_field(field: &str, detail: impl Into<String>) -> Self {
        Rejection {
            reason: Reason::Schema,
            detail: detail.into(),
            field: Some(crate::logging::bounded(field)),
            hint: None,
        }
    }

    /// The public answer's detail: fixed per reason, plus the field for a schema violation.
    pub fn public_detail(&self) -> String {
        let fixed = self.reason.public().public_detail();
        let detail = match &self.field {
            Some(field) => format!("{field}: {fixed}"),
            None => fixed.to_owned(),
        };
        match &self.hint {
            Some(hint) => format!("{detail}; {hint}"),
            None => detail,
        }
    }

    /// `{"error": public reason, "detail": public detail}`.
    pub fn json_body(&self) -> Vec<u8> {
        error_body(self.reason.public().as_str(), &self.public_detail())
    }
}

impl From<SignatureError> for Rejection {
    fn from(e: SignatureError) -> Self {
        let reason = match e {
            SignatureError::Missing => Reason::SignatureMissing,
            SignatureError::Duplicate => Reason::SignatureDuplicate,
            SignatureError::Mismatch => Reason::SignatureMismatch,
            SignatureError::BodyHashMissing => Reason::BodyHashMissing,
            SignatureError::BodyHashMismatch => Reason::BodyHashMismatch,
            SignatureError::UnknownKey(_) => Reason::UnknownKey,
            SignatureError::NoPublicUrl => Reason::SignatureMismatch,
            SignatureError::HostNotAllowed(_) => Reason::HostNotAllowed,
        };
        Rejection::new(reason, e.to_string())
    }
}

/// The JSON error document every proxy-made error answer carries.
pub fn error_body(error: &str, detail: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": error, "detail": detail }))
        .expect("two strings always serialize")
}

/// How a request ended. Exactly one per request; the `outcome` label of the request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The handler answered 2xx.
    Forwarded2xx,
    /// The handler answered 1xx/3xx: passed through unchanged.
    ForwardedOther,
    /// The handler answered 404: no client binding for the identity (a real answer).
    NoBinding,
    /// The handler answered another 4xx (its own validation, auth or config).
    Upstream4xx,
    /// The handler answered 5xx.
    Upstream5xx,
    /// No connection to any peer (refused, unreachable, connect timeout).
    UpstreamUnreachable,
    /// The handler did not answer within the response timeout.
    UpstreamTimeout,
    /// The handler broke the protocol (garbage, early close, oversized answer).
    UpstreamProtocol,
    /// The proxy refused the request (see [`Reason`]).
    Rejected,
    /// The handler failed, the request was stored durably for redelivery, Twilio got its 2xx.
    Buffered,
    /// A repeat of a notification already delivered or buffered: answered without forwarding.
    Duplicate,
    /// The handler failed and the buffer could not store the request: answered 503.
    BufferFailed,
    /// A synthetic notification from `twilio-notify-proxy probe`, verified in full and answered
    /// by the proxy itself (never forwarded, so no device is notified).
    Probe,
    /// Twilio's error events on a `twilio_errors` route: verified, taken for counting and
    /// reconciling, answered by the proxy (never forwarded).
    TwilioEvents,
}

impl Outcome {
    pub const ALL: [Outcome; 14] = [
        Outcome::Forwarded2xx,
        Outcome::ForwardedOther,
        Outcome::NoBinding,
        Outcome::Upstream4xx,
        Outcome::Upstream5xx,
        Outcome::UpstreamUnreachable,
        Outcome::UpstreamTimeout,
        Outcome::UpstreamProtocol,
        Outcome::Rejected,
        Outcome::Buffered,
        Outcome::Duplicate,
        Outcome::BufferFailed,
        Outcome::Probe,
        Outcome::TwilioEvents,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded2xx => "forwarded_2xx",
            Outcome::ForwardedOther => "forwarded_other",
            Outcome::NoBinding => "no_binding",
            Outcome::Upstream4xx => "upstream_4xx",
            Outcome::Upstream5xx => "upstream_5xx",
            Outcome::UpstreamUnreachable => "upstream_unreachable",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::UpstreamProtocol => "upstream_protocol",
            Outcome::Rejected => "rejected",
            Outcome::Buffered => "buffered",
            Outcome::Duplicate => "duplicate",
            Outcome::BufferFailed => "buffer_failed",
            Outcome::Probe => "probe",
            Outcome::TwilioEvents => "twilio_events",
        }
    }

    /// The outcome of a handler answer with this status.
    pub fn from_upstream_status(status: u16) -> Outcome {
        match StatusClass::of(status) {
            StatusClass::Success => Outcome::Forwarded2xx,
            StatusClass::NoBinding => Outcome::NoBinding,
            StatusClass::ClientError => Outcome::Upstream4xx,
            StatusClass::ServerError => Outcome::Upstream5xx,
            StatusClass::Other => Outcome::ForwardedOther,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "{}", r.as_str());
            assert!(r
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(r.status().is_client_error());
        }
        for o in Outcome::ALL {
            assert!(seen.insert(o.as_str()), "{}", o.as_str());
        }
    }

    #[test]
    fn upstream_status_mapping() {
        assert_eq!(Outcome::from_upstream_status(200), Outcome::Forwarded2xx);
        assert_eq!(Outcome::from_upstream_status(204), Outcome::Forwarded2xx);
        assert_eq!(Outcome::from_upstream_status(404), Outcome::NoBinding);
        assert_eq!(Outcome::from_upstream_status(401), Outcome::Upstream4xx);
        assert_eq!(Outcome::from_upstream_status(503), Outcome::Upstream5xx);
        assert_eq!(Outcome::from_upstream_status(302), Outcome::ForwardedOther);
    }

    #[test]
    fn error_body_names_the_schema_field_but_not_the_specifics() {
        let r = Rejection::schema_field("/twi_to", "/twi_to: \"x\" is not valid");
        let v: serde_json::Value = serde_json::from_slice(&r.json_body()).unwrap();
        assert_eq!(v["error"], "schema");
        assert_eq!(
            v["detail"],
            "/twi_to: the body does not match the notification schema"
        );
    }

    /// Regression (issue 12, item 3): a rejection's public detail is fixed per reason, never
    /// the specifics (which carry request values).
    #[test]
    fn public_details_are_fixed_per_reason() {
        let r = Rejection::new(Reason::UnknownRoute, "no route for path /secret?token=abc");
        let body = String::from_utf8(r.json_body()).unwrap();
        assert!(!body.contains("secret"), "{body}");
        for reason in Reason::ALL {
            assert!(!reason.public_detail().is_empty());
        }
    }

    /// Regression (issue 12, item 4): `unknown_key` is answered as `signature_mismatch`.
    #[test]
    fn unknown_key_is_answered_as_signature_mismatch() {
        let r = Rejection::from(SignatureError::UnknownKey("no SharedKey k2".into()));
        assert_eq!(r.reason, Reason::UnknownKey, "the metric and log keep it");
        let v: serde_json::Value = serde_json::from_slice(&r.json_body()).unwrap();
        assert_eq!(v["error"], "signature_mismatch");
        assert!(!v["detail"].as_str().unwrap().contains("k2"));
    }
}
