//! The answer ledger: what the proxy answered for each call, and which error events it has
//! counted, remembered for a bounded time and size.
//!
//! Owns the [`AnswerLedger`] seam and its in-process implementation, [`MemoryLedger`]: per
//! instance, in memory, lost on restart (what a redb or buffer-less proxy gets). The fleet's
//! shared one is [`super::postgres::PostgresLedger`]. Recording never blocks a request: it is a
//! short critical section here, a queue there. An answer is kept compact (route and instance
//! names shared, labels static, the request id inline, a call's first answer in place: one
//! allocation a call, about 280 bytes with the table's share), and turned into an
//! [`AnswerRecord`] only when a 13807 asks for it. Nothing here classifies or counts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::logging::RequestId;
use crate::twilio_errors::AnswerRecord;

/// Answers kept per call: a call notifies a few identities, and Twilio may retry each.
pub const ANSWERS_PER_CALL: usize = 8;

/// Why the ledger could not answer (a shared store that is down).
#[derive(Debug, thiserror::Error)]
#[error("answer ledger unavailable: {0}")]
pub struct LedgerError(pub String);

/// One answer the edge gave on a notification route, as it hands it over (borrowed: recording
/// costs the request no copies it does not keep).
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub route: &'a str,
    /// The outcome label.
    pub outcome: &'static str,
    /// The rejection reason label, for a refused request.
    pub reason: Option<&'static str>,
    pub status: u16,
    pub answered_at_ms: u64,
    pub request_id: RequestId,
    /// Whether the request passed the signature check.
    pub verified: bool,
}

/// Where answers and counted event SIDs are remembered.
#[async_trait]
pub trait AnswerLedger: Send + Sync {
    /// Remembers one answer for `call_sid`; returns at once.
    fn record(&self, call_sid: &str, answer: &Answer<'_>);
    /// The answers remembered for `call_sid` (at most [`ANSWERS_PER_CALL`] per instance), by
    /// every instance that shares this ledger.
    async fn answers_for(&self, call_sid: &str) -> Result<Vec<AnswerRecord>, LedgerError>;
    /// True the first time an event `sid` is offered within the memory of the ledger (across
    /// the fleet for a shared one): the event is then counted; a repeat is a duplicate.
    async fn first_sighting(&self, sid: &str) -> Result<bool, LedgerError>;
}

/// A bounded map that forgets its oldest keys first: by age (`remember`) and by count. Every
/// operation is O(1) amortised: it runs on each notification's answer.
#[derive(Debug)]
struct Recent<V> {
    /// Each value with the time its key was first remembered.
    entries: HashMap<Arc<str>, (u64, V)>,
    /// Keys in that order, with that time (the key shared with the map). An entry whose time no
    /// longer matches its key's (the key expired and came back) is stale and skipped.
    order: VecDeque<(u64, Arc<str>)>,
    max: usize,
    remember_ms: u64,
}

impl<V> Recent<V> {
    fn new(max: usize, remember: Duration) -> Self {
        Recent {
            entries: HashMap::new(),
            order: VecDeque::new(),
            max,
            remember_ms: u64::try_from(remember.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn live(&self, since_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(since_ms) < self.remember_ms
    }

    /// Forgets keys older than `remember` at `now_ms`, then enough of the oldest for one more.
    fn make_room(&mut self, now_ms: u64) {
        while let Some((at, key)) = self.order.front() {
            let current = self.entries.get(key).map(|(since, _)| *since) == Some(*at);
            if current && self.live(*at, now_ms) && self.entries.len() < self.max {
                break;
            }
            if current {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }

    fn get(&self, key: &str, now_ms: u64) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(since, _)| self.live(*since, now_ms))
            .map(|(_, v)| v)
    }

    /// The entry of `key`, inserted with `new` when absent or expired (the oldest are forgotten
    /// first), and whether it was.
    fn entry(&mut self, key: &str, now_ms: u64, new: impl FnOnce() -> V) -> (&mut V, bool) {
        let fresh = self.get(key, now_ms).is_none();
        if fresh {
            self.entries.remove(key);
            self.make_room(now_ms);
            let key: Arc<str> = Arc::from(key);
            self.entries.insert(key.clone(), (now_ms, new()));
            self.order.push_back((now_ms, key));
        }
        let (_, value) = self.entries.get_mut(key).expect("present or just inserted");
        (value, fresh)
    }
}

/// An answer as this process keeps it: names shared, labels static.
#[derive(Debug)]
struct Kept {
    route: Arc<str>,
    outcome: &'static str,
    reason: Option<&'static str>,
    status: u16,
    answered_at_ms: u64,
    request_id: RequestId,
    verified: bool,
}

/// A call's answers: nearly always one, kept in place (no allocation of its own); a list from
/// the second on, the oldest dropped past [`ANSWERS_PER_CALL`].
#[derive(Debug, Default)]
enum CallAnswers {
    #[default]
    None,
    One(Kept),
    Many(Vec<Kept>),
}

impl CallAnswers {
    fn push(&mut self, kept: Kept) {
        *self = match std::mem::take(self) {
            CallAnswers::None => CallAnswers::One(kept),
            CallAnswers::One(first) => CallAnswers::Many(vec![first, kept]),
            CallAnswers::Many(mut list) => {
                if list.len() == ANSWERS_PER_CALL {
                    list.remove(0);
                }
                list.push(kept);
                CallAnswers::Many(list)
            }
        };
    }

    fn as_slice(&self) -> &[Kept] {
        match self {
            CallAnswers::None => &[],
            CallAnswers::One(kept) => std::slice::from_ref(kept),
            CallAnswers::Many(list) => list,
        }
    }
}

/// The answers of the remembered calls, and the route names they share.
#[derive(Debug)]
struct Answers {
    calls: Recent<CallAnswers>,
    /// One `Arc` per route name (routes are few; a reload may add some).
    routes: HashMap<Box<str>, Arc<str>>,
}

/// One process's ledger: `max_calls` calls and as many event SIDs, each for `remember`.
#[derive(Debug)]
pub struct MemoryLedger {
    answers: Mutex<Answers>,
    sids: Mutex<Recent<()>>,
    clock: Arc<dyn Clock>,
    /// This process's name in the records.
    instance: Arc<str>,
}

impl MemoryLedger {
    pub fn new(
        max_calls: usize,
        remember: Duration,
        clock: Arc<dyn Clock>,
        instance: &str,
    ) -> Self {
        MemoryLedger {
            answers: Mutex::new(Answers {
                calls: Recent::new(max_calls, remember),
                routes: HashMap::new(),
            }),
            sids: Mutex::new(Recent::new(max_calls, remember)),
            clock,
            instance: Arc::from(instance),
        }
    }

    /// This process's name in the records.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The answers this process remembers for `call_sid`.
    pub fn local_answers(&self, call_sid: &str) -> Vec<AnswerRecord> {
        let now = self.clock.now_ms();
        let answers = self.answers.lock().expect("ledger lock");
        let Some(kept) = answers.calls.get(call_sid, now) else {
            return Vec::new();
        };
        kept.as_slice()
            .iter()
            .map(|k| AnswerRecord {
                call_sid: call_sid.to_owned(),
                route: k.route.to_string(),
                outcome: k.outcome.to_owned(),
                reason: k.reason.map(str::to_owned),
                status: k.status,
                answered_at_ms: k.answered_at_ms,
                instance: self.instance.to_string(),
                request_id: k.request_id.as_str().to_owned(),
                verified: k.verified,
            })
            .collect()
    }

    /// Whether this process has seen `sid` before; remembers it either way.
    pub fn local_first_sighting(&self, sid: &str) -> bool {
        let now = self.clock.now_ms();
        let mut sids = self.sids.lock().expect("ledger lock");
        sids.entry(sid, now, || ()).1
    }
}

#[async_trait]
impl AnswerLedger for MemoryLedger {
    fn record(&self, call_sid: &str, answer: &Answer<'_>) {
        let now = self.clock.now_ms();
        let mut answers = self.answers.lock().expect("ledger lock");
        let route = match answers.routes.get(answer.route) {
            Some(route) => route.clone(),
            None => {
                let route: Arc<str> = Arc::from(answer.route);
                answers.routes.insert(answer.route.into(), route.clone());
                route
            }
        };
        let (list, _) = answers.calls.entry(call_sid, now, CallAnswers::default);
        list.push(Kept {
            route,
            outcome: answer.outcome,
            reason: answer.reason,
            status: answer.status,
            answered_at_ms: answer.answered_at_ms,
            request_id: answer.request_id,
            verified: answer.verified,
        });
    }

    async fn answers_for(&self, call_sid: &str) -> Result<Vec<AnswerRecord>, LedgerError> {
        Ok(self.local_answers(call_sid))
    }

    async fn first_sighting(&self, sid: &str) -> Result<bool, LedgerError> {
        Ok(self.local_first_sighting(sid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Records answer number `request` for `call`.
    fn record(l: &MemoryLedger, call: &str, request: u64) {
        let id = RequestId::for_test(request);
        l.record(
            call,
            &Answer {
                route: "notify",
                outcome: "forwarded_2xx",
                reason: None,
                status: 200,
                answered_at_ms: 0,
                request_id: id,
                verified: true,
            },
        );
    }

    fn ledger(max: usize, clock: &Arc<ManualClock>) -> MemoryLedger {
        MemoryLedger::new(max, Duration::from_secs(60), clock.clone(), "test")
    }

    #[test]
    fn answers_are_kept_per_call_up_to_their_bound() {
        let clock = Arc::new(ManualClock::at(1_000));
        let l = ledger(10, &clock);
        for i in 0..ANSWERS_PER_CALL as u64 + 2 {
            record(&l, "CA1", i);
        }
        record(&l, "CA2", 0);
        let kept = l.local_answers("CA1");
        assert_eq!(kept.len(), ANSWERS_PER_CALL);
        assert_eq!(
            kept[0].request_id,
            RequestId::for_test(2).as_str(),
            "the oldest answers of a call go first"
        );
        assert_eq!(l.local_answers("CA2").len(), 1);
        assert!(l.local_answers("CA3").is_empty());
    }

    #[test]
    fn calls_are_forgotten_oldest_first_at_the_bound_and_after_remember() {
        let clock = Arc::new(ManualClock::at(1_000));
        let l = ledger(2, &clock);
        record(&l, "CA1", 0);
        clock.set(1_001);
        record(&l, "CA2", 0);
        assert_eq!(
            l.local_answers("CA1").len(),
            1,
            "at the bound, nothing is forgotten"
        );
        clock.set(1_002);
        record(&l, "CA3", 0);
        assert!(
            l.local_answers("CA1").is_empty(),
            "one past it, the oldest goes"
        );
        assert_eq!(l.local_answers("CA2").len(), 1);
        // 59.999 s later CA2 is still remembered; at 60 s it is not.
        clock.set(1_001 + 59_999);
        assert_eq!(l.local_answers("CA2").len(), 1);
        clock.set(1_001 + 60_000);
        assert!(l.local_answers("CA2").is_empty());
        // And a new answer for a forgotten call starts afresh.
        record(&l, "CA2", 5);
        assert_eq!(
            l.local_answers("CA2")[0].request_id,
            RequestId::for_test(5).as_str()
        );
    }

    #[test]
    fn an_event_sid_is_a_first_sighting_once_within_remember() {
        let clock = Arc::new(ManualClock::at(1_000));
        let l = ledger(2, &clock);
        assert!(l.local_first_sighting("NO1"));
        assert!(!l.local_first_sighting("NO1"));
        clock.set(1_000 + 59_999);
        assert!(!l.local_first_sighting("NO1"));
        clock.set(1_000 + 60_000);
        assert!(l.local_first_sighting("NO1"), "forgotten after remember");
        assert!(l.local_first_sighting("NO2"));
        assert!(l.local_first_sighting("NO3"));
        assert!(l.local_first_sighting("NO1"), "forgotten at the bound");
    }
}
