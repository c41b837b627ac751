//! The answer ledger: what the proxy answered for each call, and which error events it has
//! counted, remembered for a bounded time and size.
//!
//! Owns the [`AnswerLedger`] seam and its in-process implementation, [`MemoryLedger`]: per
//! instance, in memory, lost on restart (what a redb or buffer-less proxy gets). The fleet's
//! shared one is [`super::postgres::PostgresLedger`]. Recording never blocks a request: it is a
//! short critical section here, a queue there. Nothing here classifies or counts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::twilio_errors::AnswerRecord;

/// Answers kept per call: a call notifies a few identities, and Twilio may retry each.
pub const ANSWERS_PER_CALL: usize = 8;

/// Why the ledger could not answer (a shared store that is down).
#[derive(Debug, thiserror::Error)]
#[error("answer ledger unavailable: {0}")]
pub struct LedgerError(pub String);

/// Where answers and counted event SIDs are remembered.
#[async_trait]
pub trait AnswerLedger: Send + Sync {
    /// Remembers one answer; returns at once.
    fn record(&self, record: AnswerRecord);
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
    entries: HashMap<String, (u64, V)>,
    /// Keys in that order, with that time. An entry whose time no longer matches its key's
    /// (the key expired and came back) is stale and skipped.
    order: VecDeque<(u64, String)>,
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
            self.entries.insert(key.to_owned(), (now_ms, new()));
            self.order.push_back((now_ms, key.to_owned()));
        }
        let (_, value) = self.entries.get_mut(key).expect("present or just inserted");
        (value, fresh)
    }
}

/// One process's ledger: `max_calls` calls and as many event SIDs, each for `remember`.
#[derive(Debug)]
pub struct MemoryLedger {
    answers: Mutex<Recent<Vec<AnswerRecord>>>,
    sids: Mutex<Recent<()>>,
    clock: Arc<dyn Clock>,
}

impl MemoryLedger {
    pub fn new(max_calls: usize, remember: Duration, clock: Arc<dyn Clock>) -> Self {
        MemoryLedger {
            answers: Mutex::new(Recent::new(max_calls, remember)),
            sids: Mutex::new(Recent::new(max_calls, remember)),
            clock,
        }
    }

    /// The answers this process remembers for `call_sid`.
    pub fn local_answers(&self, call_sid: &str) -> Vec<AnswerRecord> {
        let now = self.clock.now_ms();
        let answers = self.answers.lock().expect("ledger lock");
        answers.get(call_sid, now).cloned().unwrap_or_default()
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
    fn record(&self, record: AnswerRecord) {
        let now = self.clock.now_ms();
        let mut answers = self.answers.lock().expect("ledger lock");
        let (list, _) = answers.entry(&record.call_sid, now, Vec::new);
        if list.len() == ANSWERS_PER_CALL {
            list.remove(0);
        }
        list.push(record);
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

    fn record(call: &str, request: usize) -> AnswerRecord {
        AnswerRecord {
            call_sid: call.into(),
            route: "notify".into(),
            outcome: "forwarded_2xx".into(),
            reason: None,
            status: 200,
            answered_at_ms: 0,
            instance: "test".into(),
            request_id: format!("r{request}"),
            verified: true,
        }
    }

    fn ledger(max: usize, clock: &Arc<ManualClock>) -> MemoryLedger {
        MemoryLedger::new(max, Duration::from_secs(60), clock.clone())
    }

    #[test]
    fn answers_are_kept_per_call_up_to_their_bound() {
        let clock = Arc::new(ManualClock::at(1_000));
        let l = ledger(10, &clock);
        for i in 0..ANSWERS_PER_CALL + 2 {
            l.record(record("CA1", i));
        }
        l.record(record("CA2", 0));
        let kept = l.local_answers("CA1");
        assert_eq!(kept.len(), ANSWERS_PER_CALL);
        assert_eq!(
            kept[0].request_id, "r2",
            "the oldest answers of a call go first"
        );
        assert_eq!(l.local_answers("CA2").len(), 1);
        assert!(l.local_answers("CA3").is_empty());
    }

    #[test]
    fn calls_are_forgotten_oldest_first_at_the_bound_and_after_remember() {
        let clock = Arc::new(ManualClock::at(1_000));
        let l = ledger(2, &clock);
        l.record(record("CA1", 0));
        clock.set(1_001);
        l.record(record("CA2", 0));
        assert_eq!(
            l.local_answers("CA1").len(),
            1,
            "at the bound, nothing is forgotten"
        );
        clock.set(1_002);
        l.record(record("CA3", 0));
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
        l.record(record("CA2", 5));
        assert_eq!(l.local_answers("CA2")[0].request_id, "r5");
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
