//! The on-disk layout: table definitions and the record helpers every transaction uses
//! (metadata as JSON, request bytes, the schedule, the id counter). No transactions begin here.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::error::{corrupt, Failure};
use crate::buffer::{BufferedMessage, BufferedMeta, NewMessage, Table};

pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
pub(super) const NEXT_ID: &str = "next_id";
pub(super) const PENDING_META: TableDefinition<u64, &str> = TableDefinition::new("pending_meta");
pub(super) const PENDING_REQUEST: TableDefinition<u64, &[u8]> =
    TableDefinition::new("pending_request");
pub(super) const PENDING_SCHEDULE: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("pending_schedule");
pub(super) const DEAD_META: TableDefinition<u64, &str> = TableDefinition::new("dead_meta");
pub(super) const DEAD_REQUEST: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_request");
/// Hand-off files already adopted: file name -> unix ms of the adoption. Written in the same
/// transaction as the adopted records, so a file found again (the process died before deleting
/// it) is recognised and not adopted twice.
pub(super) const ADOPTED: TableDefinition<&str, u64> = TableDefinition::new("adopted_handoffs");

pub(super) fn decode_meta(id: u64, json: &str) -> Result<BufferedMeta, Failure> {
    let meta: BufferedMeta = serde_json::from_str(json)
        .map_err(|e| corrupt(id, format!("metadata does not parse: {e}")))?;
    if meta.id != id {
        return Err(corrupt(
            id,
            format!("metadata is stored under id {id} but names id {}", meta.id),
        ));
    }
    Ok(meta)
}

pub(super) fn encode_meta(meta: &BufferedMeta) -> Result<String, Failure> {
    serde_json::to_string(meta)
        .map_err(|e| corrupt(meta.id, format!("cannot encode metadata: {e}")))
}

pub(super) fn new_meta(msg: &NewMessage, id: u64) -> BufferedMeta {
    BufferedMeta {
        id,
        message: msg.clone(),
        dead_reason: None,
    }
}

pub(super) type MetaTable = TableDefinition<'static, u64, &'static str>;
pub(super) type RequestTable = TableDefinition<'static, u64, &'static [u8]>;

/// The metadata and request tables of `table`.
pub(super) fn tables(table: Table) -> (MetaTable, RequestTable) {
    match table {
        Table::Pending => (PENDING_META, PENDING_REQUEST),
        Table::DeadLetter => (DEAD_META, DEAD_REQUEST),
    }
}

/// Reads one message (metadata and bytes) from `table`, if it is there.
pub(super) fn read_message(
    txn: &ReadTransaction,
    table: Table,
    id: u64,
) -> Result<Option<BufferedMessage>, Failure> {
    let (meta_def, request_def) = tables(table);
    let metas = txn.open_table(meta_def)?;
    let Some(json) = metas.get(id)? else {
        return Ok(None);
    };
    let meta = decode_meta(id, json.value())?;
    let requests = txn.open_table(request_def)?;
    let request = requests
        .get(id)?
        .ok_or_else(|| corrupt(id, "metadata present but request bytes missing"))?
        .value()
        .to_vec();
    Ok(Some(BufferedMessage { meta, request }))
}

/// Removes a pending message's entry from the schedule. `meta` is `None` when the metadata could
/// not be read; the schedule is then searched for the id.
pub(super) fn unschedule(
    txn: &WriteTransaction,
    id: u64,
    meta: Option<&BufferedMeta>,
) -> Result<(), Failure> {
    let mut schedule = txn.open_table(PENDING_SCHEDULE)?;
    match meta {
        Some(meta) => {
            schedule.remove((meta.message.next_attempt_at_ms, id))?;
        }
        None => schedule.retain(|(_, scheduled), ()| scheduled != id)?,
    }
    Ok(())
}

/// Writes a pending message (metadata, bytes, schedule entry).
pub(super) fn put_pending(
    txn: &WriteTransaction,
    meta: &BufferedMeta,
    request: &[u8],
) -> Result<(), Failure> {
    let json = encode_meta(meta)?;
    txn.open_table(PENDING_META)?
        .insert(meta.id, json.as_str())?;
    txn.open_table(PENDING_REQUEST)?.insert(meta.id, request)?;
    txn.open_table(PENDING_SCHEDULE)?
        .insert((meta.message.next_attempt_at_ms, meta.id), ())?;
    Ok(())
}

/// Takes a message (metadata and bytes) out of `table`. The schedule is left to the caller.
pub(super) fn take_message(
    txn: &WriteTransaction,
    table: Table,
    id: u64,
) -> Result<Option<BufferedMessage>, Failure> {
    let (meta_def, request_def) = tables(table);
    let json = match txn.open_table(meta_def)?.remove(id)? {
        Some(json) => json.value().to_owned(),
        None => return Ok(None),
    };
    let meta = decode_meta(id, &json)?;
    let request = txn
        .open_table(request_def)?
        .remove(id)?
        .ok_or_else(|| corrupt(id, "metadata present but request bytes missing"))?
        .value()
        .to_vec();
    Ok(Some(BufferedMessage { meta, request }))
}

/// Takes the next id and advances the counter. Never below an id already stored, so a counter
/// lost to a bug cannot make ids collide.
pub(super) fn next_id(txn: &WriteTransaction) -> Result<u64, Failure> {
    let mut counters = txn.open_table(COUNTERS)?;
    let counted = counters.get(NEXT_ID)?.map_or(1, |v| v.value());
    let last_pending = txn
        .open_table(PENDING_META)?
        .last()?
        .map(|(k, _)| k.value());
    let last_dead = txn.open_table(DEAD_META)?.last()?.map(|(k, _)| k.value());
    let id = [last_pending, last_dead]
        .into_iter()
        .flatten()
        .fold(counted, |id, last| id.max(last.saturating_add(1)));
    let next = id
        .checked_add(1)
        .ok_or_else(|| corrupt(id, "message ids are exhausted"))?;
    counters.insert(NEXT_ID, next)?;
    Ok(id)
}
