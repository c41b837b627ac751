//! The circuit breaker of one upstream group: after enough consecutive failures, stop sending
//! every notification to a failing handler, and find out within a second when it is back.
//!
//! Owns only the state machine; the clock is passed in. It never performs an attempt or a
//! connect: the delivery code asks [`CircuitBreaker::allow`] before an attempt, reports how it
//! went, and tells it when a peer accepts connections again ([`CircuitBreaker::on_connectable`]).
//!
//! Why recovery is quick: a call rings ~30 s, so a handler that is back but not yet tried
//! costs rings. While open, one probe attempt (a real notification: failing it only buffers it
//! again) is let through on a short, growing schedule: `first_probe` after opening, doubling
//! after each failed probe, never more than `max_wait` apart. A circuit opened by refused
//! connections does not even wait for that: the first accepted connect makes the probe due.
//! A dead handler so sees at most one attempt per `max_wait`, one at a time.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Attempts flow.
    Closed,
    /// Attempts are skipped until the next probe is due.
    Open,
    /// A probe attempt is due or under way; its result closes or reopens the circuit.
    HalfOpen,
}

impl CircuitState {
    /// The value of the circuit state gauge.
    pub fn as_gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        }
    }
}

/// How many attempts may start now, for a caller that takes work in batches (the redelivery
/// worker claims no more messages than it may attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: as many as the caller likes.
    All,
    /// A probe is due: one.
    Probe,
    /// Open, or a probe is under way: none.
    None,
}

/// What a reported result changed, for the caller to count and log (once per change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    /// The threshold was reached: the circuit opened.
    Opened,
    /// A probe failed: open again, the next probe later.
    ProbeFailed,
    /// A probe (or a late answer while open) succeeded: closed.
    Closed {
        probe: bool,
    },
}

/// When probes are let through while the circuit is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSchedule {
    /// The wait before the first probe after opening.
    pub first: Duration,
    /// The longest wait between two probes (`circuit_breaker.open_for`).
    pub max_wait: Duration,
    /// A probe whose result has not come after this is taken as lost (its request was
    /// cancelled) and replaced: longer than one attempt can take.
    pub lost_after: Duration,
}

impl ProbeSchedule {
    /// The first probe 250 ms after opening (or `max_wait`, if shorter).
    pub fn new(max_wait: Duration, lost_after: Duration) -> Self {
        ProbeSchedule {
            first: Duration::from_millis(250).min(max_wait),
            max_wait,
            lost_after,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    /// `wait`: the gap that led to `probe_at` (doubled after a failed probe). `unreachable`:
    /// the failure that opened it was a refused or failed connect, so an accepted connect is news.
    Open {
        probe_at: Instant,
        wait: Duration,
        unreachable: bool,
    },
    HalfOpen {
        probe_started: Instant,
        wait: Duration,
    },
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// When the circuit last opened. Failures of attempts that started before it are old news:
    /// they must neither push the next probe back nor fail the probe.
    opened_at: Option<Instant>,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: NonZeroU32,
    schedule: ProbeSchedule,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(threshold: NonZeroU32, schedule: ProbeSchedule) -> Self {
        CircuitBreaker {
            threshold,
            schedule,
            inner: Mutex::new(Inner {
                state: State::Closed { failures: 0 },
                opened_at: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admission_of(&self, state: &State, now: Instant) -> Admission {
        match *state {
            State::Closed { .. } => Admission::All,
            State::Open { probe_at, .. } if now < probe_at => Admission::None,
            State::Open { .. } => Admission::Probe,
            State::HalfOpen { probe_started, .. }
                if now.duration_since(probe_started) < self.schedule.lost_after =>
            {
                Admission::None
            }
            State::HalfOpen { .. } => Admission::Probe,
        }
    }

    /// Whether an attempt may go ahead now. When a probe is due only one caller gets `true`.
    pub fn allow(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        match self.admission_of(&inner.state, now) {
            Admission::All => true,
            Admission::None => false,
            Admission::Probe => {
                let wait = match inner.state {
                    State::Open { wait, .. } | State::HalfOpen { wait, .. } => wait,
                    State::Closed { .. } => self.schedule.first,
                };
                inner.state = State::HalfOpen {
                    probe_started: now,
                    wait,
                };
                true
            }
        }
    }

    /// How many attempts [`Self::allow`] would let start now, without taking the probe.
    pub fn admission(&self, now: Instant) -> Admission {
        self.admission_of(&self.lock().state, now)
    }

    /// The handler answered (any status that is not a retryable failure).
    pub fn on_success(&self) -> Transition {
        let mut inner = self.lock();
        let transition = match inner.state {
            State::Closed { .. } => Transition::Unchanged,
            State::HalfOpen { .. } => Transition::Closed { probe: true },
            State::Open { .. } => Transition::Closed { probe: false },
        };
        inner.state = State::Closed { failures: 0 };
        transition
    }

    /// An attempt that started at `started` failed in a way that counts against the handler;
    /// `unreachable` when no connection could be made (refused, no route, connect timeout).
    pub fn on_failure(&self, started: Instant, now: Instant, unreachable: bool) -> Transition {
        let mut inner = self.lock();
        if inner.opened_at.is_some_and(|opened| started < opened) {
            return Transition::Unchanged;
        }
        let (wait, transition) = match inner.state {
            State::Closed { failures } if failures + 1 < self.threshold.get() => {
                inner.state = State::Closed {
                    failures: failures + 1,
                };
                return Transition::Unchanged;
            }
            State::Closed { .. } => (self.schedule.first, Transition::Opened),
            State::HalfOpen { wait, .. } => (
                wait.saturating_mul(2).min(self.schedule.max_wait),
                Transition::ProbeFailed,
            ),
            // A lost probe's replacement is under way or due; a late failure changes nothing.
            State::Open { .. } => return Transition::Unchanged,
        };
        inner.state = State::Open {
            probe_at: now + wait,
            wait,
            unreachable,
        };
        inner.opened_at = Some(now);
        transition
    }

    /// Whether knowing that a peer accepts connections again would be news: the circuit is
    /// open because connections failed, and its next probe is not due yet.
    pub fn wants_connect_check(&self, now: Instant) -> bool {
        matches!(self.lock().state, State::Open { probe_at, unreachable: true, .. } if now < probe_at)
    }

    /// A peer accepted a connection: if the circuit is open because connections failed, the
    /// probe is due now rather than at its scheduled time. Whether it made the probe due.
    pub fn on_connectable(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        match &mut inner.state {
            State::Open {
                probe_at,
                unreachable: true,
                ..
            } if now < *probe_at => {
                *probe_at = now;
                true
            }
            _ => false,
        }
    }

    pub fn state(&self, now: Instant) -> CircuitState {
        match self.lock().state {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { probe_at, .. } if now < probe_at => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests;
