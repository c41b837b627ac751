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

use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::upstreams::peer::HttpPeer;
use tokio::io::{AsyncRead, AsyncWriteExt};

pub mod breaker;
pub mod policy;
mod pool;
mod wire;

use breaker::CircuitBreaker;
use policy::{jitter_random, RetryPolicy, Verdict};
use pool::{Conn, IdlePool};
// Public only for the fuzz targets in fuzz/ (response framing); not part of the API.
#[doc(hidden)]
pub use wire::{read_answer, ReadError};
pub use wire::{upstream_request, Answer};

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
    /// The peer the attempt went to, if it got that far.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            DeliveryError::NoHealthyPeer(_) => None,
            DeliveryError::Connect { peer, .. }
            | DeliveryError::Timeout { peer, .. }
            | DeliveryError::Protocol { peer, .. } => Some(*peer),
        }
    }

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

/// The handler's answer and the peer that gave it.
#[derive(Debug)]
pub struct UpstreamAnswer {
    pub answer: Answer,
    pub peer: SocketAddr,
}

/// How the live path's attempts ended.
#[derive(Debug)]
pub enum Delivery {
    /// The handler gave a final answer (2xx, 3xx, 4xx, or a 5xx not configured to retry).
    Answered {
        answer: UpstreamAnswer,
        attempts: u32,
    },
    /// Every allowed attempt failed, or the circuit was open.
    Exhausted { last: Failure, attempts: u32 },
}

/// The last thing that went wrong before giving up.
#[derive(Debug)]
pub enum Failure {
    /// The handler answered a retryable status (the answer is kept).
    Status(UpstreamAnswer),
    Error(DeliveryError),
    /// The circuit breaker stopped the attempt before it was made.
    CircuitOpen,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(a) => write!(f, "{} answered {}", a.peer, a.answer.status),
            Failure::Error(e) => write!(f, "{e}"),
            Failure::CircuitOpen => f.write_str("circuit open: the handler failed repeatedly"),
        }
    }
}

/// One peer: its address, Pingora's peer description (for connecting) and its idle pool.
struct PeerSlot {
    addr: SocketAddr,
    http: HttpPeer,
    idle: IdlePool,
}

/// A named group of peers with its balancer, pools and timeouts.
pub struct UpstreamGroup {
    pub config: UpstreamConfig,
    balancer: Arc<LoadBalancer<RoundRobin>>,
    peers: Vec<PeerSlot>,
    connector: TransportConnector,
    metrics: UpstreamMetrics,
    breaker: CircuitBreaker,
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
                let mut http = HttpPeer::new(*addr, false, String::new());
                http.options.connection_timeout = Some(config.connect_timeout);
                http.options.total_connection_timeout = Some(config.connect_timeout);
                PeerSlot {
                    addr: *addr,
                    http,
                    idle: IdlePool::new(config.pool_size.get(), config.idle_timeout),
                }
            })
            .collect();
        // Pingora's connector makes the connections (socket options, connect timeouts); reuse
        // goes through our own pool, which skips a per-release watcher task (DESIGN §7).
        let connector = TransportConnector::new(Some(ConnectorOptions::new(0)));
        let breaker = CircuitBreaker::new(config.breaker_threshold, config.breaker_open_for);
        UpstreamGroup {
            config,
            balancer,
            peers,
            connector,
            metrics,
            breaker,
        }
    }

    pub fn balancer(&self) -> &Arc<LoadBalancer<RoundRobin>> {
        &self.balancer
    }

    pub fn circuit(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Round-robin over healthy peers, other than `avoid` (the one that just failed) when there
    /// is a choice. When none passes its health check, round-robin over all of them: a failed
    /// connect costs milliseconds, while refusing outright would turn a stale or flapping
    /// health check into a certain 13807 (Envoy's "panic mode").
    fn select_peer(&self, avoid: Option<SocketAddr>) -> Option<&PeerSlot> {
        let tries = self.peers.len() * 2;
        let is_avoided =
            |b: &pingora::lb::Backend| avoid.is_some() && b.addr.as_inet() == avoid.as_ref();
        let backend = self
            .balancer
            .select_with(b"", tries, |b, healthy| healthy && !is_avoided(b))
            .or_else(|| self.balancer.select(b"", tries))
            .or_else(|| self.balancer.select_with(b"", tries, |_, _| true))?;
        let addr = backend.addr.as_inet()?;
        self.peers.iter().find(|p| p.addr == *addr)
    }

    /// One exchange: pick a healthy peer, send `request` (head and body, already framed) in one
    /// write, read the whole answer within `response_timeout` (or `deadline`, if sooner).
    ///
    /// A pooled connection the handler has closed is noticed before the request is written
    /// (and not counted as a failure); one that breaks after the request went out is a failed
    /// attempt, for the retry policy to judge.
    pub async fn deliver_once(
        &self,
        request: &[u8],
        deadline: Option<Instant>,
        avoid: Option<SocketAddr>,
    ) -> Result<UpstreamAnswer, DeliveryError> {
        let started = Instant::now();
        let result = self.exchange(request, deadline, avoid).await;
        let attempt = match &result {
            Ok(answer) => AttemptResult::of_status(answer.answer.status),
            Err(e) => e.attempt_result(),
        };
        self.metrics
            .record_attempt(attempt, started.elapsed().as_secs_f64());
        result
    }

    /// The live path: attempts under `policy` until a final answer, the attempt limit, the
    /// deadline (`arrived + policy.deadline`), or an open circuit. Retries go to another
    /// healthy peer when there is one.
    pub async fn deliver(
        &self,
        request: &[u8],
        policy: &RetryPolicy,
        arrived: Instant,
    ) -> Delivery {
        let deadline = arrived + policy.deadline;
        let mut attempts = 0;
        let mut avoid = None;
        let mut last = Failure::CircuitOpen;
        loop {
            if !self.breaker.allow(Instant::now()) {
                if attempts == 0 {
                    last = Failure::CircuitOpen;
                }
                break;
            }
            attempts += 1;
            let started = Instant::now();
            match self.deliver_once(request, Some(deadline), avoid).await {
                Ok(answer) if policy.classify_status(answer.answer.status) == Verdict::Final => {
                    self.breaker.on_success();
                    return Delivery::Answered { answer, attempts };
                }
                Ok(answer) => {
                    self.breaker.on_failure(started, Instant::now());
                    avoid = Some(answer.peer);
                    last = Failure::Status(answer);
                }
                Err(e) => {
                    self.breaker.on_failure(started, Instant::now());
                    avoid = e.peer();
                    last = Failure::Error(e);
                }
            }
            match policy.next_attempt(attempts, arrived.elapsed(), jitter_random()) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => break,
            }
        }
        Delivery::Exhausted { last, attempts }
    }

    async fn exchange(
        &self,
        request: &[u8],
        deadline: Option<Instant>,
        avoid: Option<SocketAddr>,
    ) -> Result<UpstreamAnswer, DeliveryError> {
        let peer = self
            .select_peer(avoid)
            .ok_or_else(|| DeliveryError::NoHealthyPeer(self.config.name.clone()))?;
        // One budget for the whole attempt, connect included, never past the deadline.
        let now = Instant::now();
        let mut budget = self.config.response_timeout;
        if let Some(deadline) = deadline {
            budget = budget.min(deadline.saturating_duration_since(now));
        }
        match tokio::time::timeout_at((now + budget).into(), self.attempt(peer, request)).await {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Timeout {
                peer: peer.addr,
                after: budget,
            }),
        }
    }

    async fn attempt(
        &self,
        peer: &PeerSlot,
        request: &[u8],
    ) -> Result<UpstreamAnswer, DeliveryError> {
        // Pooled connections the handler closed meanwhile are noticed before anything is sent.
        while let Some(mut conn) = peer.idle.take() {
            if !looks_open(&mut conn.stream) {
                continue;
            }
            match self.exchange_on(conn, peer, request).await {
                // The write failed: the handler cannot have acted on a request it did not get.
                Err(Unsent) => break,
                Ok(answer) => return answer,
            }
        }
        let stream = self
            .connector
            .new_stream(&peer.http)
            .await
            .map_err(|source| DeliveryError::Connect {
                peer: peer.addr,
                source,
            })?;
        match self.exchange_on(Conn::new(stream), peer, request).await {
            Ok(answer) => answer,
            Err(Unsent) => Err(DeliveryError::Protocol {
                peer: peer.addr,
                detail: "connection closed before the request was sent".into(),
            }),
        }
    }

    /// `Err(Unsent)` means the request could not be written.
    async fn exchange_on(
        &self,
        mut conn: Conn,
        peer: &PeerSlot,
        request: &[u8],
    ) -> Result<Result<UpstreamAnswer, DeliveryError>, Unsent> {
        let addr = peer.addr;
        if conn.stream.write_all(request).await.is_err() || conn.stream.flush().await.is_err() {
            return Err(Unsent);
        }
        match read_answer(&mut conn.stream, &mut conn.buf, MAX_RESPONSE_BODY).await {
            // Sent, then closed without a byte: the handler may have acted on it, so this is a
            // failed attempt (retried by policy, counted), not a silent keep-alive race.
            Err(ReadError::NothingRead) => Ok(Err(DeliveryError::Protocol {
                peer: addr,
                detail: "connection closed before an answer".into(),
            })),
            Err(ReadError::Broken(detail)) => {
                Ok(Err(DeliveryError::Protocol { peer: addr, detail }))
            }
            Ok(answer) => {
                if answer.reusable {
                    peer.idle.release(conn);
                }
                Ok(Ok(UpstreamAnswer { answer, peer: addr }))
            }
        }
    }
}

/// Whether an idle pooled connection is still usable: no end-of-stream and no stray bytes
/// waiting. One non-blocking poll; `Pending` means open and quiet.
fn looks_open(stream: &mut pingora::protocols::Stream) -> bool {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    matches!(Pin::new(stream).poll_read(&mut cx, &mut buf), Poll::Pending)
}

struct Unsent;

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
            breaker_threshold: std::num::NonZeroU32::new(5).unwrap(),
            breaker_open_for: Duration::from_secs(10),
        };
        let lb = Arc::new(new_balancer(&config).unwrap());
        UpstreamGroup::new(config, lb, crate::metrics::Metrics::new().upstream("g"))
    }

    #[test]
    fn a_retry_avoids_the_peer_that_just_failed() {
        let g = group(&["127.0.0.1:1001", "127.0.0.1:1002"]);
        let failed: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        // Round-robin alone would hand out the failed peer every other time.
        for _ in 0..6 {
            assert_ne!(g.select_peer(Some(failed)).unwrap().addr, failed);
        }
        // With a single peer there is no choice: it is tried again.
        let single = group(&["127.0.0.1:1001"]);
        assert_eq!(single.select_peer(Some(failed)).unwrap().addr, failed);
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
                g.select_peer(None).unwrap().addr,
                first_addr,
                "a down peer is skipped"
            );
        }
        for b in backends.iter() {
            g.balancer().backends().set_enable(b, false);
        }
        assert!(
            g.select_peer(None).is_some(),
            "with every peer down, still try one"
        );
    }
}
