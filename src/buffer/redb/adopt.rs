//! Adoption: merging another store file (a hand-off file written during `run --upgrade`) into
//! this one, in one transaction.
//!
//! Owns the rule that a message survives the merge unchanged except for its id: metadata,
//! schedule, TTL (`expires_at_ms`), dead-letter reason and the exact request bytes are kept; the
//! id is taken from this store's counter, so it cannot collide with an id here. The source file
//! is only read; deleting it is the caller's job, after this returned. The source's name is
//! recorded in the same transaction, so a source found again after a crash (adopted, not yet
//! deleted) is not adopted twice.

use redb::{ReadableTable, ReadableTableMetadata};

use super::records::*;
use super::{RedbStore, StoreError, Table};
use crate::buffer::BufferedMessage;

/// What one adoption did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopted {
    /// (table, id in the source, new id here), in source id order.
    pub moved: Vec<(Table, u64, u64)>,
    /// The source had been adopted before (by a process that died before deleting it):
    /// nothing was copied.
    pub already: bool,
}

impl RedbStore {
    /// Copies every pending and dead-letter message of `source` into this store under new ids,
    /// in one write transaction (fsynced before returning), and records `source_name` as adopted.
    /// `max_messages` is not enforced: these messages were accepted already.
    pub fn blocking_adopt(
        &self,
        source: &RedbStore,
        source_name: &str,
    ) -> Result<Adopted, StoreError> {
        // Read everything first: a source that cannot be read fails before anything is written.
        let mut messages = Vec::new();
        for table in [Table::Pending, Table::DeadLetter] {
            for message in source.read_all(table)? {
                messages.push((table, message));
            }
        }
        self.write(|txn| {
            if txn.open_table(ADOPTED)?.get(source_name)?.is_some() {
                return Ok((
                    Adopted {
                        moved: Vec::new(),
                        already: true,
                    },
                    false,
                ));
            }
            let mut moved = Vec::with_capacity(messages.len());
            for (table, message) in &messages {
                let id = next_id(txn)?;
                let mut meta = message.meta.clone();
                meta.id = id;
                match table {
                    Table::Pending => put_pending(txn, &meta, &message.request)?,
                    Table::DeadLetter => {
                        txn.open_table(DEAD_META)?
                            .insert(id, encode_meta(&meta)?.as_str())?;
                        txn.open_table(DEAD_REQUEST)?
                            .insert(id, message.request.as_slice())?;
                    }
                }
                moved.push((*table, message.meta.id, id));
            }
            txn.open_table(ADOPTED)?
                .insert(source_name, crate::clock::now_ms())?;
            Ok((
                Adopted {
                    moved,
                    already: false,
                },
                true,
            ))
        })
    }

    /// Forgets that `source_name` was adopted, once its file is gone (so the table stays small).
    pub fn blocking_forget_adopted(&self, source_name: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            let removed = txn.open_table(ADOPTED)?.remove(source_name)?.is_some();
            Ok(((), removed))
        })
    }

    /// Every message of `table` with its bytes, oldest id first. A record that cannot be read
    /// fails the whole read: adoption must not silently leave a message behind in a file that
    /// is about to be deleted.
    fn read_all(&self, table: Table) -> Result<Vec<BufferedMessage>, StoreError> {
        self.read(|txn| {
            let (meta_def, _) = tables(table);
            let metas = txn.open_table(meta_def)?;
            let mut all = Vec::with_capacity(usize::try_from(metas.len()?).unwrap_or(0));
            for entry in metas.iter()? {
                let id = entry?.0.value();
                if let Some(message) = read_message(txn, table, id)? {
                    all.push(message);
                }
            }
            Ok(all)
        })
    }
}
