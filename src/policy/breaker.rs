//! The circuit breaker of one upstream group: after enough consecutive failures, stop trying
//! for a while, then let one probe through to see whether the handler is back.
//!
//! Owns only the state machine; the clock is passed in. It never performs an attempt: the
//! delivery code asks [`CircuitBreaker::allow`] before one and reports how it went.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Attempts flow.
    Closed,
    /// Attempts are skipped until the open period ends.
    Open,
    /// One probe attempt is allowed; its result closes or reopens the circuit.
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

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `probe_started`: when the one allowed probe began (a probe whose result never comes,
    /// e.g. a cancelled request, is replaced after `open_for`).
    HalfOpen {
        probe_started: Option<Instant>,
    },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: NonZeroU32,
    open_for: Duration,
    state: Mutex<State>,
    /// When the circuit last opened. Failures of attempts that started before it are old news:
    /// they must neither extend the open period nor fail the half-open probe.
    opened_at: Mutex<Option<Instant>>,
}

impl CircuitBreaker {
    pub fn new(threshold: NonZeroU32, open_for: Duration) -> Self {
        CircuitBreaker {
            threshold,
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
            opened_at: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an attempt may go ahead now. In half-open state only one caller gets `true`.
    pub fn allow(&self, now: Instant) -> bool {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if now < until => false,
            State::Open { .. } => {
                *state = State::HalfOpen {
                    probe_started: Some(now),
                };
                true
            }
            State::HalfOpen { probe_started } => match probe_started {
                Some(started) if now.duration_since(started) < self.open_for => false,
                _ => {
                    *state = State::HalfOpen {
                        probe_started: Some(now),
                    };
                    true
                }
            },
        }
    }

    /// The handler answered (any status that is not a retryable failure).
    pub fn on_success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// An attempt that started at `started` failed in a way that counts against the handler.
    pub fn on_failure(&self, started: Instant, now: Instant) {
        let mut opened_at = self.opened_at.lock().unwrap_or_else(|e| e.into_inner());
        if opened_at.is_some_and(|opened| started < opened) {
            return;
        }
        let mut state = self.lock();
        match *state {
            State::Closed { failures } if failures + 1 < self.threshold.get() => {
                *state = State::Closed {
                    failures: failures + 1,
                }
            }
            // Threshold reached, or the half-open probe failed: (re)open.
            _ => {
                *state = State::Open {
                    until: now + self.open_for,
                };
                *opened_at = Some(now);
            }
        }
    }

    pub fn state(&self, now: Instant) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if now < until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(NonZeroU32::new(3).unwrap(), Duration::from_secs(10))
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let b = breaker();
        let t = Instant::now();
        b.on_failure(t, t);
        b.on_failure(t, t);
        assert_eq!(b.state(t), CircuitState::Closed);
        b.on_success(); // a success resets the count
        b.on_failure(t, t);
        b.on_failure(t, t);
        assert!(b.allow(t));
        b.on_failure(t, t);
        assert_eq!(b.state(t), CircuitState::Open);
        assert!(!b.allow(t + Duration::from_secs(9)));
    }

    #[test]
    fn half_open_lets_one_probe_through() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.on_failure(t, t);
        }
        let later = t + Duration::from_secs(10);
        assert_eq!(b.state(later), CircuitState::HalfOpen);
        assert!(b.allow(later), "the probe");
        assert!(!b.allow(later), "only one probe at a time");
        b.on_success();
        assert_eq!(b.state(later), CircuitState::Closed);
        assert!(b.allow(later));
    }

    #[test]
    fn failures_of_attempts_older_than_the_opening_are_ignored() {
        let b = breaker();
        let t = Instant::now();
        let slow_attempt_started = t;
        let opened = t + Duration::from_secs(1);
        for _ in 0..3 {
            b.on_failure(opened, opened);
        }
        // A slow attempt from before the opening fails late: the open period is not extended.
        b.on_failure(slow_attempt_started, opened + Duration::from_secs(9));
        let later = opened + Duration::from_secs(10);
        assert!(b.allow(later), "the probe is due as planned");
        // ...and a late failure of an old attempt does not fail the probe either.
        b.on_failure(slow_attempt_started, later);
        assert_eq!(b.state(later), CircuitState::HalfOpen);
        b.on_success();
        assert_eq!(b.state(later), CircuitState::Closed);
    }

    #[test]
    fn failed_probe_reopens_and_lost_probe_is_replaced() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.on_failure(t, t);
        }
        let probe = t + Duration::from_secs(10);
        assert!(b.allow(probe));
        b.on_failure(probe, probe);
        assert_eq!(b.state(probe), CircuitState::Open);
        assert!(!b.allow(probe + Duration::from_secs(5)));

        let probe2 = probe + Duration::from_secs(10);
        assert!(b.allow(probe2));
        // Its result never comes; after another open period a new probe is allowed.
        assert!(!b.allow(probe2 + Duration::from_secs(1)));
        assert!(b.allow(probe2 + Duration::from_secs(10)));
    }
}
