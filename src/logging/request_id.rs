//! Request ids: the id every line a request causes carries, and its answer too
//! (`X-Request-Id`, `"request_id"`). Made for every request, so made without allocating.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A request's id: a random per-process prefix and a counter in hex (`3f9c1a2b-1c`), unique
/// within this process and unlikely to repeat across processes. One is made for every request,
/// so it is written out by hand into a fixed array (no allocation, no formatting machinery)
/// and passed around by value; [`RequestId::as_str`] reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId {
    /// ASCII: 8 hex digits, `-`, then 1 to 16 hex digits.
    text: [u8; 25],
    len: u8,
}

impl RequestId {
    /// The id with this prefix and counter ([`request_id`] takes the next counter).
    fn new(prefix: u32, counter: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0; 25];
        for (i, digit) in text[..8].iter_mut().enumerate() {
            *digit = HEX[(prefix >> (28 - 4 * i) & 0xf) as usize];
        }
        text[8] = b'-';
        let digits = (16 - counter.leading_zeros() as usize / 4).max(1);
        for (i, digit) in text[9..9 + digits].iter_mut().enumerate() {
            *digit = HEX[(counter >> (4 * (digits - 1 - i)) & 0xf) as usize];
        }
        RequestId {
            text,
            len: 9 + digits as u8,
        }
    }

    /// An id with a fixed prefix and `counter` (tests that need to know the id).
    #[cfg(test)]
    pub fn for_test(counter: u64) -> Self {
        Self::new(0x7e57_1d00, counter)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..usize::from(self.len)]).expect("the id is ASCII")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The next request id (see [`RequestId`]). Cheap: one atomic add and a few shifts.
pub fn request_id() -> RequestId {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() as u32
    });
    RequestId::new(prefix, NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_short() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        let a = a.as_str();
        assert!(a.len() <= 26 && a.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'));
    }

    #[test]
    fn request_ids_read_as_prefix_dash_counter_in_hex() {
        for prefix in [0, 1, 0x3f9c_1a2b, u32::MAX] {
            for counter in [0, 1, 0xf, 0x10, 0x1c, 0xdead_beef, 1 << 63, u64::MAX] {
                let id = RequestId::new(prefix, counter);
                assert_eq!(id.as_str(), format!("{prefix:08x}-{counter:x}"));
                assert_eq!(id.to_string(), id.as_str());
            }
        }
    }
}
