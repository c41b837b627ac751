//! When to try again: backoff with jitter, attempt limits and the overall deadline.
//!
//! Pure logic: time and randomness are passed in, so every decision is unit-tested without
//! sleeping. Which answers are worth another attempt is [`super::settle`]'s call; this module
//! never performs an attempt and never decides what Twilio is answered.

use std::num::NonZeroU32;
use std::time::Duration;

/// Exponential backoff: `initial · 2^(n-1)`, capped at `max`, shortened by up to `jitter` of
/// itself at random (so retries from many requests do not arrive in lockstep).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    pub fn try_new(initial: Duration, max: Duration, jitter: f64) -> Result<Self, String> {
        if initial.is_zero() {
            return Err("initial backoff must be greater than 0".into());
        }
        if max < initial {
            return Err(format!(
                "max ({max:?}) must be at least initial ({initial:?})"
            ));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(format!("jitter {jitter} must be between 0.0 and 1.0"));
        }
        Ok(Backoff {
            initial,
            max,
            jitter,
        })
    }

    /// The wait before retry number `retry` (1 = the first retry). `random` is in `[0, 1)`.
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        let full = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        full.mul_f64(1.0 - self.jitter * random.clamp(0.0, 1.0))
    }
}

/// How hard the live path tries before the exhaustion policy takes over.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: NonZeroU32,
    /// All attempts, waits included, end within this from the request's arrival.
    pub deadline: Duration,
    pub backoff: Backoff,
    /// 5xx statuses that are retried; any other status is final.
    pub retry_statuses: Vec<u16>,
}

impl Default for RetryPolicy {
    /// The documented defaults (3 attempts within 8 s, 50 ms..1 s backoff, retry 500/502/503/504).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: NonZeroU32::new(3).expect("3 > 0"),
            deadline: Duration::from_secs(8),
            backoff: Backoff::try_new(Duration::from_millis(50), Duration::from_secs(1), 0.5)
                .expect("valid defaults"),
            retry_statuses: vec![500, 502, 503, 504],
        }
    }
}

impl RetryPolicy {
    /// After `attempts_done` attempts and `elapsed` since arrival, how long to wait before the
    /// next attempt, or `None` to stop: out of attempts, or the wait would leave no time for
    /// an attempt before the deadline.
    pub fn next_attempt(
        &self,
        attempts_done: u32,
        elapsed: Duration,
        random: f64,
    ) -> Option<Duration> {
        if attempts_done >= self.max_attempts.get() {
            return None;
        }
        let wait = self.backoff.delay(attempts_done, random);
        // Leave at least a sliver for the attempt itself; a retry with no time is a wasted one.
        const MIN_ATTEMPT: Duration = Duration::from_millis(10);
        if elapsed + wait + MIN_ATTEMPT >= self.deadline {
            return None;
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy(max_attempts: u32, deadline_ms: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: NonZeroU32::new(max_attempts).unwrap(),
            deadline: ms(deadline_ms),
            backoff: Backoff::try_new(ms(100), ms(1000), 0.5).unwrap(),
            retry_statuses: vec![500, 502, 503, 504],
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_bounds() {
        let b = Backoff::try_new(ms(100), ms(1000), 0.5).unwrap();
        assert_eq!(b.delay(1, 0.0), ms(100));
        assert_eq!(b.delay(2, 0.0), ms(200));
        assert_eq!(b.delay(3, 0.0), ms(400));
        assert_eq!(b.delay(5, 0.0), ms(1000), "capped");
        assert_eq!(b.delay(u32::MAX, 0.0), ms(1000), "no overflow");
        // Property: for any random in [0,1), the delay stays in [full·(1-jitter), full].
        let jitter = crate::jitter::Jitter::new();
        for i in 0..1000 {
            let r = jitter.next();
            assert!((0.0..1.0).contains(&r));
            let retry = 1 + i % 6;
            let full = b.delay(retry, 0.0);
            let d = b.delay(retry, r);
            assert!(
                d <= full && d >= full.mul_f64(0.5),
                "retry {retry}: {d:?} vs {full:?}"
            );
        }
    }

    #[test]
    fn backoff_rejects_nonsense() {
        assert!(Backoff::try_new(ms(0), ms(10), 0.1).is_err());
        assert!(Backoff::try_new(ms(20), ms(10), 0.1).is_err());
        assert!(Backoff::try_new(ms(10), ms(10), 1.5).is_err());
        assert!(Backoff::try_new(ms(10), ms(10), -0.1).is_err());
    }

    /// The boundaries are allowed: `max` equal to `initial`, a jitter of exactly 0 or 1.
    #[test]
    fn backoff_accepts_its_boundaries() {
        for jitter in [0.0, 1.0] {
            let b = Backoff::try_new(ms(10), ms(10), jitter).unwrap();
            assert_eq!(b.delay(5, 0.0), ms(10), "capped at max = initial");
        }
    }

    #[test]
    fn attempts_and_deadline_bound_retries() {
        let p = policy(3, 8000);
        assert_eq!(p.next_attempt(1, ms(0), 0.0), Some(ms(100)));
        assert_eq!(p.next_attempt(2, ms(150), 0.0), Some(ms(200)));
        assert_eq!(p.next_attempt(3, ms(400), 0.0), None, "out of attempts");
        assert_eq!(
            p.next_attempt(1, ms(7950), 0.0),
            None,
            "the wait would cross the deadline"
        );
        // A retry needs its wait plus 10 ms for the attempt before the deadline: 7,889 ms
        // elapsed + 100 ms + 10 ms ends 1 ms before 8 s; one more millisecond and it does not.
        assert_eq!(p.next_attempt(1, ms(7889), 0.0), Some(ms(100)));
        assert_eq!(p.next_attempt(1, ms(7890), 0.0), None);
    }
}
