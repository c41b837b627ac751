//! How one request ended and what goes back: the [`Ending`] the flow (or a check) produces and
//! the edge writes, counts and logs.
//!
//! No I/O and no HTTP library types: a [`Reply`] is a status and JSON bytes, or the handler's
//! answer as read. The edge turns it into bytes on the wire.

use bytes::Bytes;
use http::StatusCode;

use crate::delivery::{Answer, DeliveryError, Failure};
use crate::outcome::{error_body, Outcome, Reason, Rejection};

/// What goes back to the client.
#[derive(Debug)]
pub enum Reply {
    /// An answer the proxy made itself: a JSON document with this status.
    Made { status: StatusCode, body: Bytes },
    /// The handler's answer, passed through.
    Forwarded(Answer),
}

/// How one request ended. Exactly one per request; the edge records it before writing.
#[derive(Debug)]
pub struct Ending {
    pub outcome: Outcome,
    /// Why the proxy refused it (only with [`Outcome::Rejected`]).
    pub reason: Option<Reason>,
    pub reply: Reply,
    /// Delivery attempts on the live path (0 when none was made).
    pub attempts: u32,
    /// `twi_call_sid` and `twi_message_id`, once the body is verified (for the access log).
    pub call_sid: Option<String>,
    pub message_id: Option<String>,
}

impl Ending {
    /// A probe, verified in full and answered here (see [`crate::probe`]).
    pub fn probe(route: &str) -> Ending {
        Ending {
            outcome: Outcome::Probe,
            reason: None,
            reply: made(
                StatusCode::OK,
                serde_json::json!({
                    "probe": "ok",
                    "route": route,
                    "checked": ["signature", "body_hash", "json", "allowed_accounts", "schema"],
                }),
            ),
            attempts: 0,
            call_sid: None,
            message_id: None,
        }
    }

    /// A refusal by the proxy's own checks.
    pub fn rejected(rejection: &Rejection) -> Ending {
        Ending {
            outcome: Outcome::Rejected,
            reason: Some(rejection.reason),
            reply: Reply::Made {
                status: rejection.reason.status(),
                body: rejection.json_body().into(),
            },
            attempts: 0,
            call_sid: None,
            message_id: None,
        }
    }

    pub fn status(&self) -> u16 {
        match &self.reply {
            Reply::Made { status, .. } => status.as_u16(),
            Reply::Forwarded(answer) => answer.status,
        }
    }
}

/// A JSON answer made by the proxy.
pub fn made(status: StatusCode, body: serde_json::Value) -> Reply {
    Reply::Made {
        status,
        body: serde_json::to_vec(&body)
            .expect("a json value serializes")
            .into(),
    }
}

/// `{"error": outcome, "detail": ...}` with `status`.
pub fn made_error(status: StatusCode, outcome: Outcome, detail: &str) -> Reply {
    Reply::Made {
        status,
        body: error_body(outcome.as_str(), detail).into(),
    }
}

/// The outcome, status and public detail of a live path that gave up under policy `fail`.
///
/// The detail is fixed per kind of failure: the specifics (peer address, OS error) go to the
/// log line only, because Twilio shows these bodies to anyone with access to the account.
pub fn failure_answer(last: &Failure) -> (Outcome, StatusCode, &'static str) {
    match last {
        Failure::Status(_) => (
            Outcome::Upstream5xx,
            StatusCode::BAD_GATEWAY,
            "the notification handler answered with a server error",
        ),
        Failure::Error(DeliveryError::Timeout { .. }) => (
            Outcome::UpstreamTimeout,
            StatusCode::GATEWAY_TIMEOUT,
            "the notification handler did not answer in time",
        ),
        Failure::Error(DeliveryError::Protocol { .. }) => (
            Outcome::UpstreamProtocol,
            StatusCode::BAD_GATEWAY,
            "the notification handler's answer was not valid HTTP",
        ),
        Failure::Error(_) => (
            Outcome::UpstreamUnreachable,
            StatusCode::BAD_GATEWAY,
            "the notification handler could not be reached",
        ),
        Failure::CircuitOpen => (
            Outcome::UpstreamUnreachable,
            StatusCode::SERVICE_UNAVAILABLE,
            "the notification handler failed repeatedly (circuit open); not tried",
        ),
    }
}

/// The public detail of `503 buffer_failed` (the store's error, with its path, is logged).
pub const BUFFER_FAILED_DETAIL: &str =
    "the notification handler failed and the buffer could not store the notification";
