//! The result kinds behind the delivery metrics: one attempt ([`AttemptResult`]), one
//! redelivery of a buffered message ([`RedeliveryResult`]), why a message was given up
//! ([`DeadLetterReason`]) and which store call ran ([`StoreOperation`]). Each spells its label
//! here and nowhere else. No I/O.

use crate::policy::{Settlement, StatusClass};

/// How one attempt ended: the `result` label of the attempts counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Status2xx,
    NoBinding404,
    Status4xx,
    Status5xx,
    StatusOther,
    ConnectError,
    Timeout,
    ProtocolError,
}

impl AttemptResult {
    pub const ALL: [AttemptResult; 8] = [
        AttemptResult::Status2xx,
        AttemptResult::NoBinding404,
        AttemptResult::Status4xx,
        AttemptResult::Status5xx,
        AttemptResult::StatusOther,
        AttemptResult::ConnectError,
        AttemptResult::Timeout,
        AttemptResult::ProtocolError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Status2xx => "2xx",
            AttemptResult::NoBinding404 => "404_no_binding",
            AttemptResult::Status4xx => "4xx",
            AttemptResult::Status5xx => "5xx",
            AttemptResult::StatusOther => "other_status",
            AttemptResult::ConnectError => "connect_error",
            AttemptResult::Timeout => "timeout",
            AttemptResult::ProtocolError => "protocol_error",
        }
    }

    /// The result of an attempt the handler answered with `status`.
    pub fn of_status(status: u16) -> Self {
        match StatusClass::of(status) {
            StatusClass::Success => AttemptResult::Status2xx,
            StatusClass::NoBinding => AttemptResult::NoBinding404,
            StatusClass::ClientError => AttemptResult::Status4xx,
            StatusClass::ServerError => AttemptResult::Status5xx,
            StatusClass::Other => AttemptResult::StatusOther,
        }
    }
}

/// How one redelivery of a buffered message ended: the `result` label of the redeliveries counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedeliveryResult {
    /// 2xx: removed from the buffer.
    Delivered,
    /// 404: no binding; a final answer, removed.
    NoBinding,
    /// Another final answer (other 4xx, 3xx, a 5xx the route does not retry): removed.
    FinalOther,
    /// No answer or a retryable 5xx: rescheduled.
    Failed,
}

impl RedeliveryResult {
    pub const ALL: [RedeliveryResult; 4] = [
        RedeliveryResult::Delivered,
        RedeliveryResult::NoBinding,
        RedeliveryResult::FinalOther,
        RedeliveryResult::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RedeliveryResult::Delivered => "delivered",
            RedeliveryResult::NoBinding => "no_binding",
            RedeliveryResult::FinalOther => "final_other",
            RedeliveryResult::Failed => "failed",
        }
    }
}

impl From<Settlement> for RedeliveryResult {
    fn from(settlement: Settlement) -> Self {
        match settlement {
            Settlement::Delivered => RedeliveryResult::Delivered,
            Settlement::NoBinding => RedeliveryResult::NoBinding,
            Settlement::FinalOther => RedeliveryResult::FinalOther,
            Settlement::Retry => RedeliveryResult::Failed,
        }
    }
}

/// Why a buffered message was moved to the dead-letter table: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Its TTL passed before the handler took it.
    Expired,
    /// Its upstream group is no longer in the config: nobody can deliver it.
    Orphaned,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 2] = [DeadLetterReason::Expired, DeadLetterReason::Orphaned];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Expired => "expired",
            DeadLetterReason::Orphaned => "orphaned",
        }
    }
}

/// One call into the buffer store: the `operation` label of the store metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOperation {
    Insert,
    Due,
    Reschedule,
    MoveToDeadLetter,
    Remove,
    Release,
    Stats,
}

impl StoreOperation {
    pub const ALL: [StoreOperation; 7] = [
        StoreOperation::Insert,
        StoreOperation::Due,
        StoreOperation::Reschedule,
        StoreOperation::MoveToDeadLetter,
        StoreOperation::Remove,
        StoreOperation::Release,
        StoreOperation::Stats,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreOperation::Insert => "insert",
            StoreOperation::Due => "due",
            StoreOperation::Reschedule => "reschedule",
            StoreOperation::MoveToDeadLetter => "move_to_dead_letter",
            StoreOperation::Remove => "remove",
            StoreOperation::Release => "release",
            StoreOperation::Stats => "stats",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_within_each_kind() {
        let attempts: std::collections::HashSet<_> =
            AttemptResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(attempts.len(), AttemptResult::ALL.len());
        let redeliveries: std::collections::HashSet<_> =
            RedeliveryResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(redeliveries.len(), RedeliveryResult::ALL.len());
        assert_ne!(
            DeadLetterReason::Expired.as_str(),
            DeadLetterReason::Orphaned.as_str()
        );
    }

    #[test]
    fn attempt_result_of_status() {
        assert_eq!(AttemptResult::of_status(204), AttemptResult::Status2xx);
        assert_eq!(AttemptResult::of_status(404), AttemptResult::NoBinding404);
        assert_eq!(AttemptResult::of_status(429), AttemptResult::Status4xx);
        assert_eq!(AttemptResult::of_status(503), AttemptResult::Status5xx);
        assert_eq!(AttemptResult::of_status(302), AttemptResult::StatusOther);
    }

    #[test]
    fn redelivery_result_follows_the_settlement() {
        assert_eq!(
            RedeliveryResult::from(Settlement::Delivered),
            RedeliveryResult::Delivered
        );
        assert_eq!(
            RedeliveryResult::from(Settlement::NoBinding),
            RedeliveryResult::NoBinding
        );
        assert_eq!(
            RedeliveryResult::from(Settlement::FinalOther),
            RedeliveryResult::FinalOther
        );
        assert_eq!(
            RedeliveryResult::from(Settlement::Retry),
            RedeliveryResult::Failed
        );
    }
}
