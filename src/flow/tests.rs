//! Unit tests of the request flow with a fake handler and a fake store: no sockets, no disk.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use tokio::sync::Semaphore;

use super::*;
use crate::buffer::fixtures::{Script, Scripted};
use crate::buffer::{NewMessage, StoreError};
use crate::config::{BodyKind, Route, SchemaMode};
use crate::dedupe::DedupeCache;
use crate::delivery::{Answer, Deliver, DeliveryError, Failure, UpstreamAnswer};
use crate::metrics::Metrics;
use crate::policy::RetryPolicy;

const PEER: &str = "127.0.0.1:9";

fn answer(status: u16) -> Delivery {
    Delivery::Answered {
        answer: UpstreamAnswer {
            answer: Answer {
                status,
                raw_head: Bytes::from(format!("HTTP/1.1 {status} X\r\n\r\n")),
                body: Bytes::from_static(b"{}"),
                reusable: true,
            },
            peer: PEER.parse().unwrap(),
        },
        attempts: 1,
    }
}

fn timed_out(attempts: u32) -> Delivery {
    Delivery::Exhausted {
        last: Failure::Error(DeliveryError::Timeout {
            peer: PEER.parse::<SocketAddr>().unwrap(),
            after: Duration::from_secs(1),
        }),
        attempts,
    }
}

fn circuit_open() -> Delivery {
    Delivery::Exhausted {
        last: Failure::CircuitOpen,
        attempts: 0,
    }
}

mod fakes;
use fakes::{FakeStore, Inserts, ScriptedHandler};

fn live_route(handler: Arc<dyn Deliver>, on_exhausted: OnExhausted) -> LiveRoute {
    LiveRoute {
        route: Route {
            name: "notify".into(),
            path: "/notify".into(),
            public_url: None,
            allowed_hosts: vec!["voice.example.com".into()],
            upstream: 0,
            body: BodyKind::Json,
            schema: None,
            schema_mode: SchemaMode::Enforce,
            retry: RetryPolicy::default(),
            on_exhausted,
        },
        metrics: Metrics::new().route("notify"),
        upstream: handler,
    }
}

const BUFFER_202: OnExhausted = OnExhausted::Buffer {
    ttl: Duration::from_secs(60),
    status: StatusCode::ACCEPTED,
};

fn flow(store: Option<Arc<Scripted<FakeStore>>>) -> (Flow, Arc<AtomicBool>) {
    let writable = Arc::new(AtomicBool::new(true));
    let dedupe = DedupeSetup {
        key: DedupeKey::Auto,
        claims: Arc::new(DedupeCache::new(100, Duration::from_secs(60))),
    };
    let store = store.map(|s| s as Arc<dyn NotificationStore>);
    (Flow::new(Some(dedupe), store, writable.clone()), writable)
}

fn accepted(message_id: &str) -> Accepted {
    Accepted {
        request: b"POST /notify HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        call_sid: Some("CA1".into()),
        message_id: Some(message_id.into()),
        idempotency_token: Some(format!("token-{message_id}")),
        request_id: crate::logging::request_id(),
    }
}

fn json(ending: &Ending) -> serde_json::Value {
    match &ending.reply {
        Reply::Made { body, .. } => serde_json::from_slice(body).unwrap(),
        Reply::Forwarded(answer) => serde_json::from_slice(&answer.body).unwrap(),
    }
}

#[tokio::test]
async fn a_duplicate_of_a_delivered_notification_is_answered_without_delivery() {
    let handler = ScriptedHandler::new(vec![answer(200)]);
    let route = live_route(handler.clone(), OnExhausted::Fail);
    let (flow, _) = flow(None);
    let first = flow.run(&route, accepted("m1"), Instant::now()).await;
    assert_eq!(first.outcome, Outcome::Forwarded2xx);
    let again = flow.run(&route, accepted("m1"), Instant::now()).await;
    assert_eq!(again.outcome, Outcome::Duplicate);
    assert_eq!(again.status(), 200);
    assert_eq!(json(&again)["original"], "delivered");
    assert_eq!(handler.calls(), 1);
    assert_eq!(route.metrics.duplicate_of_delivered.get(), 1);
}

#[tokio::test]
async fn a_duplicate_of_a_buffered_notification_gets_the_buffered_answer() {
    let handler = ScriptedHandler::new(vec![timed_out(3)]);
    let route = live_route(handler.clone(), BUFFER_202);
    let store = FakeStore::new(Inserts::Succeed);
    let (flow, _) = flow(Some(store.clone()));
    let first = flow.run(&route, accepted("m1"), Instant::now()).await;
    assert_eq!(first.outcome, Outcome::Buffered);
    assert_eq!(first.status(), 202);
    assert_eq!(json(&first)["buffered"], true);
    let again = flow.run(&route, accepted("m1"), Instant::now()).await;
    assert_eq!(again.outcome, Outcome::Duplicate);
    assert_eq!(again.status(), 202);
    assert_eq!(json(&again)["original"], "buffered");
    assert_eq!(store.inserts.lock().unwrap().len(), 1);
    assert_eq!(handler.calls(), 1);
}

#[tokio::test]
async fn policy_fail_answers_the_failure_and_buffer_stores_it() {
    let failing = live_route(ScriptedHandler::new(vec![timed_out(3)]), OnExhausted::Fail);
    let (flow_without_store, _) = flow(None);
    let failed = flow_without_store
        .run(&failing, accepted("m1"), Instant::now())
        .await;
    assert_eq!(failed.outcome, Outcome::UpstreamTimeout);
    assert_eq!(failed.status(), 504);
    assert_eq!(json(&failed)["error"], "upstream_timeout");
    assert_eq!(failed.attempts, 3);

    let store = FakeStore::new(Inserts::Succeed);
    let buffering = live_route(ScriptedHandler::new(vec![timed_out(3)]), BUFFER_202);
    let (flow, _) = flow(Some(store.clone()));
    let buffered = flow.run(&buffering, accepted("m2"), Instant::now()).await;
    assert_eq!(buffered.outcome, Outcome::Buffered);
    let stored = store.inserts.lock().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].attempts, 3);
    assert_eq!(stored[0].message_id.as_deref(), Some("m2"));
    assert_eq!(stored[0].upstream, "handler");
}

#[tokio::test]
async fn a_full_store_answers_503_and_stays_writable() {
    let route = live_route(ScriptedHandler::new(vec![timed_out(1)]), BUFFER_202);
    let (flow, writable) = flow(Some(FakeStore::new(Inserts::Full)));
    let ending = flow.run(&route, accepted("m1"), Instant::now()).await;
    assert_eq!(ending.outcome, Outcome::BufferFailed);
    assert_eq!(ending.status(), 503);
    assert_eq!(json(&ending)["error"], "buffer_failed");
    assert!(writable.load(Ordering::Relaxed), "full is not broken");
}

#[tokio::test]
async fn a_store_that_cannot_write_answers_503_and_reports_unwritable() {
    let route = live_route(
        ScriptedHandler::new(vec![timed_out(1), timed_out(1)]),
        BUFFER_202,
    );
    let (flow, writable) = flow(Some(FakeStore::new(Inserts::Broken)));
    let ending = flow.run(&route, accepted("m1"), Instant::now()).await;
    assert_eq!(ending.outcome, Outcome::BufferFailed);
    assert_eq!(ending.status(), 503);
    assert_eq!(json(&ending)["error"], "buffer_failed");
    assert!(!writable.load(Ordering::Relaxed), "/readyz must see it");
    // Not claimed: Twilio's retry is delivered (and buffered) again.
    let retry = flow.run(&route, accepted("m1"), Instant::now()).await;
    assert_eq!(retry.outcome, Outcome::BufferFailed);
}

#[tokio::test]
async fn an_open_circuit_fails_with_503_or_buffers() {
    let failing = live_route(
        ScriptedHandler::new(vec![circuit_open()]),
        OnExhausted::Fail,
    );
    let (flow_without_store, _) = flow(None);
    let ending = flow_without_store
        .run(&failing, accepted("m1"), Instant::now())
        .await;
    assert_eq!(ending.outcome, Outcome::UpstreamUnreachable);
    assert_eq!(ending.status(), 503);
    assert_eq!(ending.attempts, 0);

    let buffering = live_route(ScriptedHandler::new(vec![circuit_open()]), BUFFER_202);
    let (flow, _) = flow(Some(FakeStore::new(Inserts::Succeed)));
    let ending = flow.run(&buffering, accepted("m2"), Instant::now()).await;
    assert_eq!(ending.outcome, Outcome::Buffered);
}

#[tokio::test]
async fn the_buffered_answer_exists_only_after_the_store_committed() {
    let route = live_route(ScriptedHandler::new(vec![timed_out(1)]), BUFFER_202);
    let store = FakeStore::new(Inserts::Gated);
    let (flow, _) = flow(Some(store.clone()));
    let flow = Arc::new(flow);
    let route = Arc::new(route);
    let run = {
        let (flow, route) = (flow.clone(), route.clone());
        tokio::spawn(async move { flow.run(&route, accepted("m1"), Instant::now()).await })
    };
    // However long the commit takes, no answer exists before it returns.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!run.is_finished(), "answered before the store committed");
    assert!(!store.committed.load(Ordering::SeqCst));
    store.gate.add_permits(1);
    let ending = run.await.unwrap();
    assert!(store.committed.load(Ordering::SeqCst));
    assert_eq!(ending.outcome, Outcome::Buffered);
}

#[tokio::test]
async fn a_repeat_after_a_failure_is_delivered_again() {
    // 502 (policy fail), 404 and a 5xx passed through: none of them settles the claim.
    let handler = ScriptedHandler::new(vec![
        timed_out(1),
        answer(404),
        answer(501),
        answer(200),
        answer(200),
    ]);
    let route = live_route(handler.clone(), OnExhausted::Fail);
    let (flow, _) = flow(None);
    let outcomes: Vec<Outcome> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(
                flow.run(&route, accepted("m1"), Instant::now())
                    .await
                    .outcome,
            );
        }
        v
    };
    assert_eq!(
        outcomes,
        [
            Outcome::UpstreamTimeout,
            Outcome::NoBinding,
            Outcome::Upstream5xx,
            Outcome::Forwarded2xx,
            Outcome::Duplicate
        ]
    );
    assert_eq!(handler.calls(), 4);
}

#[tokio::test]
async fn two_copies_in_flight_are_delivered_once() {
    let handler = ScriptedHandler::gated(vec![answer(200)]);
    let route = Arc::new(live_route(handler.clone(), OnExhausted::Fail));
    let (flow, _) = flow(None);
    let flow = Arc::new(flow);
    let copy = |route: Arc<LiveRoute>, flow: Arc<Flow>| {
        tokio::spawn(async move { flow.run(&route, accepted("m1"), Instant::now()).await })
    };
    let first = copy(route.clone(), flow.clone());
    while handler.calls() == 0 {
        tokio::task::yield_now().await;
    }
    let second = copy(route.clone(), flow.clone());
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!second.is_finished(), "the copy waits for the first");
    handler.gate.as_ref().unwrap().add_permits(1);
    assert_eq!(first.await.unwrap().outcome, Outcome::Forwarded2xx);
    assert_eq!(second.await.unwrap().outcome, Outcome::Duplicate);
    assert_eq!(handler.calls(), 1);
}

#[tokio::test]
async fn without_dedupe_every_copy_is_delivered() {
    let handler = ScriptedHandler::new(vec![answer(200), answer(200)]);
    let route = live_route(handler.clone(), OnExhausted::Fail);
    let flow = Flow::new(None, None, Arc::new(AtomicBool::new(true)));
    for _ in 0..2 {
        let ending = flow.run(&route, accepted("m1"), Instant::now()).await;
        assert_eq!(ending.outcome, Outcome::Forwarded2xx);
    }
    assert_eq!(handler.calls(), 2);
}

#[test]
fn dedupe_key_selects_the_identities() {
    let a = accepted("m1");
    let only_token = Flow::identities(DedupeKey::IdempotencyToken, &a);
    assert_eq!(only_token.message_id, None);
    assert_eq!(only_token.token, Some("token-m1"));
    let only_message = Flow::identities(DedupeKey::MessageId, &a);
    assert_eq!(only_message.token, None);
    let empty = Accepted {
        idempotency_token: Some(String::new()),
        message_id: Some(String::new()),
        ..a
    };
    assert!(Flow::identities(DedupeKey::Auto, &empty).is_empty());
}

/// Regression (issue 12, item 10): the TTL started when the message was buffered, after the
/// live attempts, not at arrival as docs/config.md says; and it read the wall clock.
#[tokio::test]
async fn a_buffered_message_expires_a_ttl_after_arrival_on_the_injected_clock() {
    let store = FakeStore::new(Inserts::Succeed);
    let buffering = live_route(ScriptedHandler::new(vec![timed_out(3)]), BUFFER_202);
    let (flow, _) = flow(Some(store.clone()));
    let clock = Arc::new(crate::clock::ManualClock::at(1_000_000));
    let flow = flow.with_clock(clock);
    // The live attempts took 5 s.
    let arrived = Instant::now() - Duration::from_secs(5);
    let ending = flow.run(&buffering, accepted("m-ttl"), arrived).await;
    assert_eq!(ending.outcome, Outcome::Buffered);
    let stored = store.inserts.lock().unwrap();
    let received = stored[0].received_at_ms;
    assert!(
        (994_000..=995_000).contains(&received),
        "received at {received}, not at arrival"
    );
    assert_eq!(stored[0].expires_at_ms, received + 60_000);
    assert_eq!(stored[0].next_attempt_at_ms, 1_000_000);
}
