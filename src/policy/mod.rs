//! Pure delivery decisions: when to try again ([`retry`]), when to stop trying a failing
//! handler ([`breaker`]), and what an attempt's result means ([`settle`]).
//!
//! No I/O, no clock reads, no randomness of their own: time and jitter are passed in, so every
//! rule is unit-tested directly. The live path, the redelivery worker and `buffer replay` all
//! decide through these functions, so a given answer settles the same way whoever delivered it.

pub mod breaker;
pub mod retry;
mod settle;

pub use breaker::{Admission, CircuitBreaker, CircuitState, ProbeSchedule, Transition};
pub use retry::{Backoff, RetryPolicy};
pub use settle::{settle, Settlement, StatusClass};

/// The longest the last look of a dedupe claim may take once the copy's wait ran out (its
/// take-over). Part of the time budget the config check adds up against Twilio's 15 s.
pub const CLAIM_TAKE_OVER_WITHIN: std::time::Duration = std::time::Duration::from_millis(250);
