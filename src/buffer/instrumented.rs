//! A [`NotificationStore`] decorator that times every call and counts failures by operation,
//! whatever the backend behind it. Owns nothing else: results pass through unchanged.

use std::future::Future;
use std::time::Instant;

use async_trait::async_trait;

use super::{BufferedMessage, NewMessage, NotificationStore, StoreError, StoreStats, Table};
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

    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<BufferedMessage>, StoreError> {
        self.timed(StoreOperation::Due, self.store.due(now_ms, limit))
            .await
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

    async fn move_to_dead_letter(&self, id: u64, reason: String) -> Result<bool, StoreError> {
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
}
