//! What the proxy answers when it ends a request itself and the reason is not a refusal (those
//! are [`super::Reason`]'s): the live attempts gave up under policy `fail`, the notification
//! was buffered (or could not be), a duplicate was recognised, a probe was verified, Twilio's
//! error events were taken.
//!
//! Each ending's outcome, status and JSON body are chosen here and nowhere else; the request
//! flow only decides *which* ending it reached. The public detail is fixed per ending: the
//! specifics (peer address, OS error, store path) go to the log line only, because Twilio shows
//! these bodies to anyone with access to the account. No I/O.

use http::StatusCode;

use super::{error_body, Outcome};

/// Why the live attempts ended without a final answer, as far as the answer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// The handler kept answering a retryable 5xx.
    ServerError,
    /// The handler did not answer within the response timeout.
    Timeout,
    /// The handler broke HTTP (garbage, early close, an answer too large).
    Protocol,
    /// No connection could be made.
    Unreachable,
    /// The circuit breaker let no attempt through.
    CircuitOpen,
}

/// What the original of a duplicate got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Original {
    Delivered,
    /// Buffered, and answered this status then.
    Buffered(StatusCode),
}

/// An answer the proxy makes: the ending's name, its status and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeAnswer {
    pub outcome: Outcome,
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// The public detail of `503 buffer_failed` (the store's error, with its path, is logged).
const BUFFER_FAILED_DETAIL: &str =
    "the notification handler failed and the buffer could not store the notification";

impl MadeAnswer {
    fn json(outcome: Outcome, status: StatusCode, body: serde_json::Value) -> Self {
        MadeAnswer {
            outcome,
            status,
            body: serde_json::to_vec(&body).expect("a json value serializes"),
        }
    }

    fn error(outcome: Outcome, status: StatusCode, detail: &str) -> Self {
        MadeAnswer {
            outcome,
            status,
            body: error_body(outcome.as_str(), detail),
        }
    }

    /// Policy `fail`: the live attempts gave up.
    pub fn gave_up(why: GaveUp) -> Self {
        let (outcome, status, detail) = match why {
            GaveUp::ServerError => (
                Outcome::Upstream5xx,
                StatusCode::BAD_GATEWAY,
                "the notification handler answered with a server error",
            ),
            GaveUp::Timeout => (
                Outcome::UpstreamTimeout,
                StatusCode::GATEWAY_TIMEOUT,
                "the notification handler did not answer in time",
            ),
            GaveUp::Protocol => (
                Outcome::UpstreamProtocol,
                StatusCode::BAD_GATEWAY,
                "the notification handler's answer was not valid HTTP",
            ),
            GaveUp::Unreachable => (
                Outcome::UpstreamUnreachable,
                StatusCode::BAD_GATEWAY,
                "the notification handler could not be reached",
            ),
            GaveUp::CircuitOpen => (
                Outcome::UpstreamUnreachable,
                StatusCode::SERVICE_UNAVAILABLE,
                "the notification handler failed repeatedly (circuit open); not tried",
            ),
        };
        MadeAnswer::error(outcome, status, detail)
    }

    /// Policy `buffer`: stored durably as message `id`, answered the route's `buffered_status`.
    pub fn buffered(status: StatusCode, id: u64) -> Self {
        MadeAnswer::json(
            Outcome::Buffered,
            status,
            serde_json::json!({"buffered": true, "id": id}),
        )
    }

    /// Policy `buffer`, but the store could not take it: nothing is claimed that is not stored.
    pub fn buffer_failed() -> Self {
        MadeAnswer::error(
            Outcome::BufferFailed,
            StatusCode::SERVICE_UNAVAILABLE,
            BUFFER_FAILED_DETAIL,
        )
    }

    /// A copy of a notification delivered or buffered before: the status its original got.
    pub fn duplicate(original: Original) -> Self {
        let (status, name) = match original {
            Original::Delivered => (StatusCode::OK, "delivered"),
            Original::Buffered(status) => (status, "buffered"),
        };
        MadeAnswer::json(
            Outcome::Duplicate,
            status,
            serde_json::json!({"duplicate": true, "original": name}),
        )
    }

    /// A `probe`'s synthetic notification, verified in full on `route`.
    pub fn probe(route: &str) -> Self {
        MadeAnswer::json(
            Outcome::Probe,
            StatusCode::OK,
            serde_json::json!({
                "probe": "ok",
                "route": route,
                "checked": ["signature", "body_hash", "json", "allowed_accounts", "schema"],
            }),
        )
    }

    /// Twilio's error events on a `twilio_errors` route: `events` taken (`errors` of them to
    /// count; the rest are warnings or other event types). Counting happens after the answer.
    pub fn twilio_events(events: usize, errors: usize) -> Self {
        MadeAnswer::json(
            Outcome::TwilioEvents,
            StatusCode::OK,
            serde_json::json!({"received": events, "errors": errors}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_events_are_answered_200_with_what_was_taken() {
        let a = MadeAnswer::twilio_events(3, 2);
        assert_eq!(
            (a.outcome, a.status),
            (Outcome::TwilioEvents, StatusCode::OK)
        );
        assert_eq!(json(&a), serde_json::json!({"received": 3, "errors": 2}));
    }

    fn json(answer: &MadeAnswer) -> serde_json::Value {
        serde_json::from_slice(&answer.body).unwrap()
    }

    #[test]
    fn every_way_of_giving_up_has_its_outcome_status_and_fixed_detail() {
        let cases = [
            (GaveUp::ServerError, Outcome::Upstream5xx, 502),
            (GaveUp::Timeout, Outcome::UpstreamTimeout, 504),
            (GaveUp::Protocol, Outcome::UpstreamProtocol, 502),
            (GaveUp::Unreachable, Outcome::UpstreamUnreachable, 502),
            (GaveUp::CircuitOpen, Outcome::UpstreamUnreachable, 503),
        ];
        for (why, outcome, status) in cases {
            let answer = MadeAnswer::gave_up(why);
            assert_eq!((answer.outcome, answer.status.as_u16()), (outcome, status));
            assert_eq!(json(&answer)["error"], outcome.as_str());
        }
        assert!(json(&MadeAnswer::gave_up(GaveUp::CircuitOpen))["detail"]
            .as_str()
            .unwrap()
            .contains("circuit open"));
    }

    #[test]
    fn a_duplicate_gets_what_its_original_got() {
        let d = MadeAnswer::duplicate(Original::Delivered);
        assert_eq!((d.outcome, d.status), (Outcome::Duplicate, StatusCode::OK));
        assert_eq!(json(&d)["original"], "delivered");
        let b = MadeAnswer::duplicate(Original::Buffered(StatusCode::ACCEPTED));
        assert_eq!(b.status, StatusCode::ACCEPTED);
        assert_eq!(
            json(&b),
            serde_json::json!({"duplicate": true, "original": "buffered"})
        );
    }

    #[test]
    fn buffering_answers() {
        let ok = MadeAnswer::buffered(StatusCode::OK, 7);
        assert_eq!(json(&ok), serde_json::json!({"buffered": true, "id": 7}));
        let failed = MadeAnswer::buffer_failed();
        assert_eq!(
            (failed.outcome, failed.status),
            (Outcome::BufferFailed, StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(json(&failed)["error"], "buffer_failed");
    }
}
