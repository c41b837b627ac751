//! Claims in this process's memory ([`DedupeCache`]): one instance, bounded and expiring.
//!
//! Owns the map of claims and its eviction order, nothing else: what a claim means and when
//! the flow takes, settles or releases one is [`super::Dedupe`]'s contract. No I/O.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Claim, Dedupe, DedupeError, Identities, Seen};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Ended(Seen),
}

/// The map's keys are already keyed hashes (SipHash under a per-process random key), so the
/// map uses them as they are instead of hashing them a second time.
#[derive(Debug, Default, Clone, Copy)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

/// The map keys of one notification's identities.
struct Fingerprints {
    keys: [u64; 2],
    len: usize,
}

impl Fingerprints {
    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys[..self.len].iter().copied()
    }
}

/// One claim: what became of it, when that was last said, and which row of the eviction queue
/// is its own.
#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    at: Instant,
    row: u64,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<u64, Entry, BuildHasherDefault<Prehashed>>,
    /// Keys in the order their entries were made, for eviction: `(key, row)`. A row whose entry
    /// is gone or was made again since (another `row`) is stale and skipped.
    order: VecDeque<(u64, u64)>,
    next_row: u64,
}

/// Claims in this process's memory: bounded, expiring, keyed by 64-bit fingerprints under a
/// per-process random key (fixed-size entries, ~40 bytes each whatever the key length; two
/// different keys collide with probability ~capacity/2^64). The entries claimed first go first. After
/// a restart it starts empty: buffered messages are still in the store, and a duplicate of one
/// delivered before the restart is delivered again (the handler sees the same token).
#[derive(Debug)]
pub struct DedupeCache {
    capacity: usize,
    ttl: Duration,
    keyer: RandomState,
    inner: Mutex<Inner>,
    /// Woken whenever a claim ends, so waiting copies look again.
    ended: Notify,
}

impl DedupeCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        DedupeCache {
            capacity,
            ttl,
            keyer: RandomState::new(),
            inner: Mutex::new(Inner {
                entries: HashMap::default(),
                order: VecDeque::new(),
                next_row: 0,
            }),
            ended: Notify::new(),
        }
    }

    // A std Mutex is right here: it is held for a few map operations and never across an await.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keys of `ids` in the map: at most two (a token and a message id), no allocation.
    fn fingerprints(&self, ids: &Identities<'_>) -> Fingerprints {
        let mut keys = [0; 2];
        let mut len = 0;
        for (slot, identity) in keys.iter_mut().zip(ids.keys()) {
            *slot = self.keyer.hash_one(identity);
            len += 1;
        }
        Fingerprints { keys, len }
    }

    /// One look: `Some(claim)` when decided, `None` while another delivery holds it.
    fn try_claim(&self, ids: &Identities<'_>, now: Instant, take_over: bool) -> Option<Claim> {
        let keys = self.fingerprints(ids);
        let mut inner = self.lock();
        let mut in_flight = false;
        for key in keys.iter() {
            match inner.entries.get(&key) {
                Some(e) if now.duration_since(e.at) >= self.ttl => {}
                Some(Entry {
                    state: State::Ended(seen),
                    ..
                }) => return Some(Claim::Duplicate(*seen)),
                Some(Entry {
                    state: State::InFlight,
                    ..
                }) => in_flight = true,
                None => {}
            }
        }
        if in_flight && !take_over {
            return None;
        }
        for key in keys.iter() {
            self.put(&mut inner, key, State::InFlight, now);
        }
        Some(Claim::Won)
    }

    fn put(&self, inner: &mut Inner, key: u64, state: State, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if let Some(entry) = inner.entries.get_mut(&key) {
            if now.duration_since(entry.at) < self.ttl {
                // The usual case, a claim settled: said in place, the entry keeps its row (its
                // place in the eviction order is when it was claimed), so no row goes stale.
                entry.state = state;
                entry.at = now;
                return;
            }
        }
        // Drop stale rows and expired entries from the front, then the oldest while over
        // capacity.
        let Inner {
            entries,
            order,
            next_row,
        } = inner;
        while let Some(&(k, row)) = order.front() {
            if let Some(entry) = entries.get(&k).filter(|e| e.row == row) {
                let expired = now.duration_since(entry.at) >= self.ttl;
                if !expired && entries.len() < self.capacity {
                    break;
                }
                entries.remove(&k);
            }
            order.pop_front();
        }
        let row = *next_row;
        *next_row += 1;
        entries.insert(
            key,
            Entry {
                state,
                at: now,
                row,
            },
        );
        order.push_back((key, row));
        // Entries released or made again after they expired leave stale rows behind (rarely:
        // a settle reuses the claim's row); keep the queue bounded all the same.
        if order.len() > self.capacity.saturating_mul(2) {
            order.retain(|(k, row)| entries.get(k).is_some_and(|e| e.row == *row));
        }
    }

    fn end(&self, ids: &Identities<'_>, seen: Option<Seen>, now: Instant) {
        let keys = self.fingerprints(ids);
        {
            let mut inner = self.lock();
            for key in keys.iter() {
                match seen {
                    Some(seen) => self.put(&mut inner, key, State::Ended(seen), now),
                    None => {
                        let in_flight = |e: &Entry| e.state == State::InFlight;
                        if inner.entries.get(&key).is_some_and(in_flight) {
                            inner.entries.remove(&key);
                        }
                    }
                }
            }
        }
        self.ended.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl Dedupe for DedupeCache {
    async fn claim(&self, ids: &Identities<'_>, wait: Duration) -> Result<Claim, DedupeError> {
        if ids.is_empty() {
            return Ok(Claim::Won);
        }
        // The usual case, nothing in flight: decided at the first look, no timer, no waiter.
        if let Some(claim) = self.try_claim(ids, Instant::now(), false) {
            return Ok(claim);
        }
        let give_up = tokio::time::Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so an end between the look and the
            // wait is not missed.
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if let Some(claim) = self.try_claim(ids, Instant::now(), false) {
                return Ok(claim);
            }
            if tokio::time::timeout_at(give_up, ended).await.is_err() {
                let claim = self.try_claim(ids, Instant::now(), true);
                return Ok(claim.unwrap_or(Claim::Won));
            }
        }
    }

    async fn settle(&self, ids: &Identities<'_>, seen: Seen) {
        self.end(ids, Some(seen), Instant::now());
    }

    async fn release(&self, ids: &Identities<'_>) {
        self.end(ids, None, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(token: &str) -> Identities<'_> {
        Identities {
            token: Some(token),
            message_id: None,
        }
    }

    const NO_WAIT: Duration = Duration::ZERO;

    #[tokio::test]
    async fn settled_claims_are_duplicates_until_ttl() {
        let c = DedupeCache::new(10, Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!(c.try_claim(&ids("a"), t, false), Some(Claim::Won));
        c.end(&ids("a"), Some(Seen::Buffered), t);
        assert_eq!(
            c.try_claim(&ids("a"), t + Duration::from_secs(59), false),
            Some(Claim::Duplicate(Seen::Buffered))
        );
        assert_eq!(
            c.try_claim(&ids("a"), t + Duration::from_secs(60), false),
            Some(Claim::Won),
            "expired"
        );
        // A token and a message id with the same text are different identities.
        let message = Identities {
            token: None,
            message_id: Some("a"),
        };
        c.end(&ids("b"), Some(Seen::Delivered), t);
        assert_eq!(c.try_claim(&message, t, false), Some(Claim::Won));
    }

    #[tokio::test]
    async fn a_released_claim_lets_the_next_copy_deliver() {
        let c = DedupeCache::new(10, Duration::from_secs(60));
        assert_eq!(c.claim(&ids("a"), NO_WAIT).await.unwrap(), Claim::Won);
        c.release(&ids("a")).await;
        assert_eq!(c.claim(&ids("a"), NO_WAIT).await.unwrap(), Claim::Won);
    }

    #[tokio::test]
    async fn any_matching_identity_is_a_duplicate() {
        let c = DedupeCache::new(10, Duration::from_secs(60));
        let both = Identities {
            token: Some("t1"),
            message_id: Some("m1"),
        };
        assert_eq!(c.claim(&both, NO_WAIT).await.unwrap(), Claim::Won);
        c.settle(&both, Seen::Delivered).await;
        // A replay with a fresh token but the same (signed) message id.
        let replay = Identities {
            token: Some("t2"),
            message_id: Some("m1"),
        };
        assert_eq!(
            c.claim(&replay, NO_WAIT).await.unwrap(),
            Claim::Duplicate(Seen::Delivered)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_in_flight_waits_for_the_first_and_mirrors_its_end() {
        let c = std::sync::Arc::new(DedupeCache::new(10, Duration::from_secs(60)));
        assert_eq!(c.claim(&ids("a"), NO_WAIT).await.unwrap(), Claim::Won);
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.claim(&ids("a"), Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !waiter.is_finished(),
            "the copy waits while the first is in flight"
        );
        c.settle(&ids("a"), Seen::Delivered).await;
        assert_eq!(
            waiter.await.unwrap().unwrap(),
            Claim::Duplicate(Seen::Delivered)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_copy_delivers_itself_when_the_first_fails() {
        let c = std::sync::Arc::new(DedupeCache::new(10, Duration::from_secs(60)));
        c.claim(&ids("a"), NO_WAIT).await.unwrap();
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.claim(&ids("a"), Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.release(&ids("a")).await;
        assert_eq!(waiter.await.unwrap().unwrap(), Claim::Won);
    }

    #[tokio::test(start_paused = true)]
    async fn a_claim_that_never_ends_is_taken_over_after_the_wait() {
        let c = DedupeCache::new(10, Duration::from_secs(60));
        c.claim(&ids("a"), NO_WAIT).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            c.claim(&ids("a"), Duration::from_secs(2)).await.unwrap(),
            Claim::Won
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn bounded_by_capacity_oldest_first() {
        let c = DedupeCache::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            c.end(
                &ids(k),
                Some(Seen::Delivered),
                t + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.try_claim(&ids("a"), t, false),
            Some(Claim::Won),
            "oldest evicted"
        );
        // Many re-inserts of one key keep memory bounded.
        for i in 0..10_000u64 {
            c.end(
                &ids("d"),
                Some(Seen::Delivered),
                t + Duration::from_millis(10 + i),
            );
        }
        assert!(c.lock().order.len() <= 6);
    }

    #[test]
    fn a_settled_claim_keeps_its_one_row_in_the_eviction_queue() {
        let c = DedupeCache::new(100, Duration::from_secs(60));
        let t = Instant::now();
        for i in 0..1000u64 {
            let token = i.to_string();
            let at = t + Duration::from_millis(i);
            assert_eq!(c.try_claim(&ids(&token), at, false), Some(Claim::Won));
            c.end(&ids(&token), Some(Seen::Delivered), at);
            let inner = c.lock();
            assert_eq!(inner.order.len(), inner.entries.len(), "no stale rows");
        }
        assert_eq!(c.len(), 100);
        let at = t + Duration::from_millis(1000);
        assert_eq!(
            c.try_claim(&ids("999"), at, false),
            Some(Claim::Duplicate(Seen::Delivered))
        );
        assert_eq!(
            c.try_claim(&ids("900"), at, false),
            Some(Claim::Duplicate(Seen::Delivered))
        );
        assert_eq!(
            c.try_claim(&ids("899"), at, false),
            Some(Claim::Won),
            "the oldest went first"
        );
    }

    #[test]
    fn long_keys_cost_one_fingerprint() {
        let c = DedupeCache::new(3, Duration::from_secs(60));
        let t = Instant::now();
        let long = "x".repeat(100_000);
        c.end(&ids(&long), Some(Seen::Delivered), t);
        assert_eq!(
            c.try_claim(&ids(&long), t, false),
            Some(Claim::Duplicate(Seen::Delivered))
        );
        assert_eq!(c.try_claim(&ids(&long[1..]), t, false), Some(Claim::Won));
    }
}
