//! Messages the store tests of every backend share, so the backends are held to one contract,
//! and [`Scripted`]: a store for tests that script only its inserts or its reads.

use async_trait::async_trait;

use super::{
    BufferedMessage, DeadLettered, NewMessage, NotificationStore, StoreError, StoreStats, Table,
};

pub fn message(received_at_ms: u64, next_attempt_at_ms: u64) -> NewMessage {
    NewMessage {
        route: "voice".to_owned(),
        upstream: "handler".to_owned(),
        received_at_ms,
        expires_at_ms: received_at_ms + 60_000,
        attempts: 1,
        next_attempt_at_ms,
        last_error: "connect refused".to_owned(),
        message_id: Some(format!("RU{received_at_ms}")),
        call_sid: Some("CA123".to_owned()),
    }
}

/// A request whose body carries `tag`, so two messages' bytes differ.
pub fn request(tag: u64) -> Vec<u8> {
    format!("POST /notify HTTP/1.1\r\nContent-Length: 2\r\n\r\n{{{tag}}}").into_bytes()
}

/// The ids of `messages`, in order.
pub fn ids(messages: &[BufferedMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.meta.id).collect()
}

/// The two calls a test double scripts; what it does not script answers empty.
#[async_trait]
pub trait Script: Send + Sync + std::fmt::Debug {
    async fn insert(&self, _msg: NewMessage) -> Result<u64, StoreError> {
        unreachable!("this test does not insert")
    }
    async fn due(&self) -> Result<Vec<BufferedMessage>, StoreError> {
        Ok(Vec::new())
    }
}

/// A [`NotificationStore`] that runs a [`Script`] for `insert` and `due` and holds nothing
/// else: no rescheduling, dead letters, removals or counts. Derefs to the script, so a test
/// reads its double's state through the store.
#[derive(Debug)]
pub struct Scripted<S>(pub S);

impl<S> std::ops::Deref for Scripted<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.0
    }
}

#[async_trait]
impl<S: Script> NotificationStore for Scripted<S> {
    fn location(&self) -> String {
        "scripted".into()
    }
    async fn insert(&self, msg: NewMessage, _request: Vec<u8>) -> Result<u64, StoreError> {
        self.0.insert(msg).await
    }
    async fn due(
        &self,
        _: u64,
        _: u64,
        _: usize,
        _: &[String],
    ) -> Result<Vec<BufferedMessage>, StoreError> {
        self.0.due().await
    }
    async fn reschedule(&self, _: u64, _: u32, _: u64, _: String) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn move_to_dead_letter(
        &self,
        _: u64,
        _: String,
    ) -> Result<Option<DeadLettered>, StoreError> {
        Ok(None)
    }
    async fn remove(&self, _: Table, _: u64) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(StoreStats::default())
    }
}
