//! A `twilio_errors` route's request, after its body is read: the signature check (as for a
//! notification), the strict read of the Debugger form or the Event Streams batch, and the
//! hand-over to the reconciler. The answer is the proxy's own 200 (never forwarded); counting
//! and reconciling happen after it.

use super::request::{Request, SignedParts};
use super::Edge;
use crate::checks;
use crate::config::BodyKind;
use crate::flow::Ending;
use crate::outcome::{MadeAnswer, Rejection};
use crate::route::LiveErrorRoute;
use crate::snapshot::Snapshot;

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
    let configured = route.route.public_url.as_ref().map(|p| p.as_signed_url());
    let signed = SignedParts::gather(
        snap,
        configured,
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
    let errors = edge.reconciler.take(items, request.id);
    Ok(Ending::made(
        MadeAnswer::twilio_events(events, errors),
        0,
        None,
        None,
    ))
}
