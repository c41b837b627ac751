//! The one rule for what a delivery attempt's result means.
//!
//! Used by the live path (retry or stop), the redelivery worker (remove or reschedule) and
//! `buffer replay` (remove or keep): before this rule existed they disagreed on 501s and 3xx.
//! Pure: it looks at a status (or its absence) and the route's retry policy, nothing else.

use super::RetryPolicy;

/// The classes of a handler's status that every rule about answers starts from: what an
/// answer means here ([`settle`]), its outcome label and its attempt label
/// (in the outcome room) all derive from this one split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 404: no client binding for the identity.
    NoBinding,
    /// Any other 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// 1xx, 3xx, and anything outside 100..=599.
    Other,
}

impl StatusClass {
    pub fn of(status: u16) -> Self {
        match status {
            200..=299 => StatusClass::Success,
            404 => StatusClass::NoBinding,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }
}

/// How one attempt settles a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The handler answered 2xx: delivered.
    Delivered,
    /// The handler answered 404: no client binding for the identity. A real answer, never retried.
    NoBinding,
    /// Any other answer the handler means: 1xx, 3xx, other 4xx, and a 5xx that the route's
    /// `retry.on_status` does not list. Passed through (live) or removed (buffer): never retried.
    FinalOther,
    /// Worth another attempt: no answer at all (connect error, timeout, broken exchange) or a
    /// 5xx listed in `retry.on_status`.
    Retry,
}

impl Settlement {
    /// Whether the notification is done with (delivered or finally answered).
    pub fn is_final(self) -> bool {
        self != Settlement::Retry
    }
}

/// Settles one attempt: `status` is the handler's answer, `None` when there was none.
pub fn settle(status: Option<u16>, policy: &RetryPolicy) -> Settlement {
    let Some(status) = status else {
        return Settlement::Retry;
    };
    match StatusClass::of(status) {
        StatusClass::Success => Settlement::Delivered,
        StatusClass::NoBinding => Settlement::NoBinding,
        StatusClass::ServerError if policy.retry_statuses.contains(&status) => Settlement::Retry,
        // 4xx is the handler's considered answer: never retried; nor is an unlisted 5xx.
        StatusClass::ClientError | StatusClass::ServerError | StatusClass::Other => {
            Settlement::FinalOther
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_of_answer_settles_once_and_for_all() {
        let p = RetryPolicy::default();
        let cases = [
            (Some(200), Settlement::Delivered),
            (Some(204), Settlement::Delivered),
            (Some(404), Settlement::NoBinding),
            (Some(100), Settlement::FinalOther),
            (Some(301), Settlement::FinalOther),
            (Some(400), Settlement::FinalOther),
            (Some(401), Settlement::FinalOther),
            (Some(429), Settlement::FinalOther),
            (Some(501), Settlement::FinalOther),
            (Some(500), Settlement::Retry),
            (Some(502), Settlement::Retry),
            (Some(503), Settlement::Retry),
            (Some(504), Settlement::Retry),
            (None, Settlement::Retry),
        ];
        for (status, expected) in cases {
            assert_eq!(settle(status, &p), expected, "{status:?}");
            assert_eq!(expected.is_final(), expected != Settlement::Retry);
        }
    }

    #[test]
    fn status_classes_split_at_the_documented_boundaries() {
        let cases = [
            (100, StatusClass::Other),
            (199, StatusClass::Other),
            (200, StatusClass::Success),
            (299, StatusClass::Success),
            (300, StatusClass::Other),
            (399, StatusClass::Other),
            (400, StatusClass::ClientError),
            (403, StatusClass::ClientError),
            (404, StatusClass::NoBinding),
            (405, StatusClass::ClientError),
            (499, StatusClass::ClientError),
            (500, StatusClass::ServerError),
            (599, StatusClass::ServerError),
            (600, StatusClass::Other),
            (0, StatusClass::Other),
        ];
        for (status, class) in cases {
            assert_eq!(StatusClass::of(status), class, "{status}");
        }
    }

    #[test]
    fn only_the_routes_listed_5xx_are_retried() {
        let p = RetryPolicy {
            retry_statuses: vec![503],
            ..RetryPolicy::default()
        };
        assert_eq!(settle(Some(503), &p), Settlement::Retry);
        assert_eq!(settle(Some(500), &p), Settlement::FinalOther);
        // A 4xx listed by mistake is still never retried.
        let odd = RetryPolicy {
            retry_statuses: vec![429],
            ..RetryPolicy::default()
        };
        assert_eq!(settle(Some(429), &odd), Settlement::FinalOther);
    }
}
