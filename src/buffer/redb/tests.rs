//! Unit tests of the redb store: durability contract, ids, schedule, tables, locking.

use super::*;
use crate::buffer::fixtures::{ids, message, request};

fn open(dir: &tempfile::TempDir, max_messages: u64) -> RedbStore {
    RedbStore::open(&dir.path().join("buffer").join("store.redb"), max_messages).unwrap()
}

#[test]
fn store_is_send_sync_and_debug_names_the_path() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RedbStore>();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    assert!(format!("{store:?}").contains("store.redb"));
    assert!(store.path().ends_with("buffer/store.redb"));
}

#[test]
fn insert_then_get_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let msg = message(1_000, 2_000);
    let id = store.blocking_insert(&msg, &request(1)).unwrap();

    let (table, got) = store.get(id).unwrap().unwrap();
    assert_eq!(table, Table::Pending);
    assert_eq!(got.meta, new_meta(&msg, id));
    assert_eq!(got.request, request(1));
    assert_eq!(
        store.list(Table::Pending).unwrap(),
        vec![new_meta(&msg, id)]
    );
    assert!(store.list(Table::DeadLetter).unwrap().is_empty());
    assert_eq!(store.get(id + 1).unwrap(), None);
}

#[test]
fn ids_increase_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let first = store.blocking_insert(&message(1, 1), &request(1)).unwrap();
    let second = store.blocking_insert(&message(2, 2), &request(2)).unwrap();
    assert!(second > first);
    // Deleting the newest must not let its id be handed out again.
    assert!(store.blocking_remove(Table::Pending, second).unwrap());
    drop(store);

    let store = open(&dir, 10);
    let third = store.blocking_insert(&message(3, 3), &request(3)).unwrap();
    assert!(third > second);
    let (_, kept) = store.get(first).unwrap().unwrap();
    assert_eq!(kept.meta, new_meta(&message(1, 1), first));
    assert_eq!(kept.request, request(1));
    assert_eq!(
        store
            .list(Table::Pending)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        vec![first, third]
    );
}

/// Regression (issue 12, item 10): a schedule written before the clock stepped back lies far
/// ahead of "now"; anything beyond the horizon (the longest backoff) is due, not stalled.
#[test]
fn schedules_beyond_the_horizon_are_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 100);
    let soon = store
        .blocking_insert(&message(1_000, 1_500), &request(1))
        .unwrap();
    let stepped = store
        .blocking_insert(&message(1_000, 3_600_000), &request(2))
        .unwrap();
    assert_eq!(
        ids(&store.blocking_due_within(1_000, 60_000, 10).unwrap()),
        vec![stepped]
    );
    assert_eq!(
        ids(&store.blocking_due_within(2_000, 60_000, 10).unwrap()),
        vec![soon, stepped]
    );
    assert_eq!(
        ids(&store.blocking_due_within(2_000, 60_000, 1).unwrap()),
        vec![soon]
    );
    assert!(store
        .blocking_due_within(1_000, u64::MAX, 10)
        .unwrap()
        .is_empty());
}

#[test]
fn due_filters_by_time_takes_the_most_overdue_and_orders_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    // Scheduled out of id order on purpose.
    let a = store
        .blocking_insert(&message(1, 300), &request(1))
        .unwrap();
    let b = store
        .blocking_insert(&message(2, 100), &request(2))
        .unwrap();
    let c = store
        .blocking_insert(&message(3, 200), &request(3))
        .unwrap();
    let d = store
        .blocking_insert(&message(4, 900), &request(4))
        .unwrap();

    assert!(store.blocking_due(99, 10).unwrap().is_empty());
    assert_eq!(ids(&store.blocking_due(100, 10).unwrap()), vec![b]);
    assert_eq!(ids(&store.blocking_due(300, 10).unwrap()), vec![a, b, c]);
    // With a limit, the longest overdue go first (b due at 100, c at 200), returned by id.
    assert_eq!(ids(&store.blocking_due(300, 2).unwrap()), vec![b, c]);
    assert_eq!(
        ids(&store.blocking_due(u64::MAX, 10).unwrap()),
        vec![a, b, c, d]
    );
    assert!(store.blocking_due(u64::MAX, 0).unwrap().is_empty());
    let due = store.blocking_due(100, 10).unwrap();
    assert_eq!(due[0].request, request(2));
}

#[test]
fn reschedule_updates_meta_and_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let id = store
        .blocking_insert(&message(1, 100), &request(1))
        .unwrap();

    assert!(store
        .blocking_reschedule(id, 2, 500, "503 from handler")
        .unwrap());
    assert!(store.blocking_due(499, 10).unwrap().is_empty());
    let due = store.blocking_due(500, 10).unwrap();
    assert_eq!(ids(&due), vec![id]);
    assert_eq!(due[0].meta.message.attempts, 2);
    assert_eq!(due[0].meta.message.next_attempt_at_ms, 500);
    assert_eq!(due[0].meta.message.last_error, "503 from handler");
    assert_eq!(due[0].request, request(1));

    assert!(!store.blocking_reschedule(id + 1, 2, 500, "x").unwrap());
    assert!(store.blocking_remove(Table::Pending, id).unwrap());
    assert!(!store.blocking_reschedule(id, 3, 600, "x").unwrap());
    assert!(store.blocking_due(u64::MAX, 10).unwrap().is_empty());
}

#[test]
fn move_to_dead_letter_then_list_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    assert_eq!(store.blocking_stats().unwrap(), StoreStats::default());
    let a = store
        .blocking_insert(&message(1_000, 1), &request(1))
        .unwrap();
    let b = store
        .blocking_insert(&message(2_000, 1), &request(2))
        .unwrap();
    assert_eq!(
        store.blocking_stats().unwrap(),
        StoreStats {
            pending: 2,
            dead: 0,
            oldest_pending_received_at_ms: Some(1_000),
        }
    );

    assert!(store.blocking_move_to_dead_letter(a, "expired").unwrap());
    assert!(!store.blocking_move_to_dead_letter(a, "expired").unwrap());
    let dead = store.list(Table::DeadLetter).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, a);
    assert_eq!(dead[0].dead_reason.as_deref(), Some("expired"));
    let (table, got) = store.get(a).unwrap().unwrap();
    assert_eq!(table, Table::DeadLetter);
    assert_eq!(got.request, request(1));
    assert_eq!(ids(&store.blocking_due(u64::MAX, 10).unwrap()), vec![b]);
    assert_eq!(
        store.blocking_stats().unwrap(),
        StoreStats {
            pending: 1,
            dead: 1,
            oldest_pending_received_at_ms: Some(2_000),
        }
    );
}

#[test]
fn requeue_dead_makes_it_due_now() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let id = store
        .blocking_insert(&message(1_000, 5_000), &request(1))
        .unwrap();
    store.blocking_reschedule(id, 4, 9_000, "timeout").unwrap();
    store.blocking_move_to_dead_letter(id, "expired").unwrap();

    assert!(store.requeue_dead(id, 70_000, 30_000).unwrap());
    assert!(!store.requeue_dead(id, 70_000, 30_000).unwrap());
    let (table, got) = store.get(id).unwrap().unwrap();
    assert_eq!(table, Table::Pending);
    assert_eq!(got.meta.message.attempts, 4);
    assert_eq!(got.meta.dead_reason, None);
    assert_eq!(got.meta.message.next_attempt_at_ms, 70_000);
    assert_eq!(got.meta.message.expires_at_ms, 100_000);
    assert_eq!(got.meta.message.received_at_ms, 1_000);
    assert_eq!(got.request, request(1));
    assert_eq!(ids(&store.blocking_due(70_000, 10).unwrap()), vec![id]);
    assert!(store.list(Table::DeadLetter).unwrap().is_empty());
}

#[test]
fn purge_dead_with_and_without_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let mut dead = Vec::new();
    for received in [1_000, 2_000, 3_000] {
        let id = store
            .blocking_insert(&message(received, 1), &request(received))
            .unwrap();
        store.blocking_move_to_dead_letter(id, "expired").unwrap();
        dead.push(id);
    }
    let pending = store
        .blocking_insert(&message(500, 1), &request(9))
        .unwrap();

    assert_eq!(store.purge_dead(Some(1_000)).unwrap(), 0);
    assert_eq!(store.purge_dead(Some(2_500)).unwrap(), 2);
    let left: Vec<u64> = store
        .list(Table::DeadLetter)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(left, vec![dead[2]]);
    assert_eq!(store.get(dead[0]).unwrap(), None);

    assert_eq!(store.purge_dead(None).unwrap(), 1);
    assert!(store.list(Table::DeadLetter).unwrap().is_empty());
    assert_eq!(store.purge_dead(None).unwrap(), 0);
    // Pending messages are never purged, whatever their age.
    assert!(store.get(pending).unwrap().is_some());
    assert_eq!(store.blocking_stats().unwrap().dead, 0);
}

#[test]
fn remove_from_either_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let a = store.blocking_insert(&message(1, 1), &request(1)).unwrap();
    let b = store.blocking_insert(&message(2, 1), &request(2)).unwrap();
    store.blocking_move_to_dead_letter(b, "expired").unwrap();

    assert!(!store.blocking_remove(Table::DeadLetter, a).unwrap());
    assert!(store.blocking_remove(Table::Pending, a).unwrap());
    assert!(!store.blocking_remove(Table::Pending, a).unwrap());
    assert!(store.blocking_due(u64::MAX, 10).unwrap().is_empty());
    assert!(!store.blocking_remove(Table::Pending, b).unwrap());
    assert!(store.blocking_remove(Table::DeadLetter, b).unwrap());
    assert_eq!(store.get(b).unwrap(), None);
    assert_eq!(store.blocking_stats().unwrap(), StoreStats::default());
}

#[test]
fn full_refuses_inserts_until_one_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 2);
    let a = store.blocking_insert(&message(1, 1), &request(1)).unwrap();
    store.blocking_insert(&message(2, 1), &request(2)).unwrap();
    let err = store
        .blocking_insert(&message(3, 1), &request(3))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Full { max_messages: 2 }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("raise buffer.max_messages"),
        "{err}"
    );
    assert_eq!(store.blocking_stats().unwrap().pending, 2);

    assert!(store.blocking_remove(Table::Pending, a).unwrap());
    store.blocking_insert(&message(3, 1), &request(3)).unwrap();
    // The dead letter table does not count against the bound.
    store
        .blocking_move_to_dead_letter(a + 1, "expired")
        .unwrap();
    store.blocking_insert(&message(4, 1), &request(4)).unwrap();
    assert_eq!(store.blocking_stats().unwrap().pending, 2);
}

#[test]
fn second_open_of_the_same_file_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let err = RedbStore::open(store.path(), 10).unwrap_err();
    match &err {
        StoreError::Locked { path } => assert_eq!(path, store.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(err.to_string().contains("stop the proxy first"), "{err}");
    drop(store);
    // Released on drop.
    open(&dir, 10);
}

#[test]
fn binary_request_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let id = store.blocking_insert(&message(1, 1), &bytes).unwrap();
    assert_eq!(store.get(id).unwrap().unwrap().1.request, bytes);
    store.blocking_move_to_dead_letter(id, "expired").unwrap();
    assert_eq!(store.get(id).unwrap().unwrap().1.request, bytes);
    store.requeue_dead(id, 1, 1).unwrap();
    drop(store);
    let store = open(&dir, 10);
    assert_eq!(store.blocking_due(u64::MAX, 1).unwrap()[0].request, bytes);
}

#[test]
fn unreadable_metadata_is_corrupt_and_removable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let id = store.blocking_insert(&message(1, 1), &request(1)).unwrap();
    store
        .write(|txn| {
            txn.open_table(PENDING_META)?.insert(id, "{not json")?;
            Ok(((), true))
        })
        .unwrap();
    let err = store.get(id).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { id: bad, .. } if bad == id),
        "{err:?}"
    );
    // One unreadable message does not stop the batch: it is skipped, the others come.
    let healthy = store.blocking_insert(&message(2, 0), &request(2)).unwrap();
    assert_eq!(
        ids(&store.blocking_due(u64::MAX, 10).unwrap()),
        vec![healthy]
    );
    assert!(store.blocking_remove(Table::Pending, healthy).unwrap());

    assert!(store.blocking_remove(Table::Pending, id).unwrap());
    assert!(store.blocking_due(u64::MAX, 10).unwrap().is_empty());
    assert_eq!(store.blocking_stats().unwrap(), StoreStats::default());
}

#[test]
fn not_a_store_is_an_io_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"these are not the bytes you are looking for").unwrap();
    let err = RedbStore::open(&path, 10).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
}

/// Regression (issue 12, item 13): the dead letter table had no cap, with records of up to
/// 1 MiB. Beyond `max_dead_letters` the oldest go, in the move's own transaction.
#[test]
fn the_dead_letter_table_is_capped_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 100).with_max_dead_letters(2);
    let ids: Vec<u64> = (0..4)
        .map(|i| {
            store
                .blocking_insert(&message(1_000 + i, 0), &request(i))
                .unwrap()
        })
        .collect();
    let mut evicted = 0;
    for &id in &ids {
        evicted += store
            .blocking_move_to_dead_letter_capped(id, "expired")
            .unwrap()
            .unwrap()
            .evicted;
    }
    assert_eq!(evicted, 2);
    let dead: Vec<u64> = store
        .list(Table::DeadLetter)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(dead, ids[2..].to_vec(), "the newest two are kept");
    assert!(
        store.get(ids[0]).unwrap().is_none(),
        "meta and bytes both gone"
    );
    assert_eq!(store.blocking_stats().unwrap().dead, 2);
}

/// Group commit (group.rs): inserts waiting at once share one fsynced transaction.
mod grouped;
