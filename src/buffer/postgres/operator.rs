//! What operators (the `buffer` commands) do on the shared buffer beyond the running proxy's
//! calls: list, show, requeue and purge dead letters, and give back this instance's leases.

use super::store::{
    dead_reason_column, message_from_row, meta_from_row, table_name, PostgresStore, META,
};
use super::to_i64;
use crate::buffer::{BufferedMessage, BufferedMeta, StoreError, Table};

impl PostgresStore {
    /// Metadata of every message in `table`, oldest id first (without the request bytes).
    pub async fn list(&self, table: Table) -> Result<Vec<BufferedMeta>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT {META}, {} FROM {{s}}.{} ORDER BY id",
            dead_reason_column(table),
            table_name(table)
        ));
        self.inner
            .pool
            .call("list", async {
                let client = self.inner.pool.client().await?;
                let rows = client.query(&sql, &[]).await?;
                rows.iter().map(meta_from_row).collect()
            })
            .await
    }

    /// One message, wherever it is.
    pub async fn get(&self, id: u64) -> Result<Option<(Table, BufferedMessage)>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT {META}, NULL::text, request, 0 FROM {{s}}.pending WHERE id = $1
             UNION ALL
             SELECT {META}, dead_reason, request, 1 FROM {{s}}.dead_letter WHERE id = $1"
        ));
        self.inner
            .pool
            .call("get", async {
                let client = self.inner.pool.client().await?;
                let Some(row) = client.query_opt(&sql, &[&to_i64(id)]).await? else {
                    return Ok(None);
                };
                let table = match row.try_get::<_, i32>(12)? {
                    0 => Table::Pending,
                    _ => Table::DeadLetter,
                };
                Ok(Some((table, message_from_row(&row)?)))
            })
            .await
    }

    /// Moves a dead-letter message back to pending, due now: attempts kept, `dead_reason`
    /// cleared, `expires_at_ms = now_ms + ttl_ms`. False if it is not in the dead letter table.
    /// An operator's decision, so not refused when the pending table is full.
    pub async fn requeue_dead(
        &self,
        id: u64,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "WITH moved AS (DELETE FROM {s}.dead_letter WHERE id = $1 RETURNING *)
             INSERT INTO {s}.pending (id, route, upstream, received_at_ms, expires_at_ms,
                 attempts, next_attempt_at_ms, last_error, message_id, call_sid, request)
             SELECT id, route, upstream, received_at_ms, $3, attempts, $2, last_error,
                 message_id, call_sid, request
             FROM moved",
        );
        let expires = to_i64(now_ms.saturating_add(ttl_ms));
        self.inner
            .pool
            .call("requeue_dead", async {
                let client = self.inner.pool.client().await?;
                let n = client
                    .execute(&sql, &[&to_i64(id), &to_i64(now_ms), &expires])
                    .await?;
                Ok(n == 1)
            })
            .await
    }

    /// Deletes dead-letter messages received before `received_before_ms` (all of them when
    /// `None`). Returns how many.
    pub async fn purge_dead(&self, received_before_ms: Option<u64>) -> Result<usize, StoreError> {
        let sql =
            self.sql("DELETE FROM {s}.dead_letter WHERE $1::bigint IS NULL OR received_at_ms < $1");
        let cutoff = received_before_ms.map(to_i64);
        self.inner
            .pool
            .call("purge_dead", async {
                let client = self.inner.pool.client().await?;
                let n = client.execute(&sql, &[&cutoff]).await?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            })
            .await
    }

    /// Gives back this instance's leases (at shutdown), so other instances redeliver those
    /// messages now instead of after the lease. Returns how many.
    pub async fn release_claims(&self) -> Result<u64, StoreError> {
        let sql = self.sql(
            "UPDATE {s}.pending SET lease_until = NULL, claimed_by = NULL
             WHERE claimed_by = $1",
        );
        self.inner
            .pool
            .call("release_claims", async {
                let client = self.inner.pool.client().await?;
                Ok(client.execute(&sql, &[&self.inner.instance]).await?)
            })
            .await
    }
}
