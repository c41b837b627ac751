//! Tests of the PostgreSQL store against a real PostgreSQL: the same contract as the redb
//! store's tests, plus what only a shared store has (leases between instances, concurrent
//! migrations, a fleet-wide bound, a database that is not there).

use std::time::{Duration, Instant};

use super::testing::TestSchema;
use super::*;
use crate::buffer::fixtures::{ids, message, request};
use crate::buffer::{BufferedMeta, NewMessage, NotificationStore, StoreStats, Table};

const LEASE: Duration = Duration::from_secs(30);

fn meta(msg: &NewMessage, id: u64) -> BufferedMeta {
    BufferedMeta {
        id,
        message: msg.clone(),
        dead_reason: None,
    }
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

    assert!(store.due(99, u64::MAX, 10, &[]).await.unwrap().is_empty());
    assert_eq!(
        ids(&store.due(100, u64::MAX, 10, &[]).await.unwrap()),
        vec![b]
    );
    assert_eq!(
        ids(&store.due(300, u64::MAX, 10, &[]).await.unwrap()),
        vec![a, b, c]
    );
    assert_eq!(
        ids(&store.due(300, u64::MAX, 2, &[]).await.unwrap()),
        vec![b, c]
    );
    assert_eq!(
        ids(&store.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap()),
        vec![a, b, c, d]
    );
    assert!(store
        .due(u64::MAX, u64::MAX, 0, &[])
        .await
        .unwrap()
        .is_empty());
    let due = store.due(100, u64::MAX, 10, &[]).await.unwrap();
    assert_eq!(due[0].request, request(2));
    assert_eq!(due[0].meta, meta(&message(2, 100), b));
}

#[tokio::test]
async fn reschedule_updates_meta_and_gives_the_lease_back() {
    let schema = schema_or_skip!("reschedule");
    let store = instance(&schema, "a", 10, LEASE);
    let id = store.insert(message(1, 100), request(1)).await.unwrap();
    assert_eq!(
        ids(&store.due(100, u64::MAX, 10, &[]).await.unwrap()),
        vec![id]
    );
    assert!(
        store.due(100, u64::MAX, 10, &[]).await.unwrap().is_empty(),
        "leased"
    );

    assert!(store
        .reschedule(id, 2, 500, "503 from handler".into())
        .await
        .unwrap());
    assert!(store.due(499, u64::MAX, 10, &[]).await.unwrap().is_empty());
    let due = store.due(500, u64::MAX, 10, &[]).await.unwrap();
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
        ids(&store.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap()),
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
        ids(&store.due(70_000, u64::MAX, 10, &[]).await.unwrap()),
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

mod fleet;
