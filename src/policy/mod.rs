//! Pure delivery decisions: when to try again ([`retry`]), when to stop trying a failing
//! handler ([`breaker`]), and what an attempt's result means ([`settle`]).
//!
//! No I/O, no clock reads, no randomness of their own: time and jitter are passed in, so every
//! rule is unit-tested directly. The live path, the redelivery worker and `buffer replay` all
//! decide through these functions, so a given answer settles the same way whoever delivered it.

pub mod breaker;
pub mod retry;
mod settle;

pub use breaker::{CircuitBreaker, CircuitState};
pub use retry::{jitter_random, Backoff, RetryPolicy};
pub use settle::{settle, Settlement};
