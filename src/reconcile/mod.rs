//! Reconciling Twilio's error events with the proxy's own answers.
//!
//! Owns the two halves of it at run time: remembering what the proxy answered for each call
//! (through the [`AnswerLedger`]: this process's memory, or the fleet's PostgreSQL), and the
//! worker that takes the error events a `twilio_errors` route verified, counts each once by
//! code, and for every 13807 decides (with [`crate::twilio_errors::classify`]) whether the
//! proxy never saw the call, answered it with an error, or answered it well, then logs one
//! bounded line saying so. The edge hands events over through a bounded queue and answers
//! Twilio at once; a full queue drops the event (counted). Reconciliation waits
//! [`RECONCILE_AFTER`] after an event arrives, so the answer it is about has reached the
//! shared ledger from whichever instance gave it. It never answers a request itself.

mod ledger;
mod postgres;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use ledger::{Answer, AnswerLedger, LedgerError, MemoryLedger, ANSWERS_PER_CALL};
pub use postgres::{LedgerFlush, PostgresLedger};

use crate::logging::bounded;
use crate::metrics::TwilioErrorMetrics;
use crate::outcome::{EventResult, Seen};
use crate::twilio_errors::{
    classify, code_label, url_is_served, AnswerRecord, ErrorEvent, Item, ServedUrl,
    CLIENT_NOTIFICATION_FAILED,
};

/// The URLs the notification routes serve now (they change with a reload).
pub type ServedUrls = Arc<dyn Fn() -> Vec<ServedUrl> + Send + Sync>;

/// How long after its arrival a 13807 is reconciled: many times the shared ledger's write
/// interval, and nothing against the minutes Twilio takes to report.
pub const RECONCILE_AFTER: Duration = Duration::from_secs(1);

/// Events waiting for the worker at most; beyond it they are dropped (and counted).
const QUEUE: usize = 4096;

/// An error event taken on a route, on its way to the worker.
#[derive(Debug)]
struct Taken {
    event: ErrorEvent,
    arrived: Instant,
    request_id: String,
}

/// What the edge holds: where answers are remembered and events are sent.
pub struct Reconciler {
    ledger: Arc<dyn AnswerLedger>,
    events: mpsc::Sender<Taken>,
    metrics: TwilioErrorMetrics,
}

impl Reconciler {
    /// The handle, and the worker to run as a background service.
    pub fn new(
        ledger: Arc<dyn AnswerLedger>,
        metrics: TwilioErrorMetrics,
        served: ServedUrls,
    ) -> (Reconciler, ReconcileWorker) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let worker = ReconcileWorker {
            events: Mutex::new(Some(rx)),
            ledger: ledger.clone(),
            metrics: metrics.clone(),
            served,
            after: RECONCILE_AFTER,
        };
        (
            Reconciler {
                ledger,
                events: tx,
                metrics,
            },
            worker,
        )
    }

    /// Remembers an answer the proxy gave on a notification route for `call_sid`.
    pub fn record(&self, call_sid: &str, answer: &Answer<'_>) {
        self.ledger.record(call_sid, answer);
    }

    /// Takes a verified request's events: errors go to the worker, the rest are counted as
    /// ignored here. Returns how many were errors.
    pub fn take(&self, items: Vec<Item>, request_id: &str) -> usize {
        let mut errors = 0;
        for item in items {
            let Item::Error(event) = item else {
                self.metrics.event(EventResult::Ignored);
                continue;
            };
            errors += 1;
            let taken = Taken {
                event,
                arrived: Instant::now(),
                request_id: request_id.to_owned(),
            };
            if self.events.try_send(taken).is_err() {
                self.metrics.event(EventResult::Dropped);
                tracing::warn!(
                    request_id,
                    "twilio_errors: the reconciler is {QUEUE} events behind; this event is not counted"
                );
            }
        }
        errors
    }
}

/// The background service that counts and reconciles the events [`Reconciler::take`] queued.
pub struct ReconcileWorker {
    events: Mutex<Option<mpsc::Receiver<Taken>>>,
    ledger: Arc<dyn AnswerLedger>,
    metrics: TwilioErrorMetrics,
    served: ServedUrls,
    after: Duration,
}

#[async_trait]
impl BackgroundService for ReconcileWorker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut events) = self.events.lock().expect("worker lock").take() else {
            return;
        };
        // 13807s waiting to be reconciled, in arrival order (every one waits as long).
        let mut waiting: VecDeque<Taken> = VecDeque::new();
        loop {
            let due = waiting.front().map(|t| t.arrived + self.after);
            tokio::select! {
                _ = shutdown.changed() => break,
                taken = events.recv() => match taken {
                    Some(taken) => {
                        if self.count(&taken.event).await {
                            waiting.push_back(taken);
                        }
                    }
                    None => break,
                },
                _ = sleep_until(due) => {
                    if let Some(taken) = waiting.pop_front() {
                        self.reconcile(&taken).await;
                    }
                }
            }
        }
        // What was taken is still reconciled, without waiting (best effort at shutdown).
        for taken in waiting {
            self.reconcile(&taken).await;
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

impl ReconcileWorker {
    /// Counts an error once by its Sid; true when it is a 13807 to reconcile.
    async fn count(&self, event: &ErrorEvent) -> bool {
        // A shared ledger that is down falls back to this process's memory itself; an error
        // here means nothing could be asked, and counting twice beats not counting.
        let first = self.ledger.first_sighting(&event.sid).await.unwrap_or(true);
        if !first {
            self.metrics.event(EventResult::Duplicate);
            return false;
        }
        self.metrics.event(EventResult::Counted);
        self.metrics.error(code_label(event.code));
        event.code == CLIENT_NOTIFICATION_FAILED
    }

    /// Classifies a 13807, counts the verdict, logs one line.
    async fn reconcile(&self, taken: &Taken) {
        let event = &taken.event;
        let answers = match &event.call_sid {
            None => None,
            Some(call) => self.ledger.answers_for(call).await.ok(),
        };
        let verdict = answers.as_deref().map(classify);
        let seen = verdict.map_or(Seen::Unknown, |v| v.seen);
        let served = (self.served)();
        let url_known = event
            .called_url
            .as_deref()
            .map(|url| url_is_served(url, &served));
        if url_known == Some(false) {
            self.metrics.unknown_url.inc();
        }
        self.metrics.seen(seen);
        let record = verdict.and_then(|v| v.record);
        let field = |f: fn(&AnswerRecord) -> String| record.map_or("-".to_owned(), f);
        tracing::warn!(
            request_id = taken.request_id,
            event_sid = event.sid,
            channel = event.channel.as_str(),
            call_sid = event.call_sid.as_deref().unwrap_or("-"),
            seen = seen.as_str(),
            twilio_status = event.status_seen.map_or("-".to_owned(), |s| s.to_string()),
            called_url = event.called_url.as_deref().map_or("-".to_owned(), bounded),
            url_known = url_known.map_or("-", |k| if k { "yes" } else { "no" }),
            proxy_route = field(|r| r.route.clone()),
            proxy_outcome = field(|r| r.outcome.clone()),
            proxy_reason = field(|r| r.reason.clone().unwrap_or_else(|| "-".into())),
            proxy_status = field(|r| r.status.to_string()),
            proxy_instance = field(|r| r.instance.clone()),
            proxy_request_id = field(|r| r.request_id.clone()),
            proxy_verified = field(|r| r.verified.to_string()),
            "Twilio logged 13807 for this call: {}",
            explanation(seen, url_known)
        );
    }
}

/// What a verdict tells the operator to look at.
fn explanation(seen: Seen, url_known: Option<bool>) -> &'static str {
    match (seen, url_known) {
        (_, Some(false)) => {
            "the URL Twilio called is not a public_url of this proxy (wrong URL or host in Twilio)"
        }
        (Seen::NotSeen, _) => {
            "no instance received the notification: DNS, TLS, the load balancer, or Twilio called another URL"
        }
        (Seen::AnsweredError, _) => "the proxy answered an error (proxy_outcome says which)",
        (Seen::AnsweredOk, _) => {
            "the proxy answered 2xx: something between changed the answer, or it came too late"
        }
        (Seen::Unknown, _) => {
            "the proxy cannot tell: the event names no call, or the shared record could not be read"
        }
    }
}

#[cfg(test)]
mod tests;
