//! The one source of randomness the proxy needs: jitter, so retries and redeliveries of many
//! notifications do not arrive at a handler in lockstep.
//!
//! Owned by whoever waits (each upstream group for its live retries, the redelivery worker for
//! its backoffs) and handed to the pure rules as a number in `[0, 1)`: the rules in
//! `policy/` have no randomness of their own. Jitter needs spread, not cryptographic
//! quality: std's randomly keyed SipHash over a counter gives that without another dependency.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of uniform numbers in `[0, 1)`, keyed at random when made.
#[derive(Debug, Default)]
pub struct Jitter {
    keys: RandomState,
    counter: AtomicU64,
}

impl Jitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next number in `[0, 1)`.
    pub fn next(&self) -> f64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = self.keys.build_hasher();
        h.write_u64(n);
        (h.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_in_range_and_spread() {
        let jitter = Jitter::new();
        let samples: Vec<f64> = (0..2000).map(|_| jitter.next()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let low = samples.iter().filter(|&&x| x < 0.5).count();
        assert!((800..1200).contains(&low), "{low} of 2000 below 0.5");
        let mut distinct = samples.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert!(distinct.len() > 1990);
    }
}
