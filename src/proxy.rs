//! The Pingora glue for the public listeners: read a request, run the pipeline, deliver, answer.
//!
//! Owns the per-request flow and the mapping of every ending to an answer, a log line and a
//! metric. It stays thin: the checks live in [`crate::pipeline`], the upstream exchange in
//! [`crate::delivery`], the names of outcomes in [`crate::outcome`]. Never forwards a request
//! that failed a check and never logs a signature, token or body.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use ipnet::IpNet;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncWriteExt;

use crate::buffer::{now_ms, NewMessage, NotificationStore, StoreError};
use crate::config::{Config, DedupeKey, Limits, OnExhausted, Route, RouteTable};
use crate::dedupe::{DedupeCache, Seen};
use crate::delivery::{upstream_request, Answer, Delivery, DeliveryError, Failure, UpstreamGroup};
use crate::metrics::{Metrics, RouteMetrics, UNMATCHED_ROUTE};
use crate::outcome::{error_body, Outcome, Reason, Rejection};
use crate::pipeline::{self, BodyFraming, Inbound, RequestHead};
use crate::signature::{KeyRing, SignedUrl};

/// Everything the request path needs, built once at start and shared by all connections.
pub struct NotifyProxy {
    routes: Vec<Route>,
    route_table: RouteTable,
    route_metrics: Vec<RouteMetrics>,
    unmatched_metrics: RouteMetrics,
    upstreams: Vec<Arc<UpstreamGroup>>,
    keys: KeyRing,
    allowed_accounts: HashSet<String>,
    trusted_proxies: Vec<IpNet>,
    limits: Limits,
    dedupe: Option<(DedupeKey, DedupeCache)>,
    store: Option<Arc<dyn NotificationStore>>,
    access_log: bool,
    /// False after a store write failed for a reason other than being full (for /readyz).
    pub store_writable: Arc<std::sync::atomic::AtomicBool>,
}

/// How one request ended and what to answer. Metrics are recorded before the answer is
/// written, so a client that has its answer can already see it counted.
struct Ending {
    route: Option<usize>,
    outcome: Outcome,
    reason: Option<Reason>,
    reply: Reply,
    /// Delivery attempts on the live path (0 when none was made).
    attempts: u32,
    /// `twi_call_sid` and `twi_message_id`, once the body is verified (for the access log).
    call_sid: Option<String>,
    message_id: Option<String>,
}

impl Ending {
    fn status(&self) -> u16 {
        match &self.reply {
            Reply::Made { header, .. } => header.status.as_u16(),
            Reply::Forwarded(answer) => answer.status,
        }
    }
}

/// What the delivery stage needs to know about a verified request.
struct RequestContext {
    route_idx: usize,
    call_sid: Option<String>,
    message_id: Option<String>,
    /// Fingerprints a duplicate is recognised by (token and/or message id), per the config.
    dedupe_keys: [Option<u64>; 2],
}

/// The status and outcome for a live path that gave up (policy `fail`).
fn failure_answer(last: &Failure) -> (Outcome, StatusCode) {
    match last {
        Failure::Status(_) => (Outcome::Upstream5xx, StatusCode::BAD_GATEWAY),
        Failure::Error(DeliveryError::Timeout { .. }) => {
            (Outcome::UpstreamTimeout, StatusCode::GATEWAY_TIMEOUT)
        }
        Failure::Error(DeliveryError::Protocol { .. }) => {
            (Outcome::UpstreamProtocol, StatusCode::BAD_GATEWAY)
        }
        Failure::Error(_) => (Outcome::UpstreamUnreachable, StatusCode::BAD_GATEWAY),
        Failure::CircuitOpen => (
            Outcome::UpstreamUnreachable,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    }
}

fn json_bytes(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).expect("json value serializes")
}

fn made(status: StatusCode, body: Vec<u8>) -> Reply {
    Reply::Made {
        header: json_header(status, body.len()),
        body: body.into(),
    }
}

/// What goes back to the client.
enum Reply {
    /// An answer the proxy made itself (rejections, upstream failures).
    Made { header: ResponseHeader, body: Bytes },
    /// The handler's answer, passed through.
    Forwarded(Answer),
}

impl NotifyProxy {
    pub fn new(
        config: &Config,
        upstreams: Vec<Arc<UpstreamGroup>>,
        metrics: &Metrics,
        store: Option<Arc<dyn NotificationStore>>,
        store_writable: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        NotifyProxy {
            routes: config.routes.clone(),
            route_table: RouteTable::new(&config.routes),
            route_metrics: config
                .routes
                .iter()
                .map(|r| metrics.route(&r.name))
                .collect(),
            unmatched_metrics: metrics.unmatched(),
            upstreams,
            keys: config.keys.clone(),
            allowed_accounts: config.allowed_accounts.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            limits: config.limits,
            dedupe: config
                .dedupe
                .as_ref()
                .map(|d| (d.key, DedupeCache::new(d.capacity, d.ttl))),
            store,
            store_writable,
            access_log: config.logging.access_log,
        }
    }

    fn is_trusted(&self, session: &ServerSession) -> bool {
        let Some(ip) = client_ip(session) else {
            return false;
        };
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Runs one request to its end and decides the answer.
    async fn handle(&self, session: &mut ServerSession, arrived: Instant) -> Ending {
        let raw_target = session.req_header().raw_path();
        let path_end = raw_target
            .iter()
            .position(|&b| b == b'?')
            .unwrap_or(raw_target.len());
        let Some(route_idx) = self.route_table.find(&raw_target[..path_end]) else {
            let path = String::from_utf8_lossy(&raw_target[..path_end]).into_owned();
            let rejection =
                Rejection::new(Reason::UnknownRoute, format!("no route for path {path}"));
            return self.reject(session, None, rejection).await;
        };
        let route = &self.routes[route_idx];

        let req = session.req_header();
        let header = |name: http::header::HeaderName| req.headers.get(name).map(|v| v.as_bytes());
        let head = RequestHead {
            method: &req.method,
            content_type: header(http::header::CONTENT_TYPE),
            content_length: header(http::header::CONTENT_LENGTH),
            transfer_encoding: header(http::header::TRANSFER_ENCODING),
        };
        let framing = match pipeline::check_head(route, &self.limits, &head) {
            Ok(f) => f,
            Err(rejection) => return self.reject(session, Some(route_idx), rejection).await,
        };
        let body = match read_body(session, framing, &self.limits).await {
            Ok(body) => body,
            Err(rejection) => return self.reject(session, Some(route_idx), rejection).await,
        };

        let trusted = self.is_trusted(session);
        let verified = {
            let req = session.req_header();
            let url = match public_url(route, req, session_is_tls(session), trusted) {
                Ok(url) => url,
                Err(rejection) => return self.reject(session, Some(route_idx), rejection).await,
            };
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
            pipeline::check_request(route, &self.keys, &self.allowed_accounts, &inbound)
        };
        let verified = match verified {
            Ok(v) => v,
            Err(rejection) => return self.reject(session, Some(route_idx), rejection).await,
        };
        let notification = verified.notification();
        if let Some(violation) = &verified.reported_violation {
            self.route_metrics[route_idx].schema_reported.inc();
            tracing::warn!(
                route = %route.name,
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
        let request = upstream_request(&raw_head, &body);
        let context = RequestContext {
            route_idx,
            call_sid: notification.call_sid.map(str::to_owned),
            message_id: notification.message_id.map(str::to_owned),
            dedupe_keys: self.dedupe_keys(session.req_header(), notification.message_id),
        };
        self.deliver(context, request, arrived).await
    }

    /// The fingerprints duplicates are recognised by. With `auto`, both: the token is not covered
    /// by the signature, so a replay with a fresh token must still be caught by its (signed)
    /// `twi_message_id`.
    fn dedupe_keys(&self, req: &RequestHeader, message_id: Option<&str>) -> [Option<u64>; 2] {
        let Some((config, cache)) = self.dedupe.as_ref() else {
            return [None, None];
        };
        let token = || {
            req.headers
                .get("i-twilio-idempotency-token")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(|v| cache.fingerprint("token", v))
        };
        let message = || {
            message_id
                .filter(|m| !m.is_empty())
                .map(|m| cache.fingerprint("message", m))
        };
        match config {
            DedupeKey::Auto => [token(), message()],
            DedupeKey::IdempotencyToken => [token(), None],
            DedupeKey::MessageId => [None, message()],
        }
    }

    /// Dedupe, the live attempts, and the exhaustion policy.
    async fn deliver(&self, ctx: RequestContext, request: Vec<u8>, arrived: Instant) -> Ending {
        let route = &self.routes[ctx.route_idx];
        let metrics = &self.route_metrics[ctx.route_idx];
        let ending = |outcome, reply| Ending {
            route: Some(ctx.route_idx),
            outcome,
            reason: None,
            reply,
            attempts: 0,
            call_sid: ctx.call_sid.clone(),
            message_id: ctx.message_id.clone(),
        };
        let cache = self.dedupe.as_ref().map(|(_, c)| c);
        if let Some(cache) = cache {
            let now = Instant::now();
            let seen = ctx
                .dedupe_keys
                .iter()
                .flatten()
                .find_map(|k| cache.get(*k, now));
            match seen {
                Some(Seen::Delivered) => {
                    metrics.duplicate_of_delivered.inc();
                    let body =
                        json_bytes(serde_json::json!({"duplicate": true, "original": "delivered"}));
                    return ending(Outcome::Duplicate, made(StatusCode::OK, body));
                }
                Some(Seen::Buffered) => {
                    metrics.duplicate_of_buffered.inc();
                    let status = match route.on_exhausted {
                        OnExhausted::Buffer { status, .. } => status,
                        OnExhausted::Fail => StatusCode::OK,
                    };
                    let body =
                        json_bytes(serde_json::json!({"duplicate": true, "original": "buffered"}));
                    return ending(Outcome::Duplicate, made(status, body));
                }
                None => {}
            }
        }

        let upstream = &self.upstreams[route.upstream];
        match upstream.deliver(&request, &route.retry, arrived).await {
            Delivery::Answered { answer, attempts } => {
                metrics.attempts.observe(f64::from(attempts));
                metrics.retries.inc_by(u64::from(attempts - 1));
                let status = answer.answer.status;
                if (200..300).contains(&status) {
                    if let Some(cache) = cache {
                        for key in ctx.dedupe_keys.iter().flatten() {
                            cache.insert(*key, Seen::Delivered, Instant::now());
                        }
                    }
                }
                Ending {
                    attempts,
                    ..ending(
                        Outcome::from_upstream_status(status),
                        Reply::Forwarded(answer.answer),
                    )
                }
            }
            Delivery::Exhausted { last, attempts } => {
                metrics.attempts.observe(f64::from(attempts));
                metrics
                    .retries
                    .inc_by(u64::from(attempts.saturating_sub(1)));
                let (outcome, status) = failure_answer(&last);
                tracing::warn!(
                    route = %route.name,
                    call_sid = ctx.call_sid.as_deref().unwrap_or("-"),
                    message_id = ctx.message_id.as_deref().unwrap_or("-"),
                    attempts,
                    outcome = outcome.as_str(),
                    error = %last,
                    "delivery failed"
                );
                match route.on_exhausted {
                    OnExhausted::Fail => {
                        let detail = format!("{last} (after {attempts} attempt(s))");
                        Ending {
                            attempts,
                            ..ending(outcome, made(status, error_body(outcome.as_str(), &detail)))
                        }
                    }
                    OnExhausted::Buffer { ttl, status } => {
                        self.buffer(&ctx, request, attempts, &last, ttl, status)
                            .await
                    }
                }
            }
        }
    }

    /// Stores the request durably (fsynced before this returns) and answers `status`; if the
    /// store cannot take it, answers 503: a notification is never claimed unless it is stored.
    async fn buffer(
        &self,
        ctx: &RequestContext,
        request: Vec<u8>,
        attempts: u32,
        last: &Failure,
        ttl: std::time::Duration,
        status: StatusCode,
    ) -> Ending {
        let route = &self.routes[ctx.route_idx];
        let reply = |outcome, status, body| Ending {
            route: Some(ctx.route_idx),
            outcome,
            reason: None,
            reply: made(status, body),
            attempts,
            call_sid: ctx.call_sid.clone(),
            message_id: ctx.message_id.clone(),
        };
        let Some(store) = self.store.clone() else {
            // Config validation guarantees a store for buffering routes.
            let body = error_body("buffer_failed", "no buffer is configured");
            return reply(Outcome::BufferFailed, StatusCode::SERVICE_UNAVAILABLE, body);
        };
        let now = now_ms();
        let message = NewMessage {
            route: route.name.clone(),
            upstream: self.upstreams[route.upstream].config.name.clone(),
            received_at_ms: now,
            expires_at_ms: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            attempts,
            next_attempt_at_ms: now,
            last_error: last.to_string(),
            message_id: ctx.message_id.clone(),
            call_sid: ctx.call_sid.clone(),
        };
        // redb commits with fsync: keep that off the request threads.
        let stored = tokio::task::spawn_blocking(move || store.insert(&message, &request)).await;
        match stored {
            Ok(Ok(id)) => {
                if let Some((_, cache)) = &self.dedupe {
                    for key in ctx.dedupe_keys.iter().flatten() {
                        cache.insert(*key, Seen::Buffered, Instant::now());
                    }
                }
                self.store_writable
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    route = %route.name,
                    call_sid = ctx.call_sid.as_deref().unwrap_or("-"),
                    message_id = ctx.message_id.as_deref().unwrap_or("-"),
                    buffer_id = id,
                    "buffered for redelivery"
                );
                reply(
                    Outcome::Buffered,
                    status,
                    json_bytes(serde_json::json!({"buffered": true, "id": id})),
                )
            }
            Ok(Err(e)) => {
                if !matches!(e, StoreError::Full { .. }) {
                    self.store_writable
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                }
                tracing::error!(
                    route = %route.name,
                    call_sid = ctx.call_sid.as_deref().unwrap_or("-"),
                    message_id = ctx.message_id.as_deref().unwrap_or("-"),
                    error = %e,
                    "could not buffer; answering 503"
                );
                let body = error_body(
                    "buffer_failed",
                    &format!("the handler failed and the buffer cannot store: {e}"),
                );
                reply(Outcome::BufferFailed, StatusCode::SERVICE_UNAVAILABLE, body)
            }
            Err(join) => {
                let body = error_body("buffer_failed", &format!("buffer write aborted: {join}"));
                reply(Outcome::BufferFailed, StatusCode::SERVICE_UNAVAILABLE, body)
            }
        }
    }

    async fn reject(
        &self,
        session: &mut ServerSession,
        route: Option<usize>,
        rejection: Rejection,
    ) -> Ending {
        let status = rejection.reason.status();
        tracing::info!(
            route = route.map_or(UNMATCHED_ROUTE, |i| self.routes[i].name.as_str()),
            reason = rejection.reason.as_str(),
            status = status.as_u16(),
            peer = %client_ip(session).map_or("-".to_string(), |ip| ip.to_string()),
            detail = %rejection.detail,
            "rejected"
        );
        let body = rejection.json_body();
        let mut header = json_header(status, body.len());
        if rejection.reason == Reason::Method {
            header
                .insert_header(http::header::ALLOW, "POST")
                .expect("valid header");
        }
        // The body may be unread (or half read): this connection cannot carry another request.
        if !session.is_body_done() {
            session.set_keepalive(None);
        }
        Ending {
            route,
            outcome: Outcome::Rejected,
            reason: Some(rejection.reason),
            reply: Reply::Made {
                header,
                body: body.into(),
            },
            attempts: 0,
            call_sid: None,
            message_id: None,
        }
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
                self.unmatched_metrics.record(
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
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let ending = self.handle(&mut session, started).await;
        let metrics = ending
            .route
            .map_or(&self.unmatched_metrics, |i| &self.route_metrics[i]);
        let elapsed = started.elapsed();
        metrics.record(ending.outcome, ending.reason, elapsed.as_secs_f64());
        if self.access_log {
            tracing::info!(
                target: "access",
                route = ending.route.map_or(UNMATCHED_ROUTE, |i| self.routes[i].name.as_str()),
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
        let persistent = HttpPersistentSettings::for_session(&session);
        let (header, body) = match ending.reply {
            Reply::Forwarded(answer) => match session {
                ServerSession::H1(v1) => {
                    return forward_h1(v1, &answer, persistent, shutdown).await
                }
                other => {
                    session = other;
                    (answer.response_header(), answer.body)
                }
            },
            Reply::Made { header, body } => (header, body),
        };
        write_answer(&mut session, header, body).await;
        match session.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, persistent)),
            Err(e) => {
                tracing::debug!(error = %e, "connection not reusable");
                None
            }
        }
    }
}

/// Writes the handler's answer straight onto the client connection: its head verbatim (minus
/// connection-level headers) and body in one write. Going around Pingora's response writer here
/// skips rebuilding a header map per request; the bytes are the same.
async fn forward_h1(
    mut v1: pingora::protocols::http::v1::server::HttpSession,
    answer: &Answer,
    persistent: HttpPersistentSettings,
    shutdown: &ShutdownWatch,
) -> Option<ReusedHttpStream> {
    let keep_alive =
        !*shutdown.borrow() && v1.is_body_done() && client_keeps_alive(v1.req_header());
    let mut stream = v1.into_inner();
    let bytes = answer.downstream_bytes(!keep_alive);
    if let Err(e) = async {
        stream.write_all(&bytes).await?;
        stream.flush().await
    }
    .await
    {
        tracing::debug!(error = %e, "client went away before the answer");
        return None;
    }
    if keep_alive {
        Some(ReusedHttpStream::new(stream, Some(persistent)))
    } else {
        let _ = stream.shutdown().await;
        None
    }
}

/// HTTP/1.1 keeps the connection unless the client says `close`; HTTP/1.0 only on `keep-alive`.
fn client_keeps_alive(req: &RequestHeader) -> bool {
    let mut keep = req.version == http::Version::HTTP_11;
    for value in req.headers.get_all(http::header::CONNECTION) {
        for token in value
            .as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
        {
            if token.eq_ignore_ascii_case(b"close") {
                return false;
            }
            if token.eq_ignore_ascii_case(b"keep-alive") {
                keep = true;
            }
        }
    }
    keep
}

fn client_ip(session: &ServerSession) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

fn session_is_tls(session: &ServerSession) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// The URL Twilio signed: the route's configured public URL with this request's raw query, or,
/// without one, rebuilt from `X-Forwarded-Proto`/`X-Forwarded-Host` (trusted peers only) or
/// `Host` and the listener's scheme.
fn public_url<'a>(
    route: &'a Route,
    req: &'a RequestHeader,
    tls: bool,
    trusted: bool,
) -> Result<SignedUrl<'a>, Rejection> {
    let raw_target = req.raw_path();
    let query_start = raw_target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(raw_target.len());
    let (path, query) = raw_target.split_at(query_start);
    if let Some(public) = &route.public_url {
        return Ok(SignedUrl {
            scheme: &public.scheme,
            host: &public.host,
            port: public.port.as_deref(),
            path: public.path.as_bytes(),
            query,
        });
    }
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim())
            .filter(|v| !v.is_empty())
    };
    let forwarded = |name| if trusted { header(name) } else { None };
    let scheme = forwarded("x-forwarded-proto").unwrap_or(if tls { "https" } else { "http" });
    let authority = forwarded("x-forwarded-host")
        .or_else(|| header("host"))
        .ok_or_else(|| {
            Rejection::new(
                Reason::SignatureMismatch,
                "cannot rebuild the signed URL: no Host header and no public_url for this route",
            )
        })?;
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    Ok(SignedUrl {
        scheme,
        host,
        port,
        path,
        query,
    })
}

/// Reads the whole body within the body timeout and size limit.
async fn read_body(
    session: &mut ServerSession,
    framing: BodyFraming,
    limits: &Limits,
) -> Result<Bytes, Rejection> {
    let capacity = match framing {
        BodyFraming::Length(n) => n,
        BodyFraming::Chunked => 2048,
    };
    let read = async {
        // The usual body arrives as one chunk: keep it as is, copy only when there are several.
        let mut first: Option<Bytes> = None;
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    let so_far = first.as_ref().map_or(0, Bytes::len) + body.len();
                    if so_far + chunk.len() > limits.max_body_bytes {
                        return Err(pipeline::too_large(limits));
                    }
                    match first.take() {
                        None if body.is_empty() => first = Some(chunk),
                        None => body.extend_from_slice(&chunk),
                        Some(f) => {
                            body.reserve(capacity.max(f.len() + chunk.len()));
                            body.extend_from_slice(&f);
                            body.extend_from_slice(&chunk);
                        }
                    }
                }
                Ok(None) => return Ok(first.unwrap_or_else(|| body.freeze())),
                Err(e) => {
                    return Err(Rejection::new(
                        Reason::BodyIncomplete,
                        format!("could not read the whole body: {e}"),
                    ))
                }
            }
        }
    };
    match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(Rejection::new(
            Reason::BodyTimeout,
            format!("body did not arrive within {:?}", limits.body_timeout),
        )),
    }
}

fn json_header(status: StatusCode, len: usize) -> ResponseHeader {
    let mut header = ResponseHeader::build(status, Some(2)).expect("valid status");
    header
        .insert_header(http::header::CONTENT_TYPE, "application/json")
        .expect("valid header");
    header
        .insert_header(http::header::CONTENT_LENGTH, len.to_string())
        .expect("valid header");
    header
}

async fn write_answer(session: &mut ServerSession, header: ResponseHeader, body: Bytes) {
    if let Err(e) = session.write_response_header(Box::new(header)).await {
        tracing::debug!(error = %e, "client went away before the answer header");
        return;
    }
    if let Err(e) = session.write_response_body(body, true).await {
        tracing::debug!(error = %e, "client went away before the answer body");
    }
}
