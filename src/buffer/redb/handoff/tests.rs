//! Unit tests of the hand-off: adoption of leftover files (ids, bytes, TTL, crash between
//! commit and delete, files still held), and the live switch from a hand-off file to the main
//! file with ids translated.

use super::*;
use crate::buffer::BufferedMeta;

fn message(tag: u64) -> NewMessage {
    NewMessage {
        route: "notify".to_owned(),
        upstream: "handler".to_owned(),
        received_at_ms: 1_000 + tag,
        expires_at_ms: 61_000 + tag,
        attempts: 2,
        next_attempt_at_ms: 5_000 + tag,
        last_error: format!("connect refused {tag}"),
        message_id: Some(format!("RU{tag}")),
        call_sid: Some("CA123".to_owned()),
    }
}

fn request(tag: u64) -> Vec<u8> {
    format!("POST /notify?bodySHA256={tag} HTTP/1.1\r\nContent-Length: 4\r\n\r\n{{{tag}}}\0")
        .into_bytes()
}

/// Every message of `store` keyed by its request bytes (unique per tag), with its table.
fn by_bytes(store: &RedbStore) -> HashMap<Vec<u8>, (Table, BufferedMeta)> {
    let mut all = HashMap::new();
    for table in [Table::Pending, Table::DeadLetter] {
        for meta in store.list(table).unwrap() {
            let (_, m) = store.get(meta.id).unwrap().unwrap();
            all.insert(m.request, (table, meta));
        }
    }
    all
}

/// A store at `path` with pending messages `pending` and one dead-letter message `dead`.
fn fill(path: &Path, pending: &[u64], dead: u64) {
    let store = if path.exists() {
        RedbStore::open(path, 100).unwrap()
    } else {
        RedbStore::create_new(path, 100).unwrap()
    };
    for &tag in pending.iter().chain([&dead]) {
        store.blocking_insert(&message(tag), &request(tag)).unwrap();
    }
    let dead_id = store.list(Table::Pending).unwrap().last().unwrap().id;
    assert!(store
        .blocking_move_to_dead_letter(dead_id, "expired")
        .unwrap());
}

#[test]
fn leftover_handoff_file_is_adopted_at_start_with_new_ids_and_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("buffer.redb");
    fill(&main, &[1, 2], 3);
    // A process that died during its hand-off: its ids (1, 2, 3) are the main file's too.
    let sibling = handoff_path(&main);
    fill(&sibling, &[11, 12], 13);
    let before = by_bytes(&RedbStore::open(&sibling, 100).unwrap());

    let buffer = RedbBuffer::open(&main, 100, false).unwrap();
    assert!(!buffer.is_handoff());
    assert!(!sibling.exists(), "adopted file deleted");
    assert!(handoff_files(&main).is_empty());
    drop(buffer);

    let store = RedbStore::open(&main, 100).unwrap();
    let after = by_bytes(&store);
    assert_eq!(
        after.len(),
        6,
        "3 messages of each file, none lost or doubled"
    );
    let ids: std::collections::HashSet<u64> = after.values().map(|(_, m)| m.id).collect();
    assert_eq!(ids.len(), 6, "ids do not collide");
    for (bytes, (table, meta)) in &before {
        let (new_table, new_meta) = &after[bytes];
        assert_eq!(new_table, table, "same table");
        assert_eq!(
            new_meta.message, meta.message,
            "metadata and TTL kept exactly"
        );
        assert_eq!(new_meta.dead_reason, meta.dead_reason);
        assert!(new_meta.id > 3, "new ids come from the main file's counter");
    }
    // Adopted pending messages are scheduled as before (due at their own time, not earlier).
    assert_eq!(store.blocking_due(5_010, 10).unwrap().len(), 2);
    assert_eq!(store.blocking_due(5_012, 10).unwrap().len(), 4);
}

#[test]
fn a_file_adopted_but_not_deleted_is_not_adopted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let main_path = dir.path().join("buffer.redb");
    let sibling_path = handoff_path(&main_path);
    fill(&sibling_path, &[1, 2], 3);
    let main = RedbStore::open(&main_path, 100).unwrap();
    {
        // The process died after the adoption committed, before it deleted the file.
        let sibling = RedbStore::open_existing(&sibling_path, 100).unwrap();
        let adopted = main
            .blocking_adopt(&sibling, &name_of(&sibling_path))
            .unwrap();
        assert_eq!(adopted.moved.len(), 3);
    }
    let report = adopt_leftovers(&main, 100);
    assert_eq!(report.adopted, vec![(sibling_path.clone(), 0)]);
    assert!(!sibling_path.exists(), "recognised, then deleted");
    assert_eq!(by_bytes(&main).len(), 3, "still once each");
}

#[test]
fn a_handoff_file_held_by_a_running_process_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let main_path = dir.path().join("buffer.redb");
    let sibling_path = handoff_path(&main_path);
    fill(&sibling_path, &[1], 2);
    let held = RedbStore::open_existing(&sibling_path, 100).unwrap();
    let main = RedbStore::open(&main_path, 100).unwrap();
    let report = adopt_leftovers(&main, 100);
    assert_eq!(report.in_use, vec![sibling_path.clone()]);
    assert!(report.adopted.is_empty());
    assert!(sibling_path.exists());
    assert!(by_bytes(&main).is_empty());
    drop(held);
}

#[test]
fn a_locked_main_file_is_refused_without_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let main_path = dir.path().join("buffer.redb");
    let _running = RedbStore::open(&main_path, 100).unwrap();
    let refused = RedbBuffer::open(&main_path, 100, false).unwrap_err();
    assert!(matches!(refused, StoreError::Locked { .. }), "{refused}");
    assert!(
        handoff_files(&main_path).is_empty(),
        "no hand-off file made"
    );
}

#[tokio::test]
async fn upgrade_buffers_into_a_handoff_file_then_switches_to_the_main_file() {
    let dir = tempfile::tempdir().unwrap();
    let main_path = dir.path().join("buffer.redb");
    let old_process = RedbStore::open(&main_path, 100).unwrap();
    let old_id = old_process
        .blocking_insert(&message(1), &request(1))
        .unwrap();

    let buffer = RedbBuffer::open(&main_path, 100, true).unwrap();
    assert!(buffer.is_handoff());
    assert!(buffer.location().contains(".handoff-"));
    let a = buffer.insert(message(2), request(2)).await.unwrap();
    let b = buffer.insert(message(3), request(3)).await.unwrap();
    assert!(a >= HANDOFF_ID_BASE && b > a, "hand-off ids: {a}, {b}");
    // The new process's worker sees (only) the hand-off file's messages, by hand-off ids.
    let due = buffer.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap();
    assert_eq!(due.iter().map(|m| m.meta.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(due[0].request, request(2));
    // The old process still holds the main file: no switch.
    buffer.step().await;
    assert!(buffer.is_handoff());

    drop(old_process);
    buffer.step().await;
    assert!(!buffer.is_handoff(), "switched once the main file was free");
    assert!(
        handoff_files(&main_path).is_empty(),
        "hand-off file deleted"
    );
    assert_eq!(buffer.stats().await.unwrap().pending, 3);
    // A redelivery that was in flight across the switch finishes on the right message.
    assert!(buffer.reschedule(b, 3, 9, "again".into()).await.unwrap());
    assert!(buffer.remove(Table::Pending, a).await.unwrap());
    assert!(!buffer.remove(Table::Pending, a).await.unwrap(), "once");
    let left = buffer.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap();
    let left: Vec<(Vec<u8>, u32)> = left
        .into_iter()
        .map(|m| (m.request, m.meta.message.attempts))
        .collect();
    assert_eq!(left, [(request(1), 2), (request(3), 3)]);
    assert!(
        buffer.due(u64::MAX, u64::MAX, 10, &[]).await.unwrap()[0]
            .meta
            .id
            == old_id,
        "the old process's message keeps its id"
    );
    // New messages go to the main file, with main ids.
    let c = buffer.insert(message(4), request(4)).await.unwrap();
    assert!(c < HANDOFF_ID_BASE);
}
