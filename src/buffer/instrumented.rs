//! A [`NotificationStore`] decorator that times every data call (not `release_leases`, made
//! once at shutdown) and counts failures by operation, whatever the backend behind it, and
//! apart from them the calls whose task died (a write may have committed then). Owns nothing
//! else: results pass through unchanged.

use std::future::Future;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    BufferedMessage, DeadLettered, NewMessage, NotificationStore, StoreError, StoreStats, Table,
};
use crate::metrics::StoreMetrics;
use crate::outcome::StoreOperation;

#[derive(Debug)]
pub struct Instrumented<S> {
    store: S,
    metrics: StoreMetrics,
}

impl<S> Instrumented<S> {
    pub fn new(store: S, metrics: StoreMetrics) -> Self {
        Instrumented { store, metrics }
    }

    async fn timed<T>(
        &self,
        operation: StoreOperation,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .observe(operation, started.elapsed().as_secs_f64(), result.is_err());
        if let Err(StoreError::Aborted { .. }) = &result {
            // Counted apart: unlike other errors, the write may have landed.
            self.metrics.aborted(operation);
        }
        result
    }
}

#[async_trait]
impl<S: NotificationStore> NotificationStore for Instrumented<S> {
    fn location(&self) -> String {
        self.store.location()
    }

    async fn insert(&self, msg: NewMessage, request: Vec<u8>) -> Result<u64, StoreError> {
        self.timed(StoreOperation::Insert, self.store.insert(msg, request))
            .await
    }

    async fn due(
        &self,
        now_ms: u64,
        horizon_ms: u64,
        limit: usize,
        held: &[String],
    ) -> Result<Vec<BufferedMessage>, StoreError> {
        let call = self.store.due(now_ms, horizon_ms, limit, held);
        self.timed(StoreOperation::Due, call).await
    }

    async fn reschedule(
        &self,
        id: u64,
        attempts: u32,
        next_attempt_at_ms: u64,
        last_error: String,
    ) -> Result<bool, StoreError> {
        let call = self
            .store
            .reschedule(id, attempts, next_attempt_at_ms, last_error);
        self.timed(StoreOperation::Reschedule, call).await
    }

    async fn move_to_dead_letter(
        &self,
        id: u64,
        reason: String,
    ) -> Result<Option<DeadLettered>, StoreError> {
        let call = self.store.move_to_dead_letter(id, reason);
        self.timed(StoreOperation::MoveToDeadLetter, call).await
    }

    async fn remove(&self, table: Table, id: u64) -> Result<bool, StoreError> {
        self.timed(StoreOperation::Remove, self.store.remove(table, id))
            .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.timed(StoreOperation::Stats, self.store.stats()).await
    }

    async fn remove_redelivered(&self, id: u64) -> Result<bool, StoreError> {
        let call = self.store.remove_redelivered(id);
        self.timed(StoreOperation::Remove, call).await
    }

    async fn release(&self, id: u64) -> Result<(), StoreError> {
        self.timed(StoreOperation::Release, self.store.release(id))
            .await
    }

    fn lease(&self) -> Option<std::time::Duration> {
        self.store.lease()
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.store.release_leases().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::fixtures::{Script, Scripted};
    use crate::metrics::Metrics;

    /// A store whose insert task always dies (as `RedbStore` reports a panicked blocking task).
    #[derive(Debug)]
    struct Dying;

    #[async_trait]
    impl Script for Dying {
        async fn insert(&self, _: NewMessage) -> Result<u64, StoreError> {
            Err(StoreError::Aborted {
                operation: "insert",
            })
        }
    }

    /// Regression (issue 12, item 12): an insert whose task died was answered 503 like any
    /// failure, though it may have committed; now it is counted apart.
    #[tokio::test]
    async fn an_aborted_write_is_counted_apart() {
        let metrics = Metrics::new();
        let store = Instrumented::new(Scripted(Dying), metrics.store());
        let msg = NewMessage {
            route: "r".into(),
            upstream: "u".into(),
            received_at_ms: 0,
            expires_at_ms: 1,
            attempts: 1,
            next_attempt_at_ms: 0,
            last_error: String::new(),
            message_id: None,
            call_sid: None,
        };
        assert!(store.insert(msg, Vec::new()).await.is_err());
        assert_eq!(store.metrics.aborted_count(StoreOperation::Insert), 1);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains(r#"notify_proxy_buffer_store_aborted_total{operation="insert"} 1"#),
            "{text}"
        );
    }
}
