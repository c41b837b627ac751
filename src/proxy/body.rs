//! Reading a request body from Pingora's downstream session, within the body timeout and the
//! size limit. Owns nothing else: the framing was already checked, and what the body says is
//! judged later.

use bytes::{Bytes, BytesMut};
use pingora::protocols::http::ServerSession;

use crate::config::Limits;
use crate::outcome::{Reason, Rejection};
use crate::pipeline::{self, BodyFraming};

/// Reads the whole body within `limits.body_timeout` and `limits.max_body_bytes`.
pub async fn read_body(
    session: &mut ServerSession,
    framing: BodyFraming,
    limits: &Limits,
) -> Result<Bytes, Rejection> {
    let capacity = match framing {
        BodyFraming::Length(n) => n,
        BodyFraming::Chunked => 2048,
    };
    let read = async {
        // The usual body arrives as one chunk: keep it as is, copy only when there are several.
        let mut first: Option<Bytes> = None;
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    let so_far = first.as_ref().map_or(0, Bytes::len) + body.len();
                    if so_far + chunk.len() > limits.max_body_bytes {
                        return Err(pipeline::too_large(limits));
                    }
                    match first.take() {
                        None if body.is_empty() => first = Some(chunk),
                        None => body.extend_from_slice(&chunk),
                        Some(f) => {
                            body.reserve(capacity.max(f.len() + chunk.len()));
                            body.extend_from_slice(&f);
                            body.extend_from_slice(&chunk);
                        }
                    }
                }
                Ok(None) => return Ok(first.unwrap_or_else(|| body.freeze())),
                Err(e) => {
                    return Err(Rejection::new(
                        Reason::BodyIncomplete,
                        format!("could not read the whole body: {e}"),
                    ))
                }
            }
        }
    };
    match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(Rejection::new(
            Reason::BodyTimeout,
            format!("body did not arrive within {:?}", limits.body_timeout),
        )),
    }
}
