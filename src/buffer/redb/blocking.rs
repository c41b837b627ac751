//! The work behind each [`NotificationStore`](crate::buffer::NotificationStore) call on the redb
//! file: one write transaction per change, committed with fsync. Each method blocks on disk
//! I/O; the async trait impl runs them on tokio's blocking pool.

use super::*;

/// The work behind each [`NotificationStore`] call; each blocks on disk I/O.
impl RedbStore {
    /// Durably inserts a new pending message (committed and fsynced before returning) and returns
    /// its id, in a transaction of its own (the async [`NotificationStore::insert`] shares one
    /// with the inserts waiting beside it: see `group.rs`). Ids are strictly increasing across restarts and never reused. Fails with
    /// [`StoreError::Full`] when the pending table already holds `max_messages`.
    pub fn blocking_insert(&self, msg: &NewMessage, request: &[u8]) -> Result<u64, StoreError> {
        self.write(|txn| {
            if txn.open_table(PENDING_META)?.len()? >= self.inner.max_messages {
                return Err(StoreError::Full {
                    max_messages: self.inner.max_messages,
                }
                .into());
            }
            let id = next_id(txn)?;
            put_pending(txn, &new_meta(msg, id), request)?;
            Ok((id, true))
        })
    }

    /// Pending messages with `next_attempt_at_ms <= now_ms`, at most `limit`: the longest
    /// overdue first (the schedule is ordered by due time), returned oldest id first. Reads
    /// `limit` entries, not the whole schedule, so a large backlog costs the same per pass.
    ///
    /// A message whose metadata cannot be read is skipped (and logged with its id) rather than
    /// failing the batch: one bad record must not stop every other redelivery.
    pub fn blocking_due(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<BufferedMessage>, StoreError> {
        self.blocking_due_within(now_ms, u64::MAX, limit)
    }

    /// [`RedbStore::blocking_due`], plus the messages scheduled later than `now_ms +
    /// horizon_ms` (left there by a clock that stepped back; see [`NotificationStore::due`]).
    pub fn blocking_due_within(
        &self,
        now_ms: u64,
        horizon_ms: u64,
        limit: usize,
    ) -> Result<Vec<BufferedMessage>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let schedule = txn.open_table(PENDING_SCHEDULE)?;
            let mut ids = Vec::with_capacity(limit);
            for entry in schedule.range(..=(now_ms, u64::MAX))?.take(limit) {
                let (_next_attempt_at_ms, id) = entry?.0.value();
                ids.push(id);
            }
            if let Some(beyond) = now_ms.checked_add(horizon_ms).and_then(|h| h.checked_add(1)) {
                for entry in schedule.range((beyond, 0)..)?.take(limit - ids.len()) {
                    let (_next_attempt_at_ms, id) = entry?.0.value();
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            let mut due = Vec::with_capacity(ids.len());
            for id in ids {
                match read_message(txn, Table::Pending, id) {
                    Ok(Some(message)) => due.push(message),
                    Ok(None) => tracing::error!(
                        buffer_id = id,
                        "buffer: scheduled but not in the pending table; skipped"
                    ),
                    Err(Failure::Store(e)) => {
                        tracing::error!(buffer_id = id, error = %e, "buffer: unreadable message skipped")
                    }
                    Err(io) => return Err(io),
                }
            }
            Ok(due)
        })
    }

    /// Updates a pending message after a failed attempt. Returns false if it no longer exists.
    pub fn blocking_reschedule(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at_ms: u64,
        last_error: &str,
    ) -> Result<bool, StoreError> {
        self.write(|txn| {
            let json = match txn.open_table(PENDING_META)?.get(id)? {
                Some(json) => json.value().to_owned(),
                None => return Ok((false, false)),
            };
            let mut meta = decode_meta(id, &json)?;
            unschedule(txn, id, Some(&meta))?;
            meta.message.attempts = attempts;
            meta.message.next_attempt_at_ms = next_attempt_at_ms;
            meta.message.last_error = last_error.to_owned();
            txn.open_table(PENDING_META)?
                .insert(id, encode_meta(&meta)?.as_str())?;
            txn.open_table(PENDING_SCHEDULE)?
                .insert((next_attempt_at_ms, id), ())?;
            Ok((true, true))
        })
    }

    /// Moves a pending message to the dead letter table with `reason`, in one transaction.
    /// Returns false if it is not pending.
    pub fn blocking_move_to_dead_letter(&self, id: u64, reason: &str) -> Result<bool, StoreError> {
        Ok(self
            .blocking_move_to_dead_letter_capped(id, reason)?
            .is_some())
    }

    /// [`RedbStore::blocking_move_to_dead_letter`], and in the same transaction the oldest
    /// dead letters (lowest ids: ids follow arrival) beyond `max_dead_letters` are deleted:
    /// a record can hold up to 1 MiB, and an outage of days must not fill the disk.
    pub fn blocking_move_to_dead_letter_capped(
        &self,
        id: u64,
        reason: &str,
    ) -> Result<Option<DeadLettered>, StoreError> {
        self.write(|txn| {
            let Some(mut message) = take_message(txn, Table::Pending, id)? else {
                return Ok((None, false));
            };
            unschedule(txn, id, Some(&message.meta))?;
            message.meta.dead_reason = Some(reason.to_owned());
            let mut metas = txn.open_table(DEAD_META)?;
            let mut requests = txn.open_table(DEAD_REQUEST)?;
            metas.insert(id, encode_meta(&message.meta)?.as_str())?;
            requests.insert(id, message.request.as_slice())?;
            let mut evicted = 0;
            let cap = self
                .inner
                .max_dead_letters
                .load(std::sync::atomic::Ordering::Relaxed);
            while metas.len()? > cap {
                let Some((oldest, _)) = metas.pop_first()? else {
                    break;
                };
                requests.remove(oldest.value())?;
                evicted += 1;
            }
            Ok((Some(DeadLettered { evicted }), true))
        })
    }

    /// Removes a message from `table`. Returns whether it was there. Works on messages whose
    /// metadata is unreadable, so operators can clear them.
    pub fn blocking_remove(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        self.write(|txn| {
            let (meta_def, request_def) = tables(table);
            let json = txn
                .open_table(meta_def)?
                .remove(id)?
                .map(|json| json.value().to_owned());
            let had_request = txn.open_table(request_def)?.remove(id)?.is_some();
            if table == Table::Pending && json.is_some() {
                let meta = json.as_deref().and_then(|j| decode_meta(id, j).ok());
                unschedule(txn, id, meta.as_ref())?;
            }
            let found = json.is_some() || had_request;
            Ok((found, found))
        })
    }

    /// Counts for `/metrics`: two table lengths (kept by redb in the table header) and one small
    /// JSON read, whatever the size of the buffer.
    pub fn blocking_stats(&self) -> Result<StoreStats, StoreError> {
        self.read(|txn| {
            let pending = txn.open_table(PENDING_META)?;
            let oldest_pending_received_at_ms = match pending.first()? {
                Some((id, json)) => Some(
                    decode_meta(id.value(), json.value())?
                        .message
                        .received_at_ms,
                ),
                None => None,
            };
            Ok(StoreStats {
                pending: pending.len()?,
                dead: txn.open_table(DEAD_META)?.len()?,
                oldest_pending_received_at_ms,
            })
        })
    }
}
