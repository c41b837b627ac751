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

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::BytesMut;
use http::StatusCode;
use ipnet::IpNet;
use pingora::apps::{HttpServerApp, ReusedHttpStream};
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

use crate::config::{Config, Limits};
use crate::delivery::upstream_request;
use crate::flow::{Accepted, Ending, Flow};
use crate::lifecycle::Draining;
use crate::logging::{bounded, request_id, Echo, REJECTION_DETAILS};
use crate::metrics::UNMATCHED_ROUTE;
use crate::outcome::{Outcome, Reason, Rejection};
use crate::pipeline::{self, Inbound, RequestHead};
use crate::route::{LiveRoute, Routes};
use crate::signature::{public_url, KeyRing, RequestOrigin};
use body::read_body;
use respond::{json_header, set_request_id, stamp, write_reply};
use tracing::Instrument;

/// Everything the public listeners need, built once at start and shared by all connections.
pub struct NotifyProxy {
    routes: Routes,
    flow: Flow,
    keys: KeyRing,
    allowed_accounts: HashSet<String>,
    trusted_proxies: Vec<IpNet>,
    limits: Limits,
    access_log: bool,
    /// In the grace period after SIGTERM: answer, but close each connection after its answer,
    /// so clients and load balancers move to another instance.
    draining: Draining,
}

impl NotifyProxy {
    pub fn new(config: &Config, routes: Routes, flow: Flow, draining: Draining) -> Self {
        NotifyProxy {
            routes,
            flow,
            keys: config.keys.clone(),
            allowed_accounts: config.allowed_accounts.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            limits: config.limits,
            access_log: config.logging.access_log,
            draining,
        }
    }

    fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.trusted_proxies.iter().any(|net| net.contains(&ip)))
    }

    /// Runs one request to its end: the route it matched (if any) and how it ended.
    async fn handle(
        &self,
        session: &mut ServerSession,
        arrived: Instant,
    ) -> (Option<&LiveRoute>, Ending) {
        let raw_target = session.req_header().raw_path();
        let path_end = raw_target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(raw_target.len());
        let Some(route) = self.routes.find(&raw_target[..path_end]) else {
            let path = Echo(&raw_target[..path_end]);
            let rejection =
                Rejection::new(Reason::UnknownRoute, format!("no route for path {path}"));
            return (None, reject(session, None, &rejection));
        };
        match self.check_and_run(session, route, arrived).await {
            Ok(ending) => (Some(route), ending),
            Err(rejection) => (Some(route), reject(session, Some(route), &rejection)),
        }
    }

    /// The checks in order (head, body, signature, JSON, schema), then the flow.
    async fn check_and_run(
        &self,
        session: &mut ServerSession,
        route: &LiveRoute,
        arrived: Instant,
    ) -> Result<Ending, Rejection> {
        let req = session.req_header();
        let header = |name: http::header::HeaderName| req.headers.get(name).map(|v| v.as_bytes());
        let connection: Vec<&[u8]> = req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let head = RequestHead {
            method: &req.method,
            content_type: header(http::header::CONTENT_TYPE),
            content_type_count: req
                .headers
                .get_all(http::header::CONTENT_TYPE)
                .iter()
                .count(),
            content_length: header(http::header::CONTENT_LENGTH),
            transfer_encoding: header(http::header::TRANSFER_ENCODING),
            connection: &connection,
        };
        let framing = pipeline::check_head(&route.route, &self.limits, &head)?;
        let body = read_body(session, framing, &self.limits).await?;

        let trusted = self.is_trusted(client_ip(session));
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
        let verified =
            pipeline::check_request(&route.route, &self.keys, &self.allowed_accounts, &inbound)?;
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

/// Logs a refusal (reason and bounded detail, never the request's secrets; the detail only
/// within [`REJECTION_DETAILS`]'s rate) and makes its ending.
fn reject(session: &mut ServerSession, route: Option<&LiveRoute>, rejection: &Rejection) -> Ending {
    let detail = if REJECTION_DETAILS.allow() {
        bounded(&rejection.detail)
    } else {
        "(rate-limited)".to_owned()
    };
    tracing::info!(
        route = route.map_or(UNMATCHED_ROUTE, |r| r.route.name.as_str()),
        reason = rejection.reason.as_str(),
        status = rejection.reason.status().as_u16(),
        peer = %client_ip(session).map_or("-".to_string(), |ip| ip.to_string()),
        detail = %detail,
        "rejected"
    );
    // The body may be unread (or half read): this connection cannot carry another request.
    if !session.is_body_done() {
        session.set_keepalive(None);
    }
    Ending::rejected(rejection)
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
        let head = tokio::time::timeout(self.limits.header_timeout, session.read_request()).await;
        let started = Instant::now();
        // Ties the public answer to its log lines (the flow's lines carry it through the span).
        let request_id = request_id();
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
                // any other rejection, then close. Pingora's error text quotes up to 2 KB of the
                // raw head (signature, signed URL, even body bytes), so only its kind is logged
                // and the answer is the fixed one.
                let rejection = Rejection::new(Reason::Malformed, e.etype().as_str());
                tracing::info!(
                    request_id = %request_id,
                    reason = "malformed",
                    status = 400,
                    error_kind = e.etype().as_str(),
                    "rejected"
                );
                self.routes.unmatched().record(
                    Outcome::Rejected,
                    Some(Reason::Malformed),
                    started.elapsed().as_secs_f64(),
                );
                session.set_keepalive(None);
                let body = stamp(&rejection.json_body(), &request_id);
                let mut header = json_header(StatusCode::BAD_REQUEST, body.len());
                set_request_id(&mut header, &request_id);
                let _ = session.write_error_response(header, body).await;
                return None;
            }
        }
        let closing = *shutdown.borrow() || self.draining.is_draining();
        session.set_keepalive(if closing { None } else { Some(60) });
        // ERROR level so that the span is enabled whatever the filter: it writes no line of its
        // own, it only puts the id on every line the request's flow writes.
        let span = tracing::error_span!("request", id = %request_id);
        let (route, ending) = self.handle(&mut session, started).instrument(span).await;
        let metrics = route.map_or(self.routes.unmatched(), |r| &r.metrics);
        let elapsed = started.elapsed();
        metrics.record(ending.outcome, ending.reason, elapsed.as_secs_f64());
        if self.access_log {
            tracing::info!(
                target: "access",
                request_id = %request_id,
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
        write_reply(session, ending.reply, &request_id, allow_post, closing).await
    }
}

fn client_ip(session: &ServerSession) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}
