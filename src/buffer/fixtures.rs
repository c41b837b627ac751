//! Messages the store tests of every backend share, so the backends are held to one contract.

use super::{BufferedMessage, NewMessage};

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
