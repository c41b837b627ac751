//! The bytes of an answer on the client connection, and how they are written: whole answers in
//! one write within the write timeout, and the lingering close after an answer that ends the
//! connection.
//!
//! Owns the downstream wire format of the proxy's own answers and the connection headers of
//! every answer. It never decides what the answer is (the checks and the flow do) nor whether
//! the connection persists (the connection loop does).

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::flow::Reply;

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// After an answer that ends the connection, the client's unread bytes are read and dropped for
/// at most this long, so that closing does not reset the connection before the client read the
/// answer (a close with unread data sends RST, and the client's stack may drop the answer).
const LINGER: Duration = Duration::from_secs(2);
/// ... and at most this many bytes.
const LINGER_BYTES: usize = 256 * 1024;

/// How the connection goes on after this answer, as the answer must say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 default: nothing to say.
    KeepAlive,
    /// An HTTP/1.0 client that asked for keep-alive: it must be told it got it.
    KeepAlive10,
    Close,
}

/// The whole answer, head and body, ready for one write.
pub fn answer_bytes(
    reply: &Reply,
    allow_post: bool,
    persistence: Persistence,
    request_id: &str,
) -> Vec<u8> {
    match reply {
        Reply::Forwarded(answer) => {
            let mut bytes = answer.downstream_bytes(persistence == Persistence::Close);
            if persistence == Persistence::KeepAlive10 {
                let line_end = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
                bytes.splice(line_end..line_end, *b"Connection: keep-alive\r\n");
            }
            bytes
        }
        Reply::Made { status, body } => made_bytes(
            *status,
            &stamp(body, request_id),
            allow_post,
            persistence,
            Some(request_id),
        ),
    }
}

/// A proxy-made JSON answer, with `X-Request-Id` when there is one: the id of the log lines
/// that say what happened (the answer itself names no internals).
pub fn made_bytes(
    status: StatusCode,
    body: &[u8],
    allow_post: bool,
    persistence: Persistence,
    request_id: Option<&str>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    if allow_post {
        out.extend_from_slice(b"Allow: POST\r\n");
    }
    if let Some(id) = request_id {
        // The id is ASCII hex and `-` (see `logging::request_id`).
        out.extend_from_slice(b"X-Request-Id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match persistence {
        Persistence::KeepAlive => {}
        Persistence::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The proxy's JSON answer with `"request_id"` as its first field (every proxy-made body is a
/// JSON object; anything else is returned unchanged).
pub fn stamp(body: &[u8], request_id: &str) -> Vec<u8> {
    let Some(rest) = body.strip_prefix(b"{") else {
        return body.to_vec();
    };
    let rest = rest.trim_ascii_start();
    let mut out = Vec::with_capacity(body.len() + request_id.len() + 20);
    out.extend_from_slice(b"{\"request_id\":");
    // Serialized, not pasted, so the document stays valid whatever the id holds.
    out.extend_from_slice(&serde_json::to_vec(request_id).unwrap_or_default());
    if !rest.starts_with(b"}") {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    out
}

/// Writes `bytes` within `timeout`. `false`: the client is gone or too slow; close.
pub async fn write_within<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> bool {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    let mut write = std::pin::pin!(write);
    // An answer usually fits the socket's buffer and is written at the first try: that needs no
    // timer, nor the clock read that would set it.
    let first_try = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    let written = match first_try {
        Poll::Ready(result) => Ok(result),
        Poll::Pending => tokio::time::timeout(timeout, write).await,
    };
    match written {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "client went away before the answer");
            false
        }
        Err(_) => {
            tracing::debug!(
                ?timeout,
                "client did not take the answer within limits.write_timeout; closing"
            );
            false
        }
    }
}

/// Ends the connection after an answer the client may still be sending a request body (or a
/// huge head) towards: stop writing, then read and drop what comes until the client closes,
/// [`LINGER`] passes or [`LINGER_BYTES`] were dropped.
pub async fn lingering_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = tokio::time::timeout(LINGER, stream.shutdown()).await;
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_answers_carry_length_allow_and_connection() {
        let bytes = made_bytes(
            StatusCode::METHOD_NOT_ALLOWED,
            b"{}",
            true,
            Persistence::Close,
            Some("ab12-3"),
        );
        assert_eq!(
            bytes,
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\nAllow: POST\r\nX-Request-Id: ab12-3\r\nConnection: close\r\n\r\n{}"
        );
        let ok = made_bytes(StatusCode::OK, b"{}", false, Persistence::KeepAlive10, None);
        assert!(ok.windows(24).any(|w| w == b"Connection: keep-alive\r\n"));
    }

    #[test]
    fn stamp_puts_the_request_id_first_and_keeps_the_document_valid() {
        for body in [&b"{}"[..], b"{\"error\":\"x\",\"detail\":\"y\"}", b"{ }"] {
            let stamped = stamp(body, "ab12-3");
            let v: serde_json::Value = serde_json::from_slice(&stamped).unwrap();
            assert_eq!(
                v["request_id"],
                "ab12-3",
                "{}",
                String::from_utf8_lossy(&stamped)
            );
        }
        assert_eq!(&stamp(b"[]", "x")[..], b"[]");
    }
}
