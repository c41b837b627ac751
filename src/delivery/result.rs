//! What one attempt or the live path's attempts came to: an answer, or why there was none.
//! Plain types (no I/O); the request flow maps them to what Twilio is answered.

use std::net::SocketAddr;
use std::time::Duration;

use super::Answer;
use crate::outcome::{AttemptResult, GaveUp};

/// Why an attempt produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no healthy peer in upstream group {0}")]
    NoHealthyPeer(String),
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        peer: SocketAddr,
        source: Box<pingora::Error>,
    },
    #[error("{peer} did not answer within {after:?}")]
    Timeout { peer: SocketAddr, after: Duration },
    #[error("{peer} broke the exchange: {detail}")]
    Protocol { peer: SocketAddr, detail: String },
}

impl DeliveryError {
    /// The peer the attempt went to, if it got that far.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            DeliveryError::NoHealthyPeer(_) => None,
            DeliveryError::Connect { peer, .. }
            | DeliveryError::Timeout { peer, .. }
            | DeliveryError::Protocol { peer, .. } => Some(*peer),
        }
    }

    /// No connection could be made: a peer that accepts one again is news (see
    /// [`crate::policy::CircuitBreaker::on_connectable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            DeliveryError::NoHealthyPeer(_) | DeliveryError::Connect { .. }
        )
    }

    pub fn attempt_result(&self) -> AttemptResult {
        match self {
            DeliveryError::NoHealthyPeer(_) | DeliveryError::Connect { .. } => {
                AttemptResult::ConnectError
            }
            DeliveryError::Timeout { .. } => AttemptResult::Timeout,
            DeliveryError::Protocol { .. } => AttemptResult::ProtocolError,
        }
    }
}

/// The handler's answer and the peer that gave it.
#[derive(Debug)]
pub struct UpstreamAnswer {
    pub answer: Answer,
    pub peer: SocketAddr,
}

/// How the live path's attempts ended.
#[derive(Debug)]
pub enum Delivery {
    /// The handler gave a final answer (2xx, 3xx, 4xx, or a 5xx not configured to retry).
    Answered {
        answer: UpstreamAnswer,
        attempts: u32,
    },
    /// Every allowed attempt failed, or the circuit was open.
    Exhausted { last: Failure, attempts: u32 },
}

/// The last thing that went wrong before giving up.
#[derive(Debug)]
pub enum Failure {
    /// The handler answered a retryable status (the answer is kept).
    Status(UpstreamAnswer),
    Error(DeliveryError),
    /// The circuit breaker stopped the attempt before it was made.
    CircuitOpen,
}

impl Failure {
    /// What the answer under policy `fail` says about it.
    pub fn gave_up(&self) -> GaveUp {
        match self {
            Failure::Status(_) => GaveUp::ServerError,
            Failure::Error(DeliveryError::Timeout { .. }) => GaveUp::Timeout,
            Failure::Error(DeliveryError::Protocol { .. }) => GaveUp::Protocol,
            Failure::Error(_) => GaveUp::Unreachable,
            Failure::CircuitOpen => GaveUp::CircuitOpen,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(a) => write!(f, "{} answered {}", a.peer, a.answer.status),
            Failure::Error(e) => write!(f, "{e}"),
            Failure::CircuitOpen => f.write_str("circuit open: the handler failed repeatedly"),
        }
    }
}
