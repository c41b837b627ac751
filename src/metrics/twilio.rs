//! The families that count Twilio's own error events and their reconciliation with the proxy's
//! answers. Every label value comes from a fixed list ([`crate::twilio_errors::CODE_LABELS`],
//! [`Seen`], [`EventResult`]), and every series exists from start.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::outcome::{EventResult, Seen};
use crate::twilio_errors::CODE_LABELS;

/// Handles for the reconciler and the edge, resolved once.
#[derive(Clone)]
pub struct TwilioErrorMetrics {
    errors: Vec<IntCounter>,
    events: Vec<IntCounter>,
    seen: Vec<IntCounter>,
    /// 13807s whose URL (as Twilio reports it) is not one a notification route serves.
    pub unknown_url: IntCounter,
    /// Answers that could not be shared with the fleet (PostgreSQL full queue or failed write).
    pub records_unshared: IntCounter,
}

impl TwilioErrorMetrics {
    /// Registers the families into `registry`, every series at 0.
    pub(super) fn register(registry: &Registry) -> Self {
        let family = |name: &str, help: &str, label: &str, values: &[&str]| {
            let family = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(family.clone()))
                .expect("registered once");
            values
                .iter()
                .map(|v| family.with_label_values(&[v]))
                .collect::<Vec<_>>()
        };
        let plain = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let results: Vec<&str> = EventResult::ALL.iter().map(|r| r.as_str()).collect();
        let seen: Vec<&str> = Seen::ALL.iter().map(|s| s.as_str()).collect();
        TwilioErrorMetrics {
            errors: family(
                "notify_proxy_twilio_errors_total",
                "Error events Twilio reported (Debugger webhook, Event Streams), each counted once, by error code.",
                "error_code",
                &CODE_LABELS,
            ),
            events: family(
                "notify_proxy_twilio_events_total",
                "Events taken on twilio_errors routes, by what became of them.",
                "result",
                &results,
            ),
            seen: family(
                "notify_proxy_twilio_13807_total",
                "Twilio's 13807 errors by what the proxy had answered for that call.",
                "seen",
                &seen,
            ),
            unknown_url: plain(
                "notify_proxy_twilio_13807_unknown_url_total",
                "13807 errors for a URL no notification route serves (the URL in Twilio is wrong).",
            ),
            records_unshared: plain(
                "notify_proxy_answer_records_unshared_total",
                "Answers not written to the fleet's shared record (queue full or PostgreSQL failed).",
            ),
        }
    }

    /// One error, first seen, with this code label.
    pub fn error(&self, code_label: &str) {
        let i = CODE_LABELS
            .iter()
            .position(|l| *l == code_label)
            .unwrap_or(CODE_LABELS.len() - 1);
        self.errors[i].inc();
    }

    pub fn event(&self, result: EventResult) {
        self.events[result as usize].inc();
    }

    pub fn seen(&self, seen: Seen) {
        self.seen[seen as usize].inc();
    }

    /// Handles that count into unregistered counters (tests).
    pub fn detached() -> Self {
        Self::register(&Registry::new())
    }
}
