//! One client connection, request after request: read a head, frame and read its body, run the
//! checks and the flow, write the answer, and decide whether the connection goes on.
//!
//! Owns the per-connection buffer and the keep-alive decision (reading heads and bodies is
//! [`super::read`]'s). Bytes after a request (a
//! pipelined next request) stay in the buffer and are served next, in order. Any doubt about
//! where a request ends closes the connection after its answer.

use std::time::Instant;

use bytes::{Buf, BytesMut};
use http::Method;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant as Deadline;

use super::events::{remember_answer, take_events, unverified_call_sid};
use super::head::{Framing, Head};
use super::read::{read_body, read_head, Body, INITIAL_BUFFER};
use super::request::{Peer, Request, SignedParts};
use super::respond::{answer_bytes, lingering_close, write_within, Persistence};
use super::Edge;
use crate::checks::{self, Inbound, RequestHead};
use crate::config::BodyKind;
use crate::delivery::{upstream_request, Forwarding};
use crate::flow::{Accepted, Ending};
use crate::logging::{bounded, request_id, Echo, RequestId};
use crate::metrics::UNMATCHED_ROUTE;
use crate::outcome::{Outcome, Reason, Rejection};
use crate::probe;
use crate::route::{LiveRoute, Served};
use crate::snapshot::Snapshot;

/// The most header lines whose index a connection keeps for its next request (Twilio sends
/// about a dozen): a head with more grew it, and an idle connection stays small.
const SPARE_HEADERS: usize = 32;

pub async fn serve(edge: &Edge, mut stream: Stream, shutdown: &ShutdownWatch) {
    let ip = stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
    let peer = Peer {
        ip,
        tls: stream.get_ssl().is_some(),
    };
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER);
    // The header index of the previous request, filled again by the next one.
    let mut spare_headers = Vec::new();
    loop {
        // A head (or, on a kept-alive connection, the next one) must arrive within this: either
        // way the connection holds memory and a task. Closed quietly: nothing was asked.
        let deadline = Deadline::now() + edge.live.load().limits.header_timeout;
        let head = read_head(&mut stream, &mut buf, deadline, &mut spare_headers).await;
        // Loaded once the head is here (an idle keep-alive connection may have waited across a
        // reload) and held to the end: the whole request sees one configuration.
        let snap = edge.live.load();
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                // The log line names the kind of fault only; the answer is the fixed one.
                let id = request_id();
                let rejection = Rejection::new(Reason::Malformed, e.to_string());
                snap.routes
                    .unmatched()
                    .record(Outcome::Rejected, Some(Reason::Malformed), 0.0);
                log_rejection(edge, None, &rejection, &peer, id);
                let ending = Ending::rejected(&rejection);
                let bytes = answer_bytes(&ending.reply, false, Persistence::Close, id.as_str());
                if write_within(&mut stream, &bytes, snap.limits.write_timeout).await {
                    lingering_close(&mut stream).await;
                }
                return;
            }
        };
        let started = Instant::now();
        // Ties the public answer to its log lines: every line the request causes names it as
        // `request_id` (a field, not a span: a span per request cost ~3 % of the CPU under load).
        let id = request_id();
        let request = Request {
            head: &head,
            peer: &peer,
            id,
            started,
        };
        let (route, ending, body_read) =
            serve_one(edge, &snap, &mut stream, &mut buf, &request).await;
        let metrics = route
            .as_ref()
            .map_or(snap.routes.unmatched(), Served::metrics);
        let elapsed = started.elapsed();
        metrics.record(ending.outcome, ending.reason, elapsed.as_secs_f64());
        if snap.access_log {
            access_line(
                route.as_ref().map(Served::name),
                &ending,
                elapsed,
                &peer,
                id,
            );
        }
        if let (Some(Served::Notification(route)), true) = (route, snap.routes.reconciles()) {
            remember_answer(edge, route, &ending, id);
        }

        let closing = *shutdown.borrow() || edge.draining.is_draining();
        let framed = !matches!(head.framing, Framing::Unframeable);
        let persist = head.keep_alive && body_read && framed && !closing;
        let persistence = match (persist, head.minor_version) {
            (false, _) => Persistence::Close,
            (true, 0) => Persistence::KeepAlive10,
            (true, _) => Persistence::KeepAlive,
        };
        let allow_post = ending.reason == Some(Reason::Method);
        let bytes = answer_bytes(&ending.reply, allow_post, persistence, id.as_str());
        if !write_within(&mut stream, &bytes, snap.limits.write_timeout).await {
            return;
        }
        if !persist {
            if body_read && buf.is_empty() && ending.reason.is_none() {
                let _ = stream.shutdown().await;
            } else {
                // The client may still be sending (a body that was not read, more pipelined
                // requests): let it, so that the close does not destroy the answer.
                lingering_close(&mut stream).await;
            }
            return;
        }
        if buf.is_empty() && buf.capacity() > INITIAL_BUFFER {
            // A large request grew it: an idle connection goes back to the small buffer.
            buf = BytesMut::with_capacity(INITIAL_BUFFER);
        }
        if head.headers.capacity() <= SPARE_HEADERS {
            spare_headers = head.headers;
        }
    }
}

/// Serves the request whose head starts `buf`: the route it matched (if any), how it ended, and
/// whether its whole body was read (so the buffer now starts at the next request). On return the
/// request's bytes are gone from `buf`.
async fn serve_one<'s>(
    edge: &Edge,
    snap: &'s Snapshot,
    stream: &mut Stream,
    buf: &mut BytesMut,
    request: &Request<'_>,
) -> (Option<Served<'s>>, Ending, bool) {
    let Request {
        head,
        peer,
        id,
        started,
    } = *request;
    let target = &buf[head.target.clone()];
    let path_end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    let no_body = matches!(head.framing, Framing::None | Framing::Length(0));
    let Some(route) = snap.routes.find(&target[..path_end]) else {
        let path = Echo(&target[..path_end]);
        let rejection = Rejection::new(Reason::UnknownRoute, format!("no route for path {path}"));
        log_rejection(edge, None, &rejection, peer, id);
        return (
            None,
            Ending::rejected(&rejection),
            skip_empty_body(buf, head, no_body),
        );
    };
    let accepts: &[BodyKind] = match route {
        Served::Notification(r) => std::slice::from_ref(&r.route.body),
        Served::TwilioErrors(_) => &[BodyKind::Form, BodyKind::Json],
    };
    let checked_head = {
        let method = Method::from_bytes(&buf[head.method.clone()]).unwrap_or(Method::GET);
        let connection: Vec<&[u8]> = head.values(buf, "connection").collect();
        let request_head = RequestHead {
            method: &method,
            content_type: head.value(buf, "content-type"),
            content_type_count: head.values(buf, "content-type").count(),
            framing: head.framing,
            transfer_encoding: head.value(buf, "transfer-encoding"),
            connection: &connection,
        };
        checks::check_head_for(accepts, &snap.limits, &request_head)
    };
    let (framing, kind) = match checked_head {
        Ok(checked) => checked,
        Err(rejection) => {
            log_rejection(edge, Some(route), &rejection, peer, id);
            return (
                Some(route),
                Ending::rejected(&rejection),
                skip_empty_body(buf, head, no_body),
            );
        }
    };
    let body = read_body(snap, stream, buf, head, framing).await;
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            log_rejection(edge, Some(route), &rejection, peer, id);
            return (Some(route), Ending::rejected(&rejection), false);
        }
    };
    let prepared = match &body {
        Body::InBuffer(n) => {
            let (head_bytes, rest) = buf.split_at(head.len);
            prepare_for(edge, snap, route, kind, request, head_bytes, &rest[..*n])
        }
        Body::Owned { head: h, body: b } => prepare_for(edge, snap, route, kind, request, h, b),
    };
    if let Body::InBuffer(n) = body {
        buf.advance(head.len + n);
    }
    match (prepared, route) {
        (Ok(Prepared::Probe), _) => (Some(route), Ending::probe(route.name()), true),
        (Ok(Prepared::Answered(ending)), _) => (Some(route), ending, true),
        (Ok(Prepared::Deliver(accepted)), Served::Notification(r)) => {
            (Some(route), edge.flow.run(r, accepted, started).await, true)
        }
        (Ok(Prepared::Deliver(_)), Served::TwilioErrors(_)) => {
            unreachable!("only a notification route delivers")
        }
        (
            Err(Refused {
                rejection,
                call_sid,
            }),
            _,
        ) => {
            log_rejection(edge, Some(route), &rejection, peer, id);
            let mut ending = Ending::rejected(&rejection);
            ending.call_sid = call_sid;
            (Some(route), ending, true)
        }
    }
}

/// The checks after the body for the route's kind: a notification's ([`prepare`]) or a
/// `twilio_errors` route's ([`take_events`]).
fn prepare_for(
    edge: &Edge,
    snap: &Snapshot,
    route: Served<'_>,
    kind: BodyKind,
    request: &Request<'_>,
    head_bytes: &[u8],
    body: &[u8],
) -> Result<Prepared, Refused> {
    match route {
        Served::Notification(r) => {
            prepare(snap, r, request, head_bytes, body).map_err(|rejection| {
                // A refused notification's call, for reconciling a 13807 with this answer (and
                // the access line), only while a twilio_errors route exists: read without trusting
                // the body (anyone could have sent it), and only when it has a call SID's shape.
                let call_sid = (snap.routes.reconciles() && r.route.body == BodyKind::Json)
                    .then(|| unverified_call_sid(body))
                    .flatten();
                Refused {
                    rejection,
                    call_sid,
                }
            })
        }
        Served::TwilioErrors(r) => take_events(edge, snap, r, kind, request, head_bytes, body)
            .map(Prepared::Answered)
            .map_err(|rejection| Refused {
                rejection,
                call_sid: None,
            }),
    }
}

/// A refusal after the body was read, with the call SID the body named (unverified).
struct Refused {
    rejection: Rejection,
    call_sid: Option<String>,
}

/// A request refused before its body was read: when it has no body, the buffer moves past it and
/// the connection can go on; otherwise the request's end is unknown and the connection closes.
fn skip_empty_body(buf: &mut BytesMut, head: &Head, no_body: bool) -> bool {
    if no_body {
        buf.advance(head.len);
    }
    no_body
}

/// What a request that passed every check becomes.
enum Prepared {
    /// A `probe` that asked to be answered by the proxy itself.
    Probe,
    Deliver(Accepted),
    /// Answered by the proxy (Twilio's error events, taken).
    Answered(Ending),
}

/// The checks after the body (signature, body hash, JSON, accounts, schema), then the exact bytes
/// for the handler.
fn prepare(
    snap: &Snapshot,
    route: &LiveRoute,
    request: &Request<'_>,
    head_bytes: &[u8],
    body: &[u8],
) -> Result<Prepared, Rejection> {
    let Request { head, peer, .. } = *request;
    let text = |name: &'static str| {
        head.value(head_bytes, name)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let signed = SignedParts::gather(
        snap,
        route.route.public_url.as_ref(),
        &route.route.allowed_hosts,
        request,
        head_bytes,
    )?;
    let inbound = signed.inbound(body);
    let is_probe = head.value(head_bytes, probe::HEADER).is_some();
    let verified =
        checks::check_request(&route.route, &snap.keys, &snap.allowed_accounts, &inbound).map_err(
            |mut r| {
                if is_probe && r.reason.public() == Reason::SignatureMismatch {
                    r.hint = Some(probe::mismatch_hint(&signed_base(&inbound)));
                }
                r
            },
        )?;
    match probe::recognise(is_probe, verified.json.as_ref())? {
        Some(probe::Mode::Answer) => return Ok(Prepared::Probe),
        Some(probe::Mode::Through) => {
            // A signed probe asked for diagnosis: its answer may say which rule refused it (the
            // detail names config keys, nothing the request carried).
            probe::check_through(verified.json.as_ref(), snap.probe_identity.as_deref()).map_err(
                |mut r| {
                    r.hint = Some(r.detail.clone());
                    r
                },
            )?
        }
        None => {}
    }
    let notification = verified.notification();
    if let Some(violation) = &verified.reported_violation {
        route.metrics.schema_reported.inc();
        tracing::warn!(
            request_id = request.id.as_str(),
            route = %route.route.name,
            call_sid = notification.call_sid.unwrap_or("-"),
            message_id = notification.message_id.unwrap_or("-"),
            violation = %violation,
            "schema violation let through (schema_mode: report)"
        );
    }
    Ok(Prepared::Deliver(Accepted {
        request: upstream_request(
            head_bytes,
            body,
            &Forwarding {
                client: peer.ip,
                tls: peer.tls,
                trusted: signed.trusted,
            },
        ),
        call_sid: notification.call_sid.map(str::to_owned),
        message_id: notification.message_id.map(str::to_owned),
        idempotency_token: text("i-twilio-idempotency-token").map(str::to_owned),
        request_id: request.id,
    }))
}

/// The signed URL without its query (no secret: the public URL Twilio is configured with).
fn signed_base(inbound: &Inbound<'_>) -> String {
    let mut url = inbound.url;
    url.query = b"";
    url.to_url_string()
}

/// Logs a refusal: reason and bounded detail, never the request's secrets, the detail only
/// within the edge's rate for them.
fn log_rejection(
    edge: &Edge,
    route: Option<Served<'_>>,
    rejection: &Rejection,
    peer: &Peer,
    request_id: RequestId,
) {
    let detail = if edge.rejection_details.allow() {
        bounded(&rejection.detail)
    } else {
        "(rate-limited)".to_owned()
    };
    tracing::info!(
        request_id = request_id.as_str(),
        route = route.as_ref().map_or(UNMATCHED_ROUTE, Served::name),
        reason = rejection.reason.as_str(),
        status = rejection.reason.status().as_u16(),
        peer = %peer.ip.map_or("-".to_string(), |ip| ip.to_string()),
        detail = %detail,
        "rejected"
    );
}

fn access_line(
    route: Option<&str>,
    ending: &Ending,
    elapsed: std::time::Duration,
    peer: &Peer,
    request_id: RequestId,
) {
    tracing::info!(
        target: "access",
        request_id = request_id.as_str(),
        route = route.unwrap_or(UNMATCHED_ROUTE),
        outcome = ending.outcome.as_str(),
        reason = ending.reason.map_or("-", Reason::as_str),
        status = ending.status(),
        attempts = ending.attempts,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        call_sid = ending.call_sid.as_deref().unwrap_or("-"),
        message_id = ending.message_id.as_deref().unwrap_or("-"),
        peer = %peer.ip.map_or("-".to_string(), |ip| ip.to_string()),
    );
}
