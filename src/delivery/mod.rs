//! Delivery to the notification handler: one exchange with one peer, through Pingora's
//! connector and HTTP/1 client session.
//!
//! Owns peer selection (round-robin over healthy peers), the keep-alive pool, the bytes sent
//! upstream and the [`deliver_once`](UpstreamGroup::deliver_once) exchange that the live path and
//! any later retry or redelivery share. Whether an answer is final is [`crate::policy::settle`]'s
//! call; what to answer Twilio is the request flow's (`flow`). It never looks inside
//! the body.
//!
//! The request head and body leave in one write: the measured difference against header and
//! body flushed separately is large on loopback (docs/design.md §7).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::upstreams::peer::HttpPeer;
use tokio::io::{AsyncRead, AsyncWriteExt};

mod circuit;
mod forwarded;
mod peers;
mod pool;
pub mod resolve;
mod result;
mod wire;

pub use circuit::{RecoveryWatch, CONNECT_CHECK_EVERY};
pub use forwarded::Forwarding;
pub use peers::{new_balancer, PeerList};
use pool::{Conn, IdlePool};
pub use result::{Delivery, DeliveryError, Failure, UpstreamAnswer};
// Public only for the fuzz targets in fuzz/ (response framing); not part of the API.
#[doc(hidden)]
pub use wire::{read_answer, ReadError};
pub use wire::{upstream_request, Answer};

use crate::config::{flatten_peers, ResolvedPeer, UpstreamConfig};
use crate::jitter::Jitter;
use crate::metrics::UpstreamMetrics;
use crate::outcome::AttemptResult;
use crate::policy::{settle, CircuitBreaker, ProbeSchedule, RetryPolicy, Settlement};

/// Handler answers larger than this are refused: a notification handler answers a few bytes.
pub const MAX_RESPONSE_BODY: usize = 1024 * 1024;

/// The live path's delivery as the request flow sees it: attempts under a policy until a final
/// answer or exhaustion. [`UpstreamGroup`] is the real one; the flow's unit tests use fakes.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// The upstream group's name (stored with a buffered message, to redeliver it there).
    fn name(&self) -> &str;
    /// Attempts under `policy` until a final answer, the attempt limit, the deadline
    /// (`arrived + policy.deadline`) or an open circuit.
    async fn deliver(&self, request: &[u8], policy: &RetryPolicy, arrived: Instant) -> Delivery;
}

#[async_trait]
impl Deliver for UpstreamGroup {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn deliver(&self, request: &[u8], policy: &RetryPolicy, arrived: Instant) -> Delivery {
        UpstreamGroup::deliver(self, request, policy, arrived).await
    }
}

/// One peer: its address, Pingora's peer description (for connecting) and its idle pool.
struct PeerSlot {
    addr: SocketAddr,
    http: HttpPeer,
    idle: IdlePool,
}

/// A named group of peers with its balancer, pools and timeouts.
///
/// The group outlives reloads: its pools, circuit breaker and metrics stay while its peers are
/// replaced ([`Self::set_peers`]), by a reload or by re-resolving host names.
pub struct UpstreamGroup {
    /// As loaded at start; the current peers are [`Self::peer_addrs`].
    pub config: UpstreamConfig,
    balancer: Arc<LoadBalancer<RoundRobin>>,
    membership: PeerList,
    peers: ArcSwap<Vec<Arc<PeerSlot>>>,
    /// The peer specs and what they resolved to last (the resolver's starting point).
    resolved: Mutex<Vec<ResolvedPeer>>,
    /// `set_peers` runs Pingora's balancer update, which must not overlap with itself.
    updating: tokio::sync::Mutex<()>,
    connector: TransportConnector,
    metrics: UpstreamMetrics,
    breaker: CircuitBreaker,
    /// Spreads the live path's retry waits.
    jitter: Jitter,
}

impl UpstreamGroup {
    /// `balancer` and `membership` come from [`new_balancer`]; its health checks run as a
    /// Pingora background service.
    pub fn new(
        config: UpstreamConfig,
        balancer: Arc<LoadBalancer<RoundRobin>>,
        membership: PeerList,
        metrics: UpstreamMetrics,
    ) -> Self {
        let peers = config
            .peers
            .iter()
            .map(|a| Arc::new(slot(&config, *a)))
            .collect();
        // Pingora's connector makes the connections (socket options, connect timeouts); reuse
        // goes through our own pool, which skips a per-release watcher task (docs/design.md §7).
        let connector = TransportConnector::new(Some(ConnectorOptions::new(0)));
        // A probe takes at most one attempt's time; one that has not reported by then was lost.
        let schedule = ProbeSchedule::new(
            config.breaker_open_for,
            config.response_timeout + std::time::Duration::from_secs(1),
        );
        let breaker = CircuitBreaker::new(config.breaker_threshold, schedule);
        UpstreamGroup {
            resolved: Mutex::new(config.resolved.clone()),
            config,
            balancer,
            membership,
            peers: ArcSwap::from_pointee(peers),
            updating: tokio::sync::Mutex::new(()),
            connector,
            metrics,
            breaker,
            jitter: Jitter::new(),
        }
    }

    pub fn balancer(&self) -> &Arc<LoadBalancer<RoundRobin>> {
        &self.balancer
    }

    /// The addresses requests go to now.
    pub fn peer_addrs(&self) -> Vec<SocketAddr> {
        self.peers.load().iter().map(|p| p.addr).collect()
    }

    /// The peer specs and their last good addresses.
    pub fn resolved(&self) -> Vec<ResolvedPeer> {
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the peers. A peer whose address stays keeps its idle connections; the group
    /// keeps its circuit breaker. Returns whether the set of addresses changed.
    pub async fn set_peers(&self, resolved: Vec<ResolvedPeer>) -> bool {
        let _one_at_a_time = self.updating.lock().await;
        let addrs = flatten_peers(&resolved);
        *self.resolved.lock().unwrap_or_else(|e| e.into_inner()) = resolved;
        let old = self.peers.load_full();
        let mut before: Vec<SocketAddr> = old.iter().map(|p| p.addr).collect();
        let mut after = addrs.clone();
        before.sort();
        after.sort();
        if before == after {
            return false;
        }
        let keep_or_new = |addr: &SocketAddr| {
            old.iter()
                .find(|p| p.addr == *addr)
                .cloned()
                .unwrap_or_else(|| Arc::new(slot(&self.config, *addr)))
        };
        let next: Vec<Arc<PeerSlot>> = addrs.iter().map(keep_or_new).collect();
        // While the balancer switches, every address it may pick must have a slot: first the
        // union, then the balancer, then only the new peers.
        let mut union = next.clone();
        union.extend(old.iter().filter(|p| !addrs.contains(&p.addr)).cloned());
        self.peers.store(Arc::new(union));
        self.membership.set(&addrs);
        if let Err(e) = self.balancer.update().await {
            // PeerList's discovery cannot fail; keep serving with the union if it ever does.
            tracing::error!(upstream = %self.config.name, error = %e, "balancer update failed");
            return true;
        }
        self.peers.store(Arc::new(next));
        true
    }

    pub fn circuit(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Round-robin over healthy peers, other than `avoid` (the one that just failed) when there
    /// is a choice. When none passes its health check, round-robin over all of them: a failed
    /// connect costs milliseconds, while refusing outright would turn a stale or flapping
    /// health check into a certain 13807 (Envoy's "panic mode").
    fn select_peer(&self, avoid: Option<SocketAddr>) -> Option<Arc<PeerSlot>> {
        let peers = self.peers.load();
        if let [only] = peers.as_slice() {
            // Every rule below picks the only peer, healthy or not, avoided or not: skip the
            // balancer, whose selection builds a hash set and hashes the peer twice per call
            // (~1,700 instructions and an allocation per request, benches/load/per_request.py).
            return Some(only.clone());
        }
        let tries = peers.len() * 2;
        let is_avoided =
            |b: &pingora::lb::Backend| avoid.is_some() && b.addr.as_inet() == avoid.as_ref();
        let backend = self
            .balancer
            .select_with(b"", tries, |b, healthy| healthy && !is_avoided(b))
            .or_else(|| self.balancer.select(b"", tries))
            .or_else(|| self.balancer.select_with(b"", tries, |_, _| true))?;
        let addr = backend.addr.as_inet()?;
        peers.iter().find(|p| p.addr == *addr).cloned()
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
        self.attempt_from(Instant::now(), request, deadline, avoid)
            .await
    }

    /// [`Self::deliver_once`] for an attempt that started at `started` (read by the caller:
    /// one clock read serves the circuit, the time budget, the idle pool and the metrics).
    async fn attempt_from(
        &self,
        started: Instant,
        request: &[u8],
        deadline: Option<Instant>,
        avoid: Option<SocketAddr>,
    ) -> Result<UpstreamAnswer, DeliveryError> {
        let result = self.exchange(started, request, deadline, avoid).await;
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
            let started = Instant::now();
            if !self.attempt_allowed_at(started) {
                if attempts == 0 {
                    last = Failure::CircuitOpen;
                }
                break;
            }
            attempts += 1;
            match self
                .attempt_from(started, request, Some(deadline), avoid)
                .await
            {
                Ok(answer) if settle(Some(answer.answer.status), policy) != Settlement::Retry => {
                    self.record_answered();
                    return Delivery::Answered { answer, attempts };
                }
                Ok(answer) => {
                    self.record_failed(started, None);
                    avoid = Some(answer.peer);
                    last = Failure::Status(answer);
                }
                Err(e) => {
                    self.record_failed(started, Some(&e));
                    avoid = e.peer();
                    last = Failure::Error(e);
                }
            }
            match policy.next_attempt(attempts, arrived.elapsed(), self.jitter.next()) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => break,
            }
        }
        Delivery::Exhausted { last, attempts }
    }

    async fn exchange(
        &self,
        started: Instant,
        request: &[u8],
        deadline: Option<Instant>,
        avoid: Option<SocketAddr>,
    ) -> Result<UpstreamAnswer, DeliveryError> {
        let peer = self
            .select_peer(avoid)
            .ok_or_else(|| DeliveryError::NoHealthyPeer(self.config.name.clone()))?;
        // One budget for the whole attempt, connect included, never past the deadline.
        let mut budget = self.config.response_timeout;
        if let Some(deadline) = deadline {
            budget = budget.min(deadline.saturating_duration_since(started));
        }
        let until = (started + budget).into();
        match tokio::time::timeout_at(until, self.attempt(&peer, request, started)).await {
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
        started: Instant,
    ) -> Result<UpstreamAnswer, DeliveryError> {
        // Pooled connections the handler closed meanwhile are noticed before anything is sent.
        while let Some(mut conn) = peer.idle.take(started) {
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

fn slot(config: &UpstreamConfig, addr: SocketAddr) -> PeerSlot {
    let mut http = HttpPeer::new(addr, false, String::new());
    http.options.connection_timeout = Some(config.connect_timeout);
    http.options.total_connection_timeout = Some(config.connect_timeout);
    PeerSlot {
        addr,
        http,
        idle: IdlePool::new(config.pool_size.get(), config.idle_timeout),
    }
}

#[cfg(test)]
mod tests;
