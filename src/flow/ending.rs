//! How one request ended and what goes back: the [`Ending`] the flow (or a check) produces and
//! the edge writes, counts and logs.
//!
//! A carrier, not a decider: which outcome, status and body a proxy-made answer has is
//! [`crate::outcome`]'s call (`MadeAnswer`, `Reason`). No I/O: a [`Reply`] is a status and JSON
//! bytes, or the handler's answer as read. The edge turns it into bytes on the wire.

use bytes::Bytes;
use http::StatusCode;

use crate::delivery::Answer;
use crate::outcome::{MadeAnswer, Outcome, Reason, Rejection};

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
    /// `twi_call_sid` and `twi_message_id`, once the body is verified (for the access log). The
    /// edge also sets the call SID of a refused JSON notification (unverified, checked for a
    /// call SID's shape) while a `twilio_errors` route exists, to reconcile a 13807 with it.
    pub call_sid: Option<String>,
    pub message_id: Option<String>,
}

impl Ending {
    /// An answer the proxy made itself (see [`crate::outcome::MadeAnswer`]). The flow names
    /// the notification in it once it ended ([`crate::flow::Flow::run`]).
    pub fn made(answer: MadeAnswer, attempts: u32) -> Ending {
        Ending {
            outcome: answer.outcome,
            reason: None,
            reply: Reply::Made {
                status: answer.status,
                body: answer.body.into(),
            },
            attempts,
            call_sid: None,
            message_id: None,
        }
    }

    /// A probe, verified in full and answered here (see [`crate::probe`]).
    pub fn probe(route: &str) -> Ending {
        Ending::made(MadeAnswer::probe(route), 0)
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
