//! The edge's side of reconciling Twilio's error events. A `twilio_errors` route's request,
//! after its body is read: the signature check (as for a notification), the strict read of the
//! Debugger form or the Event Streams batch, and the hand-over to the reconciler; the answer is
//! the proxy's own 200 (never forwarded), counting and reconciling happen after it. And the
//! other half: each notification route's answer, remembered for its call.

use super::request::{Request, SignedParts};
use super::Edge;
use crate::checks;
use crate::clock::now_ms;
use crate::config::BodyKind;
use crate::flow::Ending;
use crate::logging::RequestId;
use crate::outcome::{MadeAnswer, Outcome, Reason, Rejection};
use crate::reconcile::Answer;
use crate::route::{LiveErrorRoute, LiveRoute};
use crate::snapshot::Snapshot;
use crate::twilio_errors::sid_shaped;

/// Verifies and takes the events of one request; the ending is its answer.
pub(super) fn take_events(
    edge: &Edge,
    snap: &Snapshot,
    route: &LiveErrorRoute,
    kind: BodyKind,
    request: &Request<'_>,
    head_bytes: &[u8],
    body: &[u8],
) -> Result<Ending, Rejection> {
    let signed = SignedParts::gather(
        snap,
        route.route.public_url.as_ref(),
        &route.route.allowed_hosts,
        request,
        head_bytes,
    )?;
    let items = checks::check_error_events(
        &snap.keys,
        &snap.allowed_accounts,
        &signed.inbound(body),
        kind,
    )?;
    let events = items.len();
    let errors = edge.reconciler.take(items, request.id.as_str());
    Ok(Ending::made(MadeAnswer::twilio_events(events, errors), 0))
}

/// The `twi_call_sid` of a JSON body that failed a check, if it has a call SID's shape.
pub(super) fn unverified_call_sid(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct CallOnly<'a> {
        #[serde(borrow)]
        twi_call_sid: Option<std::borrow::Cow<'a, str>>,
    }
    let sid = serde_json::from_slice::<CallOnly<'_>>(body)
        .ok()?
        .twi_call_sid?;
    sid_shaped(&sid, Some("CA")).then(|| sid.into_owned())
}

/// Remembers what a notification route answered for its call, for reconciling Twilio's 13807.
pub(super) fn remember_answer(
    edge: &Edge,
    route: &LiveRoute,
    ending: &Ending,
    request_id: RequestId,
) {
    let Some(call_sid) = &ending.call_sid else {
        return;
    };
    edge.reconciler.record(
        call_sid,
        &Answer {
            route: &route.route.name,
            outcome: ending.outcome.as_str(),
            reason: ending.reason.map(Reason::as_str),
            status: ending.status(),
            answered_at_ms: now_ms(),
            request_id,
            verified: ending.outcome != Outcome::Rejected,
        },
    );
}
