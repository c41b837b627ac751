//! Tests of the PostgreSQL store against a real PostgreSQL: the same contract as the redb
//! store's tests, plus what only a shared store has (leases between instances, concurrent
//! migrations, a fleet-wide bound, a database that is not there).

use std::time::{Duration, Instant};

use super::testing::TestSchema;
use super::*;
use crate::buffer::{
    BufferedMessage, BufferedMeta, NewMessage, NotificationStore, StoreStats, Table,
};

const LEASE: Duration = Duration::from_secs(30);

fn message(received_at_ms: u64, next_attempt_at_ms: u64) -> NewMessage {
    NewMessage {
        route: "voice".to_owned(),
        upstream: "handler".to_owned(),
        received_at_ms,
        expires_at_ms: received_at_ms + 60_000,
        attempts: 1,
        next_attempt_at_ms,
        last_error: "connect refused".to_owned(),
        message_id: Some(format!("RU{received_at_ms}")),
        call_sid: Some("CA123".to_owned()),
    }
}

fn request(tag: u64) -> Vec<u8> {
    format!("POST /notify HTTP/1.1\r\nContent-Length: 2\r\n\r\n{{{tag}}}").into_bytes()
}

fn meta(msg: &NewMessage, id: u64) -> BufferedMeta {
    BufferedMeta {
        id,
        message: msg.clone(),
        dead_reason: None,
    }
}

fn ids(messages: &[BufferedMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.meta.id).collect()
}

/// A store ("instance") over its own pool.
fn instance(schema: &TestSchema, name: &str, max_messages: u64, lease: Duration) -> PostgresStore {
    PostgresStore::new(schema.pool(), max_messages, lease, name)
}

macro_rules! schema_or_skip {
    ($name:expr) => {
        match TestSchema::new($name).await {
            Some(schema) => schema,
            None => return,
        }
    };
}

#[tokio::test]
async fn insert_then_get_list_and_ids_increase() {
    let schema = schema_or_skip!("insert_get_list");
    let store = instance(&schema, "a", 10, LEASE);
    let msg = message(1_000, 2_000);
    let first = store.insert(msg.clone(), request(1)).await.unwrap();

    let (table, got) = store.get(first).await.unwrap().unwrap();
    assert_eq!(table, Table::Pending);
    assert_eq!(got.meta, meta(&msg, first));
    assert_eq!(got.request, request(1));
    assert_eq!(
        store.list(Table::Pending).await.unwrap(),
        vec![meta(&msg, first)]
    );
    assert!(store.list(Table::DeadLetter).await.unwrap().is_empty());
    assert_eq!(store.get(first + 1).await.unwrap(), None);

    // Deleting the newest must not let its id be handed out again, by any handle.
    let second = store.insert(message(2, 2), request(2)).await.unwrap();
    assert!(second > first);
    assert!(store.remove(Table::Pending, second).await.unwrap());
    let other = instance(&schema, "b", 10, LEASE);
    let third = other.insert(message(3, 3), request(3)).await.unwrap();
    assert!(third > second);
    // What operators read (`buffer show`) is the same JSON as redb's.
    let json = serde_json::to_value(&store.list(Table::Pending).await.unwrap()[0]).unwrap();
    assert_eq!(json["id"], first);
    assert_eq!(json["message_id"], "RU1000");
    assert_eq!(json["next_attempt_at_ms"], 2_000);
}

#[tokio::test]
async fn due_filters_by_time_takes_the_most_overdue_and_orders_by_id() {
    let schema = schema_or_skip!("due_filters");
    // A zero lease: each `due` below sees every message again, as with redb.
    let store = instance(&schema, "a", 10, Duration::ZERO);
    let a = store.insert(message(1, 300), request(1)).await.unwrap();
    let b = store.insert(message(2, 100), request(2)).await.unwrap();
    let c = store.insert(message(3, 200), request(3)).await.unwrap();
    let d = store.insert(message(4, 900), request(4)).await.unwrap();

    assert!(store.due(99, u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(ids(&store.due(100, u64::MAX, 10).await.unwrap()), vec![b]);
    assert_eq!(
        ids(&store.due(300, u64::MAX, 10).await.unwrap()),
        vec![a, b, c]
    );
    assert_eq!(ids(&store.due(300, u64::MAX, 2).await.unwrap()), vec![b, c]);
    assert_eq!(
        ids(&store.due(u64::MAX, u64::MAX, 10).await.unwrap()),
        vec![a, b, c, d]
    );
    assert!(store.due(u64::MAX, u64::MAX, 0).await.unwrap().is_empty());
    let due = store.due(100, u64::MAX, 10).await.unwrap();
    assert_eq!(due[0].request, request(2));
    assert_eq!(due[0].meta, meta(&message(2, 100), b));
}

#[tokio::test]
async fn reschedule_updates_meta_and_gives_the_lease_back() {
    let schema = schema_or_skip!("reschedule");
    let store = instance(&schema, "a", 10, LEASE);
    let id = store.insert(message(1, 100), request(1)).await.unwrap();
    assert_eq!(ids(&store.due(100, u64::MAX, 10).await.unwrap()), vec![id]);
    assert!(
        store.due(100, u64::MAX, 10).await.unwrap().is_empty(),
        "leased"
    );

    assert!(store
        .reschedule(id, 2, 500, "503 from handler".into())
        .await
        .unwrap());
    assert!(store.due(499, u64::MAX, 10).await.unwrap().is_empty());
    let due = store.due(500, u64::MAX, 10).await.unwrap();
    assert_eq!(ids(&due), vec![id], "rescheduled: no lease left");
    assert_eq!(due[0].meta.message.attempts, 2);
    assert_eq!(due[0].meta.message.next_attempt_at_ms, 500);
    assert_eq!(due[0].meta.message.last_error, "503 from handler");
    assert_eq!(due[0].request, request(1));

    assert!(!store.reschedule(id + 1, 2, 500, "x".into()).await.unwrap());
    assert!(store.remove(Table::Pending, id).await.unwrap());
    assert!(!store.reschedule(id, 3, 600, "x".into()).await.unwrap());
}

#[tokio::test]
async fn move_to_dead_letter_keeps_reason_bytes_and_metadata_and_stats_follow() {
    let schema = schema_or_skip!("dead_letter");
    let store = instance(&schema, "a", 10, LEASE);
    assert_eq!(store.stats().await.unwrap(), StoreStats::default());
    let a = store.insert(message(1_000, 1), request(1)).await.unwrap();
    let b = store.insert(message(2_000, 1), request(2)).await.unwrap();
    assert_eq!(
        store.stats().await.unwrap(),
        StoreStats {
            pending: 2,
            dead: 0,
            oldest_pending_received_at_ms: Some(1_000),
        }
    );

    assert!(store
        .move_to_dead_letter(a, "expired".into())
        .await
        .unwrap()
        .is_some());
    assert!(store
        .move_to_dead_letter(a, "expired".into())
        .await
        .unwrap()
        .is_none());
    let dead = store.list(Table::DeadLetter).await.unwrap();
    let mut expected = meta(&message(1_000, 1), a);
    expected.dead_reason = Some("expired".into());
    assert_eq!(dead, vec![expected.clone()]);
    let (table, got) = store.get(a).await.unwrap().unwrap();
    assert_eq!(table, Table::DeadLetter);
    assert_eq!(got.meta, expected);
    assert_eq!(got.request, request(1));
    assert_eq!(
        ids(&store.due(u64::MAX, u64::MAX, 10).await.unwrap()),
        vec![b]
    );
    // Seen from another instance: the counts are the fleet's.
    let other = instance(&schema, "b", 10, LEASE);
    assert_eq!(
        other.stats().await.unwrap(),
        StoreStats {
            pending: 1,
            dead: 1,
            oldest_pending_received_at_ms: Some(2_000),
        }
    );
}

#[tokio::test]
async fn requeue_dead_makes_it_due_now_and_purge_respects_the_cutoff() {
    let schema = schema_or_skip!("requeue_purge");
    let store = instance(&schema, "a", 10, LEASE);
    let id = store
        .insert(message(1_000, 5_000), request(1))
        .await
        .unwrap();
    store
        .reschedule(id, 4, 9_000, "timeout".into())
        .await
        .unwrap();
    store
        .move_to_dead_letter(id, "expired".into())
        .await
        .unwrap();

    assert!(store.requeue_dead(id, 70_000, 30_000).await.unwrap());
    assert!(!store.requeue_dead(id, 70_000, 30_000).await.unwrap());
    let (table, got) = store.get(id).await.unwrap().unwrap();
    assert_eq!(table, Table::Pending);
    assert_eq!(got.meta.message.attempts, 4);
    assert_eq!(got.meta.dead_reason, None);
    assert_eq!(got.meta.message.next_attempt_at_ms, 70_000);
    assert_eq!(got.meta.message.expires_at_ms, 100_000);
    assert_eq!(got.meta.message.received_at_ms, 1_000);
    assert_eq!(got.request, request(1));
    assert_eq!(
        ids(&store.due(70_000, u64::MAX, 10).await.unwrap()),
        vec![id]
    );

    let mut dead = Vec::new();
    for received in [1_000, 2_000, 3_000] {
        let id = store
            .insert(message(received, 1), request(received))
            .await
            .unwrap();
        store
            .move_to_dead_letter(id, "expired".into())
            .await
            .unwrap();
        dead.push(id);
    }
    assert_eq!(store.purge_dead(Some(1_000)).await.unwrap(), 0);
    assert_eq!(store.purge_dead(Some(2_500)).await.unwrap(), 2);
    let left: Vec<u64> = store
        .list(Table::DeadLetter)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, vec![dead[2]]);
    assert_eq!(store.purge_dead(None).await.unwrap(), 1);
    assert_eq!(store.purge_dead(None).await.unwrap(), 0);
    // Pending messages are never purged.
    assert!(store.get(id).await.unwrap().is_some());
}

#[tokio::test]
async fn remove_from_either_table() {
    let schema = schema_or_skip!("remove");
    let store = instance(&schema, "a", 10, LEASE);
    let a = store.insert(message(1, 1), request(1)).await.unwrap();
    let b = store.insert(message(2, 1), request(2)).await.unwrap();
    store
        .move_to_dead_letter(b, "expired".into())
        .await
        .unwrap();

    assert!(!store.remove(Table::DeadLetter, a).await.unwrap());
    assert!(store.remove(Table::Pending, a).await.unwrap());
    assert!(!store.remove(Table::Pending, a).await.unwrap());
    assert!(!store.remove(Table::Pending, b).await.unwrap());
    assert!(store.remove(Table::DeadLetter, b).await.unwrap());
    assert_eq!(store.get(b).await.unwrap(), None);
    assert_eq!(store.stats().await.unwrap(), StoreStats::default());
}

#[tokio::test]
async fn full_refuses_inserts_until_one_leaves() {
    let schema = schema_or_skip!("full");
    let store = instance(&schema, "a", 2, LEASE);
    let a = store.insert(message(1, 1), request(1)).await.unwrap();
    store.insert(message(2, 1), request(2)).await.unwrap();
    let err = store.insert(message(3, 1), request(3)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Full { max_messages: 2 }),
        "{err:?}"
    );
    assert_eq!(store.stats().await.unwrap().pending, 2);

    assert!(store.remove(Table::Pending, a).await.unwrap());
    store.insert(message(3, 1), request(3)).await.unwrap();
    // The dead letter table does not count against the bound.
    store
        .move_to_dead_letter(a + 1, "expired".into())
        .await
        .unwrap();
    store.insert(message(4, 1), request(4)).await.unwrap();
    assert_eq!(store.stats().await.unwrap().pending, 2);
}

#[tokio::test]
async fn the_bound_holds_across_instances_inserting_at_once() {
    let schema = schema_or_skip!("full_fleet");
    let a = instance(&schema, "a", 50, LEASE);
    let b = instance(&schema, "b", 50, LEASE);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..120u64 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { store.insert(message(i, 1), request(i)).await });
    }
    let (mut stored, mut full) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(_) => stored += 1,
            Err(StoreError::Full { .. }) => full += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((stored, full), (50, 70));
    assert_eq!(a.stats().await.unwrap().pending, 50);
}

#[tokio::test]
async fn concurrent_inserts_each_get_their_own_committed_row() {
    let schema = schema_or_skip!("batch");
    let store = instance(&schema, "a", 10_000, LEASE);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300u64 {
        let store = store.clone();
        tasks.spawn(async move { (i, store.insert(message(i, i), request(i)).await.unwrap()) });
    }
    let mut seen = std::collections::HashSet::new();
    // Read back through another pool: committed, and each id holds its own caller's message.
    let reader = instance(&schema, "reader", 10_000, LEASE);
    while let Some(done) = tasks.join_next().await {
        let (i, id) = done.unwrap();
        assert!(seen.insert(id), "id {id} handed out twice");
        let (_, got) = reader.get(id).await.unwrap().unwrap();
        assert_eq!(got.request, request(i));
        assert_eq!(got.meta.message.received_at_ms, i);
    }
    assert_eq!(reader.stats().await.unwrap().pending, 300);
}

#[tokio::test]
async fn binary_requests_and_nul_characters_round_trip() {
    let schema = schema_or_skip!("binary");
    let store = instance(&schema, "a", 10, LEASE);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut msg = message(1, 1);
    // PostgreSQL text refuses NUL; a notification's fields can carry one.
    msg.message_id = Some("RU\0evil".into());
    msg.last_error = "bad\0error".into();
    let id = store.insert(msg, bytes.clone()).await.unwrap();
    let (_, got) = store.get(id).await.unwrap().unwrap();
    assert_eq!(got.request, bytes, "request bytes are exact");
    assert_eq!(
        got.meta.message.message_id.as_deref(),
        Some("RU\u{FFFD}evil")
    );
    assert!(store
        .move_to_dead_letter(id, "why\0".into())
        .await
        .unwrap()
        .is_some());
    assert!(store.reschedule(id, 1, 1, "x\0".into()).await.is_ok());
}

#[tokio::test]
async fn a_lease_keeps_other_instances_off_until_it_runs_out() {
    let schema = schema_or_skip!("lease");
    let a = instance(&schema, "a", 100, Duration::from_millis(800));
    let b = instance(&schema, "b", 100, Duration::from_secs(30));
    let mut inserted = Vec::new();
    for i in 0..10 {
        inserted.push(a.insert(message(i, 1), request(i)).await.unwrap());
    }
    // Both instances ask at once: every message goes to exactly one of them.
    let (from_a, from_b) = tokio::join!(a.due(u64::MAX, u64::MAX, 6), b.due(u64::MAX, u64::MAX, 6));
    let (from_a, from_b) = (ids(&from_a.unwrap()), ids(&from_b.unwrap()));
    let mut all: Vec<u64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort_unstable();
    assert_eq!(all, inserted, "a: {from_a:?} b: {from_b:?}");
    assert!(a.due(u64::MAX, u64::MAX, 10).await.unwrap().is_empty());
    assert!(b.due(u64::MAX, u64::MAX, 10).await.unwrap().is_empty());

    // A "dies" holding its claims: B takes them once A's lease has run out, not before.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let taken = ids(&b.due(u64::MAX, u64::MAX, 10).await.unwrap());
    assert_eq!(taken, from_a);
    assert_eq!(b.lease_takeovers(), from_a.len() as u64);
    assert!(
        a.due(u64::MAX, u64::MAX, 10).await.unwrap().is_empty(),
        "B's lease holds"
    );

    // At shutdown an instance gives its leases back at once.
    assert_eq!(b.release_claims().await.unwrap(), 10);
    assert_eq!(ids(&a.due(u64::MAX, u64::MAX, 10).await.unwrap()), inserted);
}

#[tokio::test]
async fn instances_migrating_at_once_apply_each_migration_once() {
    let schema = schema_or_skip!("migrate");
    let pools: Vec<PgPool> = (0..6).map(|_| schema.pool()).collect();
    let handles: Vec<_> = pools
        .iter()
        .map(|pool| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.migrate().await })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap().unwrap();
    }
    let (client, connection) = tokio_postgres::connect(&testing::url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            &format!(
                "SELECT version FROM {}.schema_migrations ORDER BY version",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, (1..=schema::LATEST).collect::<Vec<_>>());
    // And the store works on it.
    let store = PostgresStore::new(pools[3].clone(), 10, LEASE, "a");
    store.insert(message(1, 1), request(1)).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_fails_promptly_and_never_shows_the_password() {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PgOptions {
        url: format!("postgres://proxy:s3cr3t-pw@127.0.0.1:{port}/test"),
        schema: "nowhere".into(),
        pool_size: 2,
        call_timeout: Duration::from_secs(2),
    };
    let pool = PgPool::new(&options).unwrap();
    let store = PostgresStore::new(pool, 10, LEASE, "a");
    let started = Instant::now();
    let err = store.insert(message(1, 1), request(1)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let shown = format!("{err} {err:?} {store:?} {options:?} {}", store.location());
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    let err = store.due(1, u64::MAX, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");

    // A URL that does not parse is reported without its text.
    let bad = PgOptions {
        url: "postgres://proxy:s3cr3t-pw@127.0.0.1:notaport/test".into(),
        ..options.clone()
    };
    let err = PgPool::new(&bad).unwrap_err().to_string();
    assert!(
        !err.contains("s3cr3t") && err.contains("does not parse"),
        "{err}"
    );
    // A schema name is spliced into SQL: only plain identifiers pass.
    let injected = PgOptions {
        schema: "x; DROP TABLE y".into(),
        ..options
    };
    assert!(matches!(
        PgPool::new(&injected),
        Err(StoreError::Config { .. })
    ));
}

#[tokio::test]
async fn a_hung_database_is_cut_off_by_the_call_timeout() {
    // Accepts connections and never answers: what a frozen server or a black-holed route
    // looks like from here.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let pool = PgPool::new(&PgOptions {
        url: format!("postgres://postgres@127.0.0.1:{port}/test"),
        schema: "hung".into(),
        pool_size: 2,
        call_timeout: Duration::from_millis(700),
    })
    .unwrap();
    let store = PostgresStore::new(pool, 10, LEASE, "a");
    let started = Instant::now();
    let err = store.stats().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let started = Instant::now();
    assert!(store.insert(message(1, 1), request(1)).await.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    hold.abort();
}

#[tokio::test]
async fn the_dead_letter_cap_evicts_the_oldest_and_a_far_schedule_is_due() {
    let schema = schema_or_skip!("dead_cap");
    let store = instance(&schema, "a", 10, LEASE).with_max_dead_letters(2);
    let mut ids_in = Vec::new();
    for i in 0..3 {
        ids_in.push(store.insert(message(i, 1), request(i)).await.unwrap());
    }
    let mut evicted = 0;
    for id in &ids_in {
        let moved = store
            .move_to_dead_letter(*id, "expired".into())
            .await
            .unwrap();
        evicted += moved.expect("was pending").evicted;
    }
    assert_eq!(evicted, 1, "one beyond the cap of 2");
    let dead: Vec<u64> = store
        .list(Table::DeadLetter)
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(dead, ids_in[1..].to_vec(), "the oldest went first");

    // A schedule far beyond now + horizon (a clock step back) is due anyway.
    let far = store
        .insert(message(9, 1_000_000), request(9))
        .await
        .unwrap();
    assert_eq!(ids(&store.due(10, 1_000, 10).await.unwrap()), vec![far]);
}
