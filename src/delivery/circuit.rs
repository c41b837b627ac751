//! An upstream group's circuit, as the live path and the redelivery worker use it: ask before
//! an attempt, report how it went, and learn quickly when a handler that refused connections
//! accepts them again.
//!
//! The state machine and its schedule are [`crate::policy::breaker`]'s; this room adds what
//! needs I/O or shared handles: the connect check ([`RecoveryWatch`], a Pingora background
//! service), the probe counters and one log line per change of state. It never decides what an
//! answer means ([`crate::policy::settle`] does) and never sends a notification itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::{DeliveryError, UpstreamGroup};
use crate::policy::{Admission, Transition};

/// How often a group whose circuit opened on refused connections tries to connect to a peer:
/// a quarter second from the handler's return to the probe that closes the circuit.
pub const CONNECT_CHECK_EVERY: Duration = Duration::from_millis(250);

/// The longest one connect check may take (a peer that drops SYNs answers nothing).
const CONNECT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

impl UpstreamGroup {
    /// Whether an attempt may start now (when a probe is due, one caller gets `true`).
    pub fn attempt_allowed(&self) -> bool {
        self.attempt_allowed_at(Instant::now())
    }

    /// [`Self::attempt_allowed`] for an attempt starting at `now` (the live path reads the
    /// clock once per attempt, for this and for the attempt's own times).
    pub(super) fn attempt_allowed_at(&self, now: Instant) -> bool {
        self.breaker.allow(now)
    }

    /// How many attempts may start now, without taking a due probe.
    pub fn admission(&self) -> Admission {
        self.breaker.admission(Instant::now())
    }

    /// An attempt got a final answer from the handler.
    pub fn record_answered(&self) {
        let transition = self.breaker.on_success();
        self.count(transition, false);
    }

    /// The attempt that started at `started` failed in a way that counts against the handler
    /// (no answer, or a retryable status: `error` is `None` then).
    pub fn record_failed(&self, started: Instant, error: Option<&DeliveryError>) {
        let unreachable = error.is_some_and(DeliveryError::is_unreachable);
        let transition = self
            .breaker
            .on_failure(started, Instant::now(), unreachable);
        self.count(transition, unreachable);
    }

    fn count(&self, transition: Transition, unreachable: bool) {
        let name = &self.config.name;
        match transition {
            Transition::Unchanged => {}
            Transition::Opened => tracing::warn!(
                upstream = %name,
                cause = if unreachable { "unreachable" } else { "failing" },
                "circuit opened: attempts wait for a probe to pass"
            ),
            Transition::ProbeFailed => self.metrics.probe_failed.inc(),
            Transition::Closed { probe } => {
                if probe {
                    self.metrics.probe_passed.inc();
                }
                tracing::info!(upstream = %name, "circuit closed: the handler answers again");
            }
        }
    }

    /// One connect check, when the circuit wants one: a peer that accepts a connection makes
    /// the probe due now. The connection is closed at once (it belongs to this service's
    /// runtime, not the listeners'); the probe opens its own.
    pub async fn check_connect(&self) {
        if !self.breaker.wants_connect_check(Instant::now()) {
            return;
        }
        let Some(peer) = self.select_peer(None) else {
            return;
        };
        let timeout = self.config.connect_timeout.min(CONNECT_CHECK_TIMEOUT);
        let connected = tokio::time::timeout(timeout, self.connector.new_stream(&peer.http))
            .await
            .is_ok_and(|r| r.is_ok());
        if connected {
            self.metrics.connect_checks_ok.inc();
            if self.breaker.on_connectable(Instant::now()) {
                tracing::info!(upstream = %self.config.name, peer = %peer.addr, "circuit: a peer accepts connections again; probing now");
            }
        } else {
            self.metrics.connect_checks_failed.inc();
        }
    }
}

/// The connect checks of every group whose circuit opened on refused connections.
pub struct RecoveryWatch {
    groups: Vec<Arc<UpstreamGroup>>,
}

impl RecoveryWatch {
    pub fn new(groups: Vec<Arc<UpstreamGroup>>) -> Self {
        RecoveryWatch { groups }
    }

    /// One round: every group that wants a check gets one, concurrently (a peer that drops
    /// SYNs must not hold up another group's check).
    pub async fn round(&self) {
        let mut checks = tokio::task::JoinSet::new();
        for group in &self.groups {
            if !group.breaker.wants_connect_check(Instant::now()) {
                continue;
            }
            let group = group.clone();
            checks.spawn(async move { group.check_connect().await });
        }
        while checks.join_next().await.is_some() {}
    }
}

#[async_trait]
impl BackgroundService for RecoveryWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(CONNECT_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => self.round().await,
            }
        }
    }
}
