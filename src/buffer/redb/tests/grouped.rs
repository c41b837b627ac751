//! Group commit (`group.rs`): inserts that wait at the same time share one fsynced
//! transaction; each caller is answered after its own commit, and a failed group stores none.

use super::*;

/// Holds redb's write lock, so the flush waits and the inserts queue up behind it; released by
/// [`Queue::release`] once `n` inserts are queued, so they all go into one group.
async fn queue_behind_the_write_lock(
    store: &RedbStore,
    inserts: Vec<(NewMessage, Vec<u8>)>,
) -> Vec<Result<u64, StoreError>> {
    let held = store.inner.db.begin_write().unwrap();
    let n = inserts.len();
    let mut calls = Vec::new();
    for (i, (msg, request)) in inserts.into_iter().enumerate() {
        let s = store.clone();
        calls.push(tokio::spawn(async move { s.insert(msg, request).await }));
        // One at a time, so the queue holds them in this order.
        while group::lock(&store.inner).queued() < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(group::lock(&store.inner).queued(), n);
    held.abort().unwrap();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_are_all_durable_and_readable_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 1_000);
    let mut calls = tokio::task::JoinSet::new();
    for tag in 0..200u64 {
        let s = store.clone();
        calls.spawn(async move { (tag, s.insert(message(tag, tag), request(tag)).await) });
    }
    let mut stored = Vec::new();
    while let Some(done) = calls.join_next().await {
        let (tag, id) = done.unwrap();
        stored.push((id.unwrap(), tag));
    }
    stored.sort_unstable();
    let mut ids: Vec<u64> = stored.iter().map(|(id, _)| *id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 200, "ids are unique");
    drop(store);

    // Each caller was answered after its commit: all of it is in the file.
    let store = open(&dir, 1_000);
    for (id, tag) in &stored {
        let (table, got) = store.get(*id).unwrap().unwrap();
        assert_eq!(table, Table::Pending);
        assert_eq!(got.meta, new_meta(&message(*tag, *tag), *id));
        assert_eq!(got.request, request(*tag));
    }
    assert_eq!(store.blocking_stats().unwrap().pending, 200);
    let next = store.insert(message(1, 1), request(1)).await.unwrap();
    assert!(next > *ids.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_group_takes_ids_in_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 100);
    let first = store.insert(message(0, 0), request(0)).await.unwrap();
    let inserts = (1..=6).map(|t| (message(t, t), request(t))).collect();
    let ids: Vec<u64> = queue_behind_the_write_lock(&store, inserts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, (first + 1..=first + 6).collect::<Vec<_>>());
    for (tag, id) in (1..=6).zip(&ids) {
        assert_eq!(store.get(*id).unwrap().unwrap().1.request, request(tag));
    }
}

/// A group that fails part way (here: the id counter runs out at its third message, after the
/// first two were written into the transaction) fails every caller and stores none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_group_fails_every_caller_and_stores_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 100);
    let txn = store.inner.db.begin_write().unwrap();
    txn.open_table(COUNTERS)
        .unwrap()
        .insert(NEXT_ID, u64::MAX - 2)
        .unwrap();
    txn.commit().unwrap();

    let inserts = (1..=5).map(|t| (message(t, t), request(t))).collect();
    let results = queue_behind_the_write_lock(&store, inserts).await;
    assert_eq!(results.len(), 5);
    for result in &results {
        assert!(
            matches!(result, Err(StoreError::Corrupt { detail, .. }) if detail.contains("exhausted")),
            "{result:?}"
        );
    }
    assert!(store.list(Table::Pending).unwrap().is_empty());
    drop(store);
    let store = open(&dir, 100);
    assert!(store.list(Table::Pending).unwrap().is_empty());
    // Nothing of the group was committed, the counter neither: the next id is the one the
    // group's first message would have had.
    assert_eq!(
        store.insert(message(9, 9), request(9)).await.unwrap(),
        u64::MAX - 2
    );
}

/// The bound is checked inside the group's transaction: the messages that fit are stored, the
/// ones past it are refused, as if they had come one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_messages_holds_inside_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 3);
    store.insert(message(0, 0), request(0)).await.unwrap();
    let inserts = (1..=4).map(|t| (message(t, t), request(t))).collect();
    let results = queue_behind_the_write_lock(&store, inserts).await;
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    for refused in &results[2..] {
        assert!(
            matches!(refused, Err(StoreError::Full { max_messages: 3 })),
            "{refused:?}"
        );
    }
    assert_eq!(store.blocking_stats().unwrap().pending, 3);
    let requests: Vec<Vec<u8>> = [&results[0], &results[1]]
        .iter()
        .map(|id| store.get(*id.as_ref().unwrap()).unwrap().unwrap().1.request)
        .collect();
    assert_eq!(requests, vec![request(1), request(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_insert_commits_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let id = store.insert(message(1, 2), request(1)).await.unwrap();
    drop(store);
    let store = open(&dir, 10);
    let (_, got) = store.get(id).unwrap().unwrap();
    assert_eq!(got.meta, new_meta(&message(1, 2), id));
    assert_eq!(got.request, request(1));
    // And again: a flush that found the queue empty has stopped, the next starts a new one.
    let second = store.insert(message(2, 2), request(2)).await.unwrap();
    assert!(second > id);
    assert!(!group::lock(&store.inner).flushing());
}

/// A caller that gave up before its group was taken is not written (it was not told "stored").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gave_up_before_its_group_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 10);
    let held = store.inner.db.begin_write().unwrap();
    let s = store.clone();
    let kept = tokio::spawn(async move { s.insert(message(1, 1), request(1)).await });
    while group::lock(&store.inner).queued() < 1 {
        tokio::task::yield_now().await;
    }
    let s = store.clone();
    let abandoned = tokio::spawn(async move { s.insert(message(2, 2), request(2)).await });
    while group::lock(&store.inner).queued() < 2 {
        tokio::task::yield_now().await;
    }
    abandoned.abort();
    let _ = abandoned.await;
    held.abort().unwrap();
    let id = kept.await.unwrap().unwrap();
    assert_eq!(ids_of(&store), vec![id]);
}

fn ids_of(store: &RedbStore) -> Vec<u64> {
    store
        .list(Table::Pending)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect()
}
