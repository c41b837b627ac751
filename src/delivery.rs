//! Delivery to the notification handler: one exchange with one peer, through Pingora's
//! connector and HTTP/1 client session.
//!
//! Owns peer selection (round-robin over healthy peers), the keep-alive pool, the bytes sent
//! upstream and the [`deliver_once`](UpstreamGroup::deliver_once) exchange that the live path and
//! any later retry or redelivery share. It never decides what to answer Twilio (the proxy does)
//! and never looks inside the body.
//!
//! The request head and body leave in one write: the measured difference against header and
//! body flushed separately is large on loopback (DESIGN §7).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::http::ResponseHeader;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::upstreams::peer::{HttpPeer, Peer};
use tokio::io::AsyncWriteExt;

use crate::config::UpstreamConfig;
use crate::metrics::UpstreamMetrics;

/// Handler answers larger than this are refused: a notification handler answers a few bytes.
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// How one attempt ended: the `result` label of the attempts counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Status2xx,
    NoBinding404,
    Status4xx,
    Status5xx,
    StatusOther,
    ConnectError,
    Timeout,
    ProtocolError,
}

impl AttemptResult {
    pub const ALL: [AttemptResult; 8] = [
        AttemptResult::Status2xx,
        AttemptResult::NoBinding404,
        AttemptResult::Status4xx,
        AttemptResult::Status5xx,
        AttemptResult::StatusOther,
        AttemptResult::ConnectError,
        AttemptResult::Timeout,
        AttemptResult::ProtocolError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Status2xx => "2xx",
            AttemptResult::NoBinding404 => "404_no_binding",
            AttemptResult::Status4xx => "4xx",
            AttemptResult::Status5xx => "5xx",
            AttemptResult::StatusOther => "other_status",
            AttemptResult::ConnectError => "connect_error",
            AttemptResult::Timeout => "timeout",
            AttemptResult::ProtocolError => "protocol_error",
        }
    }

    fn of_status(status: u16) -> Self {
        match status {
            200..=299 => AttemptResult::Status2xx,
            404 => AttemptResult::NoBinding404,
            400..=499 => AttemptResult::Status4xx,
            500..=599 => AttemptResult::Status5xx,
            _ => AttemptResult::StatusOther,
        }
    }
}

/// Why an attempt produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no healthy peer in upstream group {0}")]
    NoHealthyPeer(String),
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        peer: SocketAddr,
        source: Box<pingora::Error>,
    },
    #[error("{peer} did not answer within {after:?}")]
    Timeout { peer: SocketAddr, after: Duration },
    #[error("{peer} broke the exchange: {detail}")]
    Protocol { peer: SocketAddr, detail: String },
}

impl DeliveryError {
    pub fn attempt_result(&self) -> AttemptResult {
        match self {
            DeliveryError::NoHealthyPeer(_) | DeliveryError::Connect { .. } => {
                AttemptResult::ConnectError
            }
            DeliveryError::Timeout { .. } => AttemptResult::Timeout,
            DeliveryError::Protocol { .. } => AttemptResult::ProtocolError,
        }
    }
}

/// The handler's answer, header and whole body.
#[derive(Debug)]
pub struct UpstreamAnswer {
    pub header: Box<ResponseHeader>,
    pub body: Bytes,
    pub peer: SocketAddr,
}

/// A named group of peers with its balancer, pool and timeouts.
pub struct UpstreamGroup {
    pub config: UpstreamConfig,
    balancer: Arc<LoadBalancer<RoundRobin>>,
    peers: Vec<(SocketAddr, HttpPeer)>,
    connector: TransportConnector,
    metrics: UpstreamMetrics,
}

impl UpstreamGroup {
    /// `balancer` comes from [`new_balancer`]; its health checks run as a Pingora background service.
    pub fn new(
        config: UpstreamConfig,
        balancer: Arc<LoadBalancer<RoundRobin>>,
        metrics: UpstreamMetrics,
    ) -> Self {
        let peers = config
            .peers
            .iter()
            .map(|addr| {
                let mut peer = HttpPeer::new(*addr, false, String::new());
                peer.options.connection_timeout = Some(config.connect_timeout);
                peer.options.total_connection_timeout = Some(config.connect_timeout);
                peer.options.idle_timeout = Some(config.idle_timeout);
                (*addr, peer)
            })
            .collect();
        let connector =
            TransportConnector::new(Some(ConnectorOptions::new(config.pool_size.get())));
        UpstreamGroup {
            config,
            balancer,
            peers,
            connector,
            metrics,
        }
    }

    pub fn balancer(&self) -> &Arc<LoadBalancer<RoundRobin>> {
        &self.balancer
    }

    /// Round-robin over healthy peers. When none passes its health check, round-robin over all
    /// of them: a failed connect costs milliseconds, while refusing outright would turn a stale
    /// or flapping health check into a certain 13807 (Envoy's "panic mode").
    fn select_peer(&self) -> Option<&(SocketAddr, HttpPeer)> {
        let tries = self.peers.len() * 2;
        let backend = self
            .balancer
            .select(b"", tries)
            .or_else(|| self.balancer.select_with(b"", tries, |_, _| true))?;
        let addr = backend.addr.as_inet()?;
        self.peers.iter().find(|(a, _)| a == addr)
    }

    /// One exchange: pick a healthy peer, send `request` (head and body, already framed) in one
    /// write, read the whole answer within `response_timeout` (or `deadline`, if sooner).
    ///
    /// A pooled connection that turns out to be closed by the peer before any answer byte is
    /// retried once on a fresh connection: that is a keep-alive race, not a handler failure.
    pub async fn deliver_once(
        &self,
        request: &[u8],
        deadline: Option<Instant>,
    ) -> Result<UpstreamAnswer, DeliveryError> {
        let started = Instant::now();
        let result = self.exchange(request, deadline).await;
        let attempt = match &result {
            Ok(answer) => AttemptResult::of_status(answer.header.status.as_u16()),
            Err(e) => e.attempt_result(),
        };
        self.metrics
            .record_attempt(attempt, started.elapsed().as_secs_f64());
        result
    }

    async fn exchange(
        &self,
        request: &[u8],
        deadline: Option<Instant>,
    ) -> Result<UpstreamAnswer, DeliveryError> {
        let (addr, peer) = self
            .select_peer()
            .ok_or_else(|| DeliveryError::NoHealthyPeer(self.config.name.clone()))?;
        let addr = *addr;
        let mut timeout = self.config.response_timeout;
        if let Some(deadline) = deadline {
            timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
        }

        if let Some(stream) = self.connector.reused_stream(peer).await {
            match self.exchange_on(stream, peer, addr, request, timeout).await {
                Err(Stale) => {} // fall through to a fresh connection
                Ok(answer) => return answer,
            }
        }
        let stream = self
            .connector
            .new_stream(peer)
            .await
            .map_err(|source| DeliveryError::Connect { peer: addr, source })?;
        match self.exchange_on(stream, peer, addr, request, timeout).await {
            Ok(answer) => answer,
            Err(Stale) => Err(DeliveryError::Protocol {
                peer: addr,
                detail: "connection closed before an answer".into(),
            }),
        }
    }

    /// `Err(Stale)` means the connection died before any answer byte arrived.
    async fn exchange_on(
        &self,
        mut stream: pingora::protocols::Stream,
        peer: &HttpPeer,
        addr: SocketAddr,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Result<UpstreamAnswer, DeliveryError>, Stale> {
        let written = tokio::time::timeout(timeout, async {
            stream.write_all(request).await?;
            stream.flush().await
        })
        .await;
        match written {
            Err(_) => {
                return Ok(Err(DeliveryError::Timeout {
                    peer: addr,
                    after: timeout,
                }))
            }
            Ok(Err(_)) => return Err(Stale),
            Ok(Ok(())) => {}
        }
        let mut session = HttpSession::new_with_options(stream, peer);
        let read = tokio::time::timeout(timeout, read_answer(&mut session)).await;
        match read {
            Err(_) => Ok(Err(DeliveryError::Timeout {
                peer: addr,
                after: timeout,
            })),
            Ok(Err(ReadError::NothingRead)) => Err(Stale),
            Ok(Err(ReadError::Broken(detail))) => {
                Ok(Err(DeliveryError::Protocol { peer: addr, detail }))
            }
            Ok(Ok((header, body))) => {
                session.respect_keepalive();
                if let Some(stream) = session.reuse().await {
                    self.connector.release_stream(
                        stream,
                        peer.reuse_hash(),
                        Some(self.config.idle_timeout),
                    );
                }
                Ok(Ok(UpstreamAnswer {
                    header,
                    body,
                    peer: addr,
                }))
            }
        }
    }
}

struct Stale;

enum ReadError {
    NothingRead,
    Broken(String),
}

async fn read_answer(session: &mut HttpSession) -> Result<(Box<ResponseHeader>, Bytes), ReadError> {
    let header = session.read_resp_header_parts().await.map_err(|e| {
        if matches!(
            e.etype(),
            pingora::ErrorType::ConnectionClosed | pingora::ErrorType::ReadError
        ) {
            ReadError::NothingRead
        } else {
            ReadError::Broken(format!("bad response header: {e}"))
        }
    })?;
    let mut body = BytesMut::new();
    loop {
        match session.read_body_bytes().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BODY {
                    return Err(ReadError::Broken(format!(
                        "response body exceeds {MAX_RESPONSE_BODY} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(ReadError::Broken(format!("response body: {e}"))),
        }
    }
    Ok((header, body.freeze()))
}

/// Builds the balancer for one group. With a health check interval, the returned balancer must
/// be run as a background service (see `app`), which performs the checks.
pub fn new_balancer(config: &UpstreamConfig) -> anyhow::Result<LoadBalancer<RoundRobin>> {
    let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(config.peers.iter().copied())?;
    if let Some(interval) = config.health_check_interval {
        let mut check = pingora::lb::health_check::TcpHealthCheck::new();
        check.peer_template.options.connection_timeout = Some(config.connect_timeout);
        // One lost SYN must not take the only peer out of rotation.
        check.consecutive_failure = 2;
        lb.set_health_check(check);
        lb.health_check_frequency = Some(interval);
    }
    Ok(lb)
}

/// Headers that describe one connection, not the message: never forwarded in either direction.
fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 9] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"content-length",
        b"expect",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The bytes sent upstream: the request line and header lines exactly as received (order,
/// case, spacing), minus hop-by-hop headers, plus a `Content-Length` for the body as read, then
/// the body. HTTP/1.0 request lines are sent as HTTP/1.1 so the upstream connection stays
/// reusable.
pub fn upstream_request(raw_head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_head.len() + body.len() + 32);
    let mut lines = raw_head.split(|&b| b == b'\n');
    if let Some(request_line) = lines.next() {
        let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
        match request_line.strip_suffix(b"HTTP/1.0") {
            Some(prefix) => {
                out.extend_from_slice(prefix);
                out.extend_from_slice(b"HTTP/1.1");
            }
            None => out.extend_from_slice(request_line),
        }
        out.extend_from_slice(b"\r\n");
    }
    // Headers listed in Connection are hop-by-hop too.
    let connection_tokens: Vec<Vec<u8>> = raw_head
        .split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| header_name_value(line))
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, value)| {
            value
                .split(|&b| b == b',')
                .map(|t| t.trim_ascii().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    for line in lines {
        let Some((name, _)) = header_name_value(line) else {
            continue;
        };
        let named_in_connection = connection_tokens
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name));
        if is_hop_by_hop(name) || named_in_connection {
            continue;
        }
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

fn header_name_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = line.split_at(colon);
    if name.is_empty() {
        return None;
    }
    Some((name, value[1..].trim_ascii()))
}

/// The handler's response header as sent on to Twilio: unchanged but for connection-level
/// headers, and framed by `Content-Length` (the body has been read whole).
pub fn downstream_response_header(upstream: &ResponseHeader, body_len: usize) -> ResponseHeader {
    let mut header = upstream.clone();
    let hop: Vec<http::HeaderName> = header
        .headers
        .keys()
        .filter(|name| is_hop_by_hop(name.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in hop {
        header.remove_header(&name);
    }
    header.set_version(http::Version::HTTP_11);
    header
        .insert_header(http::header::CONTENT_LENGTH, body_len.to_string())
        .expect("a number is a valid header value");
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(peers: &[&str]) -> UpstreamGroup {
        let config = UpstreamConfig {
            name: "g".into(),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            pool_size: std::num::NonZeroUsize::new(4).unwrap(),
            health_check_interval: None,
        };
        let lb = Arc::new(new_balancer(&config).unwrap());
        UpstreamGroup::new(config, lb, crate::metrics::Metrics::new().upstream("g"))
    }

    #[test]
    fn healthy_peers_are_preferred_but_all_down_still_selects_one() {
        let g = group(&["127.0.0.1:1001", "127.0.0.1:1002"]);
        let backends = g.balancer().backends().get_backend();
        let first = backends.iter().next().unwrap().clone();
        g.balancer().backends().set_enable(&first, false);
        let first_addr = *first.addr.as_inet().unwrap();
        for _ in 0..4 {
            assert_ne!(
                g.select_peer().unwrap().0,
                first_addr,
                "a down peer is skipped"
            );
        }
        for b in backends.iter() {
            g.balancer().backends().set_enable(b, false);
        }
        assert!(
            g.select_peer().is_some(),
            "with every peer down, still try one"
        );
    }

    #[test]
    fn forwards_head_verbatim_minus_hop_by_hop() {
        let head = b"POST /n?bodySHA256=ab HTTP/1.1\r\nHost: voice.example.com\r\nX-Twilio-Signature: abc=\r\nconnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nContent-Length: 2\r\nX-Keep:  spaced value \r\n\r\n";
        let out = upstream_request(head, b"{}");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /n?bodySHA256=ab HTTP/1.1\r\nHost: voice.example.com\r\nX-Twilio-Signature: abc=\r\nX-Keep:  spaced value \r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn chunked_and_http10_requests_are_reframed() {
        let head = b"POST /n HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
        let text = String::from_utf8(upstream_request(head, b"abc")).unwrap();
        assert_eq!(
            text,
            "POST /n HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
        );
    }

    #[test]
    fn response_header_drops_connection_headers_and_sets_length() {
        let mut up = ResponseHeader::build(404, None).unwrap();
        up.insert_header("X-Handler", "v1").unwrap();
        up.insert_header("Transfer-Encoding", "chunked").unwrap();
        up.insert_header("Connection", "close").unwrap();
        let down = downstream_response_header(&up, 17);
        assert_eq!(down.status.as_u16(), 404);
        assert_eq!(down.headers.get("x-handler").unwrap(), "v1");
        assert!(down.headers.get("transfer-encoding").is_none());
        assert!(down.headers.get("connection").is_none());
        assert_eq!(down.headers.get("content-length").unwrap(), "17");
    }
}
