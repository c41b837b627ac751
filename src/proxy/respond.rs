//! Writing an answer to the client: the proxy's own JSON answers through Pingora's response
//! writer, the handler's answers straight onto the connection in one write.
//!
//! Owns the bytes on the downstream wire and the keep-alive decision after an answer. It never
//! decides what the answer is.

use bytes::Bytes;
use http::StatusCode;
use pingora::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use tokio::io::AsyncWriteExt;

use crate::delivery::Answer;
use crate::flow::Reply;

/// Writes `reply`, then hands the connection back for reuse if it can carry another request
/// (never when `closing`: the process is shutting down or draining).
pub async fn write_reply(
    mut session: ServerSession,
    reply: Reply,
    request_id: &str,
    allow_post: bool,
    closing: bool,
) -> Option<ReusedHttpStream> {
    let persistent = HttpPersistentSettings::for_session(&session);
    let (header, body) = match reply {
        Reply::Forwarded(answer) => match session {
            ServerSession::H1(v1) => return forward_h1(v1, &answer, persistent, closing).await,
            other => {
                session = other;
                (answer.response_header(), answer.body)
            }
        },
        Reply::Made { status, body } => {
            let body = stamp(&body, request_id);
            let mut header = json_header(status, body.len());
            set_request_id(&mut header, request_id);
            if allow_post {
                header
                    .insert_header(http::header::ALLOW, "POST")
                    .expect("valid header");
            }
            (header, body)
        }
    };
    write_answer(&mut session, header, body).await;
    match session.finish().await {
        Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, persistent)),
        Err(e) => {
            tracing::debug!(error = %e, "connection not reusable");
            None
        }
    }
}

/// Writes the handler's answer straight onto the client connection: its head verbatim (minus
/// connection-level headers) and body in one write. Going around Pingora's response writer here
/// skips rebuilding a header map per request; the bytes are the same.
async fn forward_h1(
    mut v1: pingora::protocols::http::v1::server::HttpSession,
    answer: &Answer,
    persistent: HttpPersistentSettings,
    closing: bool,
) -> Option<ReusedHttpStream> {
    let keep_alive = !closing && v1.is_body_done() && client_keeps_alive(v1.req_header());
    let mut stream = v1.into_inner();
    let bytes = answer.downstream_bytes(!keep_alive);
    if let Err(e) = async {
        stream.write_all(&bytes).await?;
        stream.flush().await
    }
    .await
    {
        tracing::debug!(error = %e, "client went away before the answer");
        return None;
    }
    if keep_alive {
        Some(ReusedHttpStream::new(stream, Some(persistent)))
    } else {
        let _ = stream.shutdown().await;
        None
    }
}

/// HTTP/1.1 keeps the connection unless the client says `close`; HTTP/1.0 only on `keep-alive`.
fn client_keeps_alive(req: &RequestHeader) -> bool {
    let mut keep = req.version == http::Version::HTTP_11;
    for value in req.headers.get_all(http::header::CONNECTION) {
        for token in value
            .as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
        {
            if token.eq_ignore_ascii_case(b"close") {
                return false;
            }
            if token.eq_ignore_ascii_case(b"keep-alive") {
                keep = true;
            }
        }
    }
    keep
}

/// The head of a proxy-made JSON answer.
pub fn json_header(status: StatusCode, len: usize) -> ResponseHeader {
    let mut header = ResponseHeader::build(status, Some(2)).expect("valid status");
    header
        .insert_header(http::header::CONTENT_TYPE, "application/json")
        .expect("valid header");
    header
        .insert_header(http::header::CONTENT_LENGTH, len.to_string())
        .expect("valid header");
    header
}

/// `X-Request-Id` on a proxy-made answer: the id of the log lines that say what happened.
pub fn set_request_id(header: &mut ResponseHeader, request_id: &str) {
    // The id is ASCII hex and `-` (see `logging::request_id`), always a valid header value.
    let _ = header.insert_header("x-request-id", request_id);
}

/// The proxy's JSON answer with `"request_id"` as its first field (every proxy-made body is a
/// JSON object; anything else is returned unchanged).
pub fn stamp(body: &[u8], request_id: &str) -> Bytes {
    let Some(rest) = body.strip_prefix(b"{") else {
        return Bytes::copy_from_slice(body);
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
    out.into()
}

async fn write_answer(session: &mut ServerSession, header: ResponseHeader, body: Bytes) {
    if let Err(e) = session.write_response_header(Box::new(header)).await {
        tracing::debug!(error = %e, "client went away before the answer header");
        return;
    }
    if let Err(e) = session.write_response_body(body, true).await {
        tracing::debug!(error = %e, "client went away before the answer body");
    }
}

#[cfg(test)]
mod tests {
    use super::stamp;

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
