//! Time as the buffer, the request flow and the redelivery worker read it: unix milliseconds
//! that a step of the system clock does not move ([`SteadyClock`]), behind the [`Clock`] seam
//! so tests step time by hand. Owns nothing else; it never sleeps and never schedules.

#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where the buffer's times (arrival, expiry, next attempt) come from: unix ms. Injected into
/// the request flow and the redelivery worker, so tests can step time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

/// Unix ms read from the wall clock once, at start, then advanced by the monotonic clock. A
/// step of the system clock while the proxy runs (NTP, an operator, a VM resume) moves
/// neither schedules nor expiry: a step forward no longer dead-letters everything at once, a
/// step back no longer stalls redelivery. Across a restart the wall clock is read again; a
/// schedule left far ahead by a step back is then caught by the `due` horizon.
#[derive(Debug, Clone, Copy)]
pub struct SteadyClock {
    wall_ms: u64,
    start: Instant,
}

impl SteadyClock {
    pub fn new() -> Self {
        SteadyClock {
            wall_ms: now_ms(),
            start: Instant::now(),
        }
    }
}

impl Default for SteadyClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SteadyClock {
    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.wall_ms.saturating_add(elapsed)
    }
}

/// A clock that moves only when told (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

#[cfg(test)]
impl ManualClock {
    pub fn at(now_ms: u64) -> Self {
        ManualClock(AtomicU64::new(now_ms))
    }

    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Unix time in ms from the system clock; 0 before 1970, `u64::MAX` past the year 584 million.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
