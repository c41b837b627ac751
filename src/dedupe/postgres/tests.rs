//! Tests of the shared dedupe against a real PostgreSQL: two handles with pools of their own
//! stand for two instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::buffer::postgres::testing::TestSchema;
use crate::buffer::PgOptions;

const TTL: Duration = Duration::from_secs(60);
const NO_WAIT: Duration = Duration::ZERO;

fn ids(token: &str) -> Identities<'_> {
    Identities {
        token: Some(token),
        message_id: None,
    }
}

macro_rules! schema_or_skip {
    ($name:expr) => {
        match TestSchema::new($name).await {
            Some(schema) => schema,
            None => return,
        }
    };
}

/// Two "instances" on one schema.
fn pair(schema: &TestSchema, ttl: Duration) -> (Arc<PostgresDedupe>, Arc<PostgresDedupe>) {
    (
        Arc::new(PostgresDedupe::new(schema.pool(), ttl)),
        Arc::new(PostgresDedupe::new(schema.pool(), ttl)),
    )
}

#[tokio::test]
async fn a_settled_claim_is_a_duplicate_on_the_other_instance_until_ttl() {
    let schema = schema_or_skip!("dedupe_sequential");
    let (a, b) = pair(&schema, Duration::from_millis(600));
    assert_eq!(a.claim(&ids("t1"), NO_WAIT).await.unwrap(), Claim::Won);
    a.settle(&ids("t1"), Seen::Delivered).await;
    assert_eq!(
        b.claim(&ids("t1"), NO_WAIT).await.unwrap(),
        Claim::Duplicate(Seen::Delivered)
    );
    assert_eq!(b.claim(&ids("t2"), NO_WAIT).await.unwrap(), Claim::Won);
    b.settle(&ids("t2"), Seen::Buffered).await;
    assert_eq!(
        a.claim(&ids("t2"), NO_WAIT).await.unwrap(),
        Claim::Duplicate(Seen::Buffered)
    );
    // A token and a message id with the same text are different identities.
    let message = Identities {
        token: None,
        message_id: Some("t1"),
    };
    assert_eq!(a.claim(&message, NO_WAIT).await.unwrap(), Claim::Won);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        b.claim(&ids("t1"), NO_WAIT).await.unwrap(),
        Claim::Won,
        "expired"
    );
    assert_eq!(a.failures() + b.failures(), 0);
}

#[tokio::test]
async fn any_matching_identity_is_a_duplicate() {
    let schema = schema_or_skip!("dedupe_any_identity");
    let (a, b) = pair(&schema, TTL);
    let both = Identities {
        token: Some("t1"),
        message_id: Some("m1"),
    };
    assert_eq!(a.claim(&both, NO_WAIT).await.unwrap(), Claim::Won);
    a.settle(&both, Seen::Delivered).await;
    // A replay with a fresh token but the same (signed) message id.
    let replay = Identities {
        token: Some("t2"),
        message_id: Some("m1"),
    };
    assert_eq!(
        b.claim(&replay, NO_WAIT).await.unwrap(),
        Claim::Duplicate(Seen::Delivered)
    );
    // The refused claim left nothing behind: t2 alone is free.
    assert_eq!(b.claim(&ids("t2"), NO_WAIT).await.unwrap(), Claim::Won);
}

#[tokio::test]
async fn concurrent_copies_on_two_instances_deliver_once() {
    let schema = schema_or_skip!("dedupe_concurrent");
    let (a, b) = pair(&schema, TTL);
    let mut copies = tokio::task::JoinSet::new();
    for i in 0..16 {
        let dedupe = if i % 2 == 0 { a.clone() } else { b.clone() };
        copies.spawn(async move {
            let claim = dedupe
                .claim(&ids("same"), Duration::from_secs(5))
                .await
                .unwrap();
            if claim == Claim::Won {
                // The delivery takes a while; the other copies wait for its end.
                tokio::time::sleep(Duration::from_millis(200)).await;
                dedupe.settle(&ids("same"), Seen::Delivered).await;
            }
            claim
        });
    }
    let mut claims = Vec::new();
    while let Some(done) = copies.join_next().await {
        claims.push(done.unwrap());
    }
    let won = claims.iter().filter(|c| **c == Claim::Won).count();
    assert_eq!(won, 1, "{claims:?}");
    assert!(
        claims
            .iter()
            .all(|c| matches!(c, Claim::Won | Claim::Duplicate(Seen::Delivered))),
        "{claims:?}"
    );
}

#[tokio::test]
async fn a_release_lets_the_waiting_copy_deliver() {
    let schema = schema_or_skip!("dedupe_release");
    let (a, b) = pair(&schema, TTL);
    assert_eq!(a.claim(&ids("r"), NO_WAIT).await.unwrap(), Claim::Won);
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (b.claim(&ids("r"), Duration::from_secs(5)).await, started)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the copy waits while the first is in flight"
    );
    a.release(&ids("r")).await;
    let (claim, started) = waiter.await.unwrap();
    assert_eq!(claim.unwrap(), Claim::Won);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Released, then claimed again by b: a third copy waits for b now.
    assert_eq!(
        a.claim(&ids("r"), Duration::from_millis(100))
            .await
            .unwrap(),
        Claim::Won,
        "taken over after its short wait"
    );
}

#[tokio::test]
async fn a_claim_that_never_ends_is_taken_over_after_the_wait() {
    let schema = schema_or_skip!("dedupe_takeover");
    let (a, b) = pair(&schema, TTL);
    assert_eq!(a.claim(&ids("x"), NO_WAIT).await.unwrap(), Claim::Won);
    let started = Instant::now();
    assert_eq!(
        b.claim(&ids("x"), Duration::from_millis(500))
            .await
            .unwrap(),
        Claim::Won
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // A settled claim is never taken over, however long the wait.
    b.settle(&ids("x"), Seen::Delivered).await;
    assert_eq!(
        a.claim(&ids("x"), Duration::from_millis(100))
            .await
            .unwrap(),
        Claim::Duplicate(Seen::Delivered)
    );
}

#[tokio::test]
async fn an_unreachable_store_is_an_error_not_a_hang_and_settle_counts_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pool = PgPool::new(&PgOptions {
        url: format!("postgres://proxy:hunter2@127.0.0.1:{port}/test"),
        schema: "nowhere".into(),
        pool_size: 1,
        call_timeout: Duration::from_secs(2),
    })
    .unwrap();
    let dedupe = PostgresDedupe::new(pool, TTL);
    let started = Instant::now();
    let err = dedupe
        .claim(&ids("t"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(dedupe.degraded(), "a failed claim shows as degraded");
    // Backing off: the next claim skips the store at once; settle and release still try it (a
    // claim taken before the failure must not stay in flight), fail fast here, and count.
    let again = Instant::now();
    dedupe
        .claim(&ids("t"), Duration::from_secs(5))
        .await
        .unwrap_err();
    dedupe.settle(&ids("t"), Seen::Delivered).await;
    dedupe.release(&ids("t")).await;
    assert!(
        again.elapsed() < Duration::from_millis(100),
        "{:?}",
        again.elapsed()
    );
    assert_eq!(dedupe.failures(), 4);
}

#[test]
fn fingerprints_are_the_same_everywhere_and_keep_kinds_apart() {
    // SHA-256("token\0abc"): a fixed value, so every instance and every build agrees.
    assert_eq!(
        fingerprint("token", "abc"),
        Sha256::digest(b"token\0abc").to_vec()
    );
    assert_ne!(fingerprint("token", "abc"), fingerprint("message", "abc"));
    assert_ne!(fingerprint("token", "a"), fingerprint("tokena", ""));
    let long = "x".repeat(100_000);
    assert_eq!(fingerprint("token", &long).len(), 32);
}
