//! The one rule for what a delivery attempt's result means.
//!
//! Used by the live path (retry or stop), the redelivery worker (remove or reschedule) and
//! `buffer replay` (remove or keep): before this rule existed they disagreed on 501s and 3xx.
//! Pure: it looks at a status (or its absence) and the route's retry policy, nothing else.

use super::RetryPolicy;

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
    match status {
        None => Settlement::Retry,
        Some(200..=299) => Settlement::Delivered,
        Some(404) => Settlement::NoBinding,
        // 4xx is the handler's considered answer: never retried.
        Some(s @ 500..=599) if policy.retry_statuses.contains(&s) => Settlement::Retry,
        Some(_) => Settlement::FinalOther,
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
