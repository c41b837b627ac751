//! Recently seen notifications, so a retried or duplicated one is not delivered twice.
//!
//! Owns a bounded, expiring map from an idempotency key (Twilio's `I-Twilio-Idempotency-Token`
//! or the body's `twi_message_id`) to what became of that message. Keys are kept as 64-bit
//! fingerprints under a per-process random key: fixed-size entries (memory is `capacity` × ~40
//! bytes whatever the key length) and no allocation per request; two different keys collide
//! with probability ~capacity/2^64. The oldest entries go first. In memory only: after a
//! restart, buffered messages are still in the store, and a duplicate of one delivered before
//! the restart is delivered again (the handler sees the same token).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The handler answered 2xx.
    Delivered,
    /// Stored in the buffer for redelivery.
    Buffered,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<u64, (Seen, Instant)>,
    /// Insertion order, for eviction; stale rows (re-inserted keys) are skipped.
    order: VecDeque<(u64, Instant)>,
}

#[derive(Debug)]
pub struct DedupeCache {
    capacity: usize,
    ttl: Duration,
    keyer: RandomState,
    inner: Mutex<Inner>,
}

impl DedupeCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        DedupeCache {
            capacity,
            ttl,
            keyer: RandomState::new(),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fingerprint of a key made of `kind` (which property it is) and `value`.
    pub fn fingerprint(&self, kind: &str, value: &str) -> u64 {
        self.keyer.hash_one((kind, value))
    }

    pub fn get(&self, fingerprint: u64, now: Instant) -> Option<Seen> {
        let inner = self.lock();
        let (seen, at) = inner.entries.get(&fingerprint)?;
        (now.duration_since(*at) < self.ttl).then_some(*seen)
    }

    pub fn insert(&self, fingerprint: u64, seen: Seen, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        // Drop expired entries from the front, then the oldest while over capacity.
        while let Some((k, at)) = inner.order.front().copied() {
            let expired = now.duration_since(at) >= self.ttl;
            let over = inner.entries.len() >= self.capacity;
            if !expired && !over {
                break;
            }
            inner.order.pop_front();
            if inner.entries.get(&k).is_some_and(|(_, t)| *t == at) {
                inner.entries.remove(&k);
            }
        }
        inner.entries.insert(fingerprint, (seen, now));
        inner.order.push_back((fingerprint, now));
        // Re-inserted keys leave stale rows behind; keep the queue bounded too.
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let Inner { entries, order } = &mut *inner;
            order.retain(|(k, at)| entries.get(k).is_some_and(|(_, t)| t == at));
        }
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &DedupeCache, k: &str) -> u64 {
        c.fingerprint("token", k)
    }

    #[test]
    fn remembers_until_ttl() {
        let c = DedupeCache::new(10, Duration::from_secs(60));
        let a = key(&c, "a");
        let t = Instant::now();
        assert_eq!(c.get(a, t), None);
        c.insert(a, Seen::Buffered, t);
        assert_eq!(c.get(a, t + Duration::from_secs(59)), Some(Seen::Buffered));
        assert_eq!(c.get(a, t + Duration::from_secs(60)), None);
        c.insert(a, Seen::Delivered, t + Duration::from_secs(1));
        assert_eq!(c.get(a, t + Duration::from_secs(2)), Some(Seen::Delivered));
        assert_ne!(c.fingerprint("token", "a"), c.fingerprint("message", "a"));
    }

    #[test]
    fn bounded_by_capacity_oldest_first() {
        let c = DedupeCache::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            c.insert(
                key(&c, k),
                Seen::Delivered,
                t + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(key(&c, "a"), t), None, "oldest evicted");
        assert_eq!(c.get(key(&c, "d"), t), Some(Seen::Delivered));
        // Many re-inserts of one key keep memory bounded.
        for i in 0..10_000u64 {
            c.insert(
                key(&c, "d"),
                Seen::Delivered,
                t + Duration::from_millis(10 + i),
            );
        }
        assert!(c.lock().order.len() <= 6);
    }

    #[test]
    fn long_keys_cost_one_fingerprint() {
        let c = DedupeCache::new(3, Duration::from_secs(60));
        let t = Instant::now();
        let long = "x".repeat(100_000);
        c.insert(key(&c, &long), Seen::Delivered, t);
        assert_eq!(c.get(key(&c, &long), t), Some(Seen::Delivered));
        assert_eq!(c.get(key(&c, &long[1..]), t), None);
    }
}
