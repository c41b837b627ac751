//! What the buffer benchmarks share: a buffered notification as the live path stores it.

use twilio_notify_proxy::buffer::NewMessage;
use twilio_notify_proxy::clock::now_ms;

/// A pending message due now, expiring in 10 minutes, for `message_id`.
pub fn message(message_id: &str) -> NewMessage {
    let now = now_ms();
    NewMessage {
        route: "notify".into(),
        upstream: "handler".into(),
        received_at_ms: now,
        expires_at_ms: now + 600_000,
        attempts: 1,
        next_attempt_at_ms: now,
        last_error: "bench".into(),
        message_id: Some(message_id.to_owned()),
        call_sid: Some("CA0123456789abcdef0123456789abcdef".into()),
    }
}
