//! The Pingora glue for the public listeners: read a request, check it, hand it to the flow,
//! write the answer.
//!
//! Owns the exchange with Pingora's downstream session: the head and body, the raw bytes that
//! go upstream, and recording each [`Ending`] (metric, access line) before its answer is
//! written. The checks live in [`crate::pipeline`], the signed URL in [`crate::signature`],
//! everything after the checks in [`crate::flow`]. It never forwards a request that failed a
//! check and never logs a signature, token or body.

mod body;
mod respond;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::BytesMut;
use http::StatusCode;
use pingora::apps::{HttpServerApp, ReusedHttpStream};
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use crate::delivery::upstream_request;
use crate::flow::{Accepted, Ending, Flow};
use crate::lifecycle::Draining;
use crate::metrics::UNMATCHED_ROUTE;
use crate::outcome::{Outcome, Reason, Rejection};
use crate::pipeline::{self, Inbound, RequestHead};
use crate::probe;
use crate::route::LiveRoute;
use crate::runtime::{Runtime, Snapshot};
use crate::signature::{public_url, RequestOrigin};
use body::read_body;
use respond::{json_header, write_reply};

/// Everything the public listeners need, shared by all connections. What a reload may change
/// lives in the [`Runtime`] snapshot, loaded once per request.
pub struct NotifyProxy {
    runtime: Arc<Runtime>,
    flow: Flow,
    /// In the grace period after SIGTERM: answer, but close each connection after its answer,
    /// so clients and load balancers move to another instance.
    draining: Draining,
}

impl NotifyProxy {
    pub fn new(runtime: Arc<Runtime>, flow: Flow, draining: Draining) -> Self {
        NotifyProxy {
            runtime,
            flow,
            draining,
        }
    }

    /// Runs one request to its end: the route it matched (if any) and how it ended.
    async fn handle<'s>(
        &self,
        snap: &'s Snapshot,
        session: &mut ServerSession,
        arrived: Instant,
    ) -> (Option<&'s LiveRoute>, Ending) {
        let raw_target = session.req_header().raw_path();
        let path_end = raw_target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(raw_target.len());
        let Some(route) = snap.routes.find(&raw_target[..path_end]) else {
            let path = String::from_utf8_lossy(&raw_target[..path_end]).into_owned();
            let rejection =
                Rejection::new(Reason::UnknownRoute, format!("no route for path {path}"));
            return (None, reject(session, None, &rejection));
        };
        match self.check_and_run(snap, session, route, arrived).await {
            Ok(ending) => (Some(route), ending),
            Err(rejection) => (Some(route), reject(session, Some(route), &rejection)),
        }
    }

    /// The checks in order (head, body, signature, JSON, schema), then the flow.
    async fn check_and_run(
        &self,
        snap: &Snapshot,
        session: &mut ServerSession,
        route: &LiveRoute,
        arrived: Instant,
    ) -> Result<Ending, Rejection> {
        let req = session.req_header();
        let header = |name: http::header::HeaderName| req.headers.get(name).map(|v| v.as_bytes());
        let head = RequestHead {
            method: &req.method,
            content_type: header(http::header::CONTENT_TYPE),
            content_length: header(http::header::CONTENT_LENGTH),
            transfer_encoding: header(http::header::TRANSFER_ENCODING),
        };
        let framing = pipeline::check_head(&route.route, &snap.limits, &head)?;
        let body = read_body(session, framing, &snap.limits).await?;

        let trusted = client_ip(session)
            .is_some_and(|ip| snap.trusted_proxies.iter().any(|net| net.contains(&ip)));
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let req = session.req_header();
        let origin = request_origin(req, tls, trusted);
        let configured = route.route.public_url.as_ref().map(|p| p.as_signed_url());
        let url = public_url(configured, &origin)?;
        let signatures: Vec<&[u8]> = req
            .headers
            .get_all("x-twilio-signature")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let inbound = Inbound {
            url,
            signatures: &signatures,
            signature_settings: req
                .headers
                .get("x-twilio-webhooks-signature-settings")
                .map(|v| v.as_bytes()),
            body: &body,
        };
        let is_probe = req.headers.contains_key(probe::HEADER);
        let verified =
            pipeline::check_request(&route.route, &snap.keys, &snap.allowed_accounts, &inbound)
                .map_err(|mut r| {
                    if is_probe && r.reason == Reason::SignatureMismatch {
                        r.detail = format!(
                            "{}; {}",
                            r.detail,
                            probe::mismatch_hint(&signed_base(&inbound))
                        );
                    }
                    r
                })?;
        match probe::recognise(is_probe, verified.json.as_ref())? {
            Some(probe::Mode::Answer) => return Ok(Ending::probe(&route.route.name)),
            Some(probe::Mode::Through) => {
                probe::check_through(verified.json.as_ref(), snap.probe_identity.as_deref())?
            }
            None => {}
        }
        let notification = verified.notification();
        if let Some(violation) = &verified.reported_violation {
            route.metrics.schema_reported.inc();
            tracing::warn!(
                route = %route.route.name,
                call_sid = notification.call_sid.unwrap_or("-"),
                message_id = notification.message_id.unwrap_or("-"),
                violation = %violation,
                "schema violation let through (schema_mode: report)"
            );
        }

        let raw_head = match session.as_http1() {
            Some(v1) => v1.get_headers_raw_bytes(),
            // HTTP/2 is not offered on the public listeners; rebuild the head if it ever is.
            None => {
                pingora::protocols::http::v1::client::http_req_header_to_wire(session.req_header())
                    .map(BytesMut::freeze)
                    .unwrap_or_default()
            }
        };
        let accepted = Accepted {
            request: upstream_request(&raw_head, &body),
            call_sid: notification.call_sid.map(str::to_owned),
            message_id: notification.message_id.map(str::to_owned),
            idempotency_token: session
                .req_header()
                .headers
                .get("i-twilio-idempotency-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        Ok(self.flow.run(route, accepted, arrived).await)
    }
}

/// Logs a refusal (reason and detail, never the request's secrets) and makes its ending.
fn reject(session: &mut ServerSession, route: Option<&LiveRoute>, rejection: &Rejection) -> Ending {
    tracing::info!(
        route = route.map_or(UNMATCHED_ROUTE, |r| r.route.name.as_str()),
        reason = rejection.reason.as_str(),
        status = rejection.reason.status().as_u16(),
        peer = %client_ip(session).map_or("-".to_string(), |ip| ip.to_string()),
        detail = %rejection.detail,
        "rejected"
    );
    // The body may be unread (or half read): this connection cannot carry another request.
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    Ending::rejected(rejection)
}

/// The signed URL without its query (no secret: the public URL Twilio is configured with).
fn signed_base(inbound: &Inbound<'_>) -> String {
    let mut url = inbound.url;
    url.query = b"";
    url.to_url_string()
}

/// Where the request says it was sent, for rebuilding the signed URL.
fn request_origin(req: &RequestHeader, tls: bool, trusted: bool) -> RequestOrigin<'_> {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    RequestOrigin {
        raw_target: req.raw_path(),
        host: header("host"),
        forwarded_proto: header("x-forwarded-proto"),
        forwarded_host: header("x-forwarded-host"),
        tls,
        trusted,
    }
}

#[async_trait]
impl HttpServerApp for NotifyProxy {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // Bounds both a slowly dribbled head and an idle kept-alive connection: either way the
        // connection holds memory and a task, so it is closed (quietly: nothing was asked).
        let header_timeout = self.runtime.load().limits.header_timeout;
        let head = tokio::time::timeout(header_timeout, session.read_request()).await;
        let started = Instant::now();
        // Loaded once the head is here (an idle keep-alive connection may have waited across a
        // reload), and held to the end: the whole request sees one configuration.
        let snap = self.runtime.load();
        let Ok(head) = head else {
            tracing::debug!("no complete request head within limits.header_timeout; closing");
            return None;
        };
        match head {
            Ok(true) => {}
            // The client closed an idle keep-alive connection: nothing was asked.
            Ok(false) => return None,
            Err(e) => {
                // Garbage, an oversized head, or a head that stalled: answer and count it like
                // any other rejection, then close.
                let rejection =
                    Rejection::new(Reason::Malformed, format!("invalid request head: {e}"));
                tracing::info!(reason = "malformed", status = 400, detail = %rejection.detail, "rejected");
                snap.routes.unmatched().record(
                    Outcome::Rejected,
                    Some(Reason::Malformed),
                    started.elapsed().as_secs_f64(),
                );
                session.set_keepalive(None);
                let body = rejection.json_body();
                let header = json_header(StatusCode::BAD_REQUEST, body.len());
                let _ = session.write_error_response(header, body.into()).await;
                return None;
            }
        }
        let closing = *shutdown.borrow() || self.draining.is_draining();
        session.set_keepalive(if closing { None } else { Some(60) });
        let (route, ending) = self.handle(&snap, &mut session, started).await;
        let metrics = route.map_or(snap.routes.unmatched(), |r| &r.metrics);
        let elapsed = started.elapsed();
        metrics.record(ending.outcome, ending.reason, elapsed.as_secs_f64());
        if snap.access_log {
            tracing::info!(
                target: "access",
                route = route.map_or(UNMATCHED_ROUTE, |r| r.route.name.as_str()),
                outcome = ending.outcome.as_str(),
                reason = ending.reason.map_or("-", Reason::as_str),
                status = ending.status(),
                attempts = ending.attempts,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                call_sid = ending.call_sid.as_deref().unwrap_or("-"),
                message_id = ending.message_id.as_deref().unwrap_or("-"),
                peer = %client_ip(&session).map_or("-".to_string(), |ip| ip.to_string()),
            );
        }
        let allow_post = ending.reason == Some(Reason::Method);
        write_reply(session, ending.reply, allow_post, closing).await
    }
}

fn client_ip(session: &ServerSession) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}
