//! Group commit for inserts: concurrent inserts of one instance share one transaction.
//!
//! Owns the insert path of [`PostgresStore`](super::PostgresStore). Each commit waits for the
//! WAL flush; one transaction per message would cap an instance at one flush per insert, so
//! inserts queue, and one flush task at a time writes everything queued in a single
//! transaction. Every caller still returns only after *its* message committed.
//!
//! No long-lived task: the caller that finds no flush running spawns one, which exits when the
//! queue is empty. The flush runs in its own task so that a caller giving up (its deadline)
//! never cancels a transaction carrying other callers' messages. The `max_messages` bound is
//! checked inside the transaction under an advisory lock, so it holds across the fleet.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::store::Inner;
use super::{storable, to_i64, Failure};
use crate::buffer::waiting::{InsertQueue, Waiting};
use crate::buffer::{NewMessage, StoreError};

/// At most this many messages per transaction (a few MB of requests at most).
const MAX_BATCH: usize = 256;

fn lock(inner: &Inner) -> std::sync::MutexGuard<'_, InsertQueue> {
    // A std Mutex: held for a push or a take, never across an await.
    inner.batch.lock().unwrap_or_else(|e| e.into_inner())
}

/// Queues one insert and waits until it committed (or failed), at most the call timeout.
pub(super) async fn insert(
    inner: &Arc<Inner>,
    message: NewMessage,
    request: Vec<u8>,
) -> Result<u64, StoreError> {
    let (reply, answer) = oneshot::channel();
    let start_flush = lock(inner).push(Waiting {
        message,
        request,
        reply,
    });
    if start_flush {
        tokio::spawn(flush(FlushGuard {
            inner: inner.clone(),
            armed: true,
        }));
    }
    let timeout = inner.pool.call_timeout();
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(result)) => result,
        // The flush task died (its runtime shut down): nothing tells whether it committed.
        Ok(Err(_)) => Err(StoreError::Aborted {
            operation: "insert",
        }),
        // Dropping `answer` tells the flush to skip this message if it has not started it.
        Err(_) => Err(StoreError::Unavailable {
            location: inner.pool.location().to_owned(),
            operation: "insert",
            detail: format!("no answer within {timeout:?}"),
            source: None,
        }),
    }
}

/// Marks the flush as stopped if its task ends without emptying the queue (runtime shutdown),
/// and drops the queued replies so their callers get an error instead of waiting forever.
struct FlushGuard {
    inner: Arc<Inner>,
    armed: bool,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.inner).abandon();
        }
    }
}

async fn flush(mut guard: FlushGuard) {
    loop {
        // Callers that gave up were answered with an error: they are not written.
        let Some(batch) = lock(&guard.inner).next_group(MAX_BATCH) else {
            guard.armed = false;
            return;
        };
        let inner = &guard.inner;
        let result = inner.pool.call("insert", write(inner, &batch)).await;
        match result {
            Ok(ids) => {
                for (queued, id) in batch.into_iter().zip(ids) {
                    let _ = queued.reply.send(id);
                }
            }
            Err(e) => {
                // One error per caller; each gets the same text, and the first the source.
                let mut source = Some(e);
                for queued in batch {
                    let error = match source.take() {
                        Some(e) => e,
                        None => StoreError::Unavailable {
                            location: inner.pool.location().to_owned(),
                            operation: "insert",
                            detail: "the transaction shared with other inserts failed (see the \
                                     first error)"
                                .to_owned(),
                            source: None,
                        },
                    };
                    let _ = queued.reply.send(Err(error));
                }
            }
        }
    }
}

/// One transaction: the fleet-wide bound, ids, rows. Returns each message's result in order:
/// an id, or [`StoreError::Full`] for those past the bound.
async fn write(inner: &Inner, batch: &[Waiting]) -> Result<Vec<Result<u64, StoreError>>, Failure> {
    let schema = inner.pool.schema();
    let mut client = inner.pool.client().await?;
    let txn = client.transaction().await?;
    // Serialises inserts across the fleet for the length of one transaction, so that two
    // instances cannot both see room for the last message. Removals need no lock: they only
    // make room.
    let lock = txn
        .prepare_cached(
            "SELECT pg_advisory_xact_lock(hashtextextended('twilio-notify-proxy insert ' || $1, 0))",
        )
        .await?;
    txn.execute(&lock, &[&schema]).await?;
    let count = txn
        .prepare_cached(&format!("SELECT count(*) FROM {schema}.pending"))
        .await?;
    let pending: i64 = txn.query_one(&count, &[]).await?.try_get(0)?;
    let room = inner
        .max_messages
        .saturating_sub(u64::try_from(pending).unwrap_or(0));
    let fits = batch.len().min(usize::try_from(room).unwrap_or(usize::MAX));
    let stored = &batch[..fits];
    let mut results = Vec::with_capacity(batch.len());
    if !stored.is_empty() {
        let ids_sql = txn
            .prepare_cached(&format!(
                "SELECT nextval('{schema}.message_ids') FROM generate_series(1, $1::bigint)"
            ))
            .await?;
        let ids: Vec<i64> = txn
            .query(&ids_sql, &[&i64::try_from(fits).unwrap_or(i64::MAX)])
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let insert = txn
            .prepare_cached(&format!(
                "INSERT INTO {schema}.pending (id, route, upstream, received_at_ms,
                     expires_at_ms, attempts, next_attempt_at_ms, last_error, message_id,
                     call_sid, request)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[],
                     $5::bigint[], $6::bigint[], $7::bigint[], $8::text[], $9::text[],
                     $10::text[], $11::bytea[])"
            ))
            .await?;
        let column = |f: fn(&NewMessage) -> &str| -> Vec<String> {
            stored
                .iter()
                .map(|q| storable(f(&q.message)).into_owned())
                .collect()
        };
        let optional = |f: fn(&NewMessage) -> Option<&str>| -> Vec<Option<String>> {
            stored
                .iter()
                .map(|q| f(&q.message).map(|v| storable(v).into_owned()))
                .collect()
        };
        let number = |f: fn(&NewMessage) -> u64| -> Vec<i64> {
            stored.iter().map(|q| to_i64(f(&q.message))).collect()
        };
        let requests: Vec<&[u8]> = stored.iter().map(|q| q.request.as_slice()).collect();
        txn.execute(
            &insert,
            &[
                &ids,
                &column(|m| &m.route),
                &column(|m| &m.upstream),
                &number(|m| m.received_at_ms),
                &number(|m| m.expires_at_ms),
                &number(|m| u64::from(m.attempts)),
                &number(|m| m.next_attempt_at_ms),
                &column(|m| &m.last_error),
                &optional(|m| m.message_id.as_deref()),
                &optional(|m| m.call_sid.as_deref()),
                &requests,
            ],
        )
        .await?;
        txn.commit().await?;
        // Sequence values are positive.
        results.extend(ids.into_iter().map(|id| Ok(u64::try_from(id).unwrap_or(0))));
    }
    results.extend((fits..batch.len()).map(|_| {
        Err(StoreError::Full {
            max_messages: inner.max_messages,
        })
    }));
    Ok(results)
}
