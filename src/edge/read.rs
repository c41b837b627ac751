//! Reading a request from the client connection: a head into the per-connection buffer, then
//! its body as framed (`Content-Length` in place, chunked de-chunked), within the time limits.
//! `100 Continue` is sent here, once the head passed its checks and the client waits for it.

use bytes::{Buf, BytesMut};
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;
use tokio::time::Instant as Deadline;

use super::head::{self, Head, HeadError, HeaderAt};
use super::respond::{write_within, CONTINUE};
use crate::checks::{self, BodyFraming};
use crate::chunked::{ChunkError, Dechunker};
use crate::outcome::{Reason, Rejection};
use crate::snapshot::Snapshot;

/// The buffer a connection starts with: a Twilio notification (head and body) fits in it.
pub(super) const INITIAL_BUFFER: usize = 4096;
/// Room a read gets at least; the buffer doubles when less is left.
const MIN_READ: usize = 1024;

/// Where the body of the current request is.
pub(super) enum Body {
    /// `buf[head.len..head.len + n]`: the usual case, no copy.
    InBuffer(usize),
    /// De-chunked; the head was copied out first (the buffer then moved past it).
    Owned { head: Vec<u8>, body: Vec<u8> },
}

/// How reading a body failed: the rejection to answer with (the connection then closes).
pub(super) type BodyResult = Result<Body, Rejection>;

/// Reads until `buf` starts with a complete head. `Ok(None)`: the client closed or went quiet
/// (at the deadline) before sending one. `spare`: a header index to reuse (see
/// [`head::parse_reusing`]).
pub(super) async fn read_head(
    stream: &mut Stream,
    buf: &mut BytesMut,
    deadline: Deadline,
    spare: &mut Vec<HeaderAt>,
) -> Result<Option<Head>, HeadError> {
    loop {
        if !buf.is_empty() {
            if let Some(head) = head::parse_reusing(buf, spare)? {
                return Ok(Some(head));
            }
        }
        match read_more(stream, buf, deadline).await {
            Some(n) if n > 0 => {}
            _ => return Ok(None),
        }
    }
}

/// One read into the buffer's spare room (grown first if little is left). `None` on timeout or
/// error, `Some(0)` at the end of the stream.
async fn read_more(stream: &mut Stream, buf: &mut BytesMut, deadline: Deadline) -> Option<usize> {
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(buf.len().max(INITIAL_BUFFER));
    }
    match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
        Ok(Ok(n)) => Some(n),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "client connection failed");
            None
        }
        Err(_) => {
            tracing::debug!("nothing more from the client within the time limit");
            None
        }
    }
}

/// Reads the body as framed, within `limits.body_timeout` (the whole body) and
/// `limits.max_body_bytes` (already checked against a declared length by `check_head`).
pub(super) async fn read_body(
    snap: &Snapshot,
    stream: &mut Stream,
    buf: &mut BytesMut,
    head: &Head,
    framing: BodyFraming,
) -> BodyResult {
    let limits = &snap.limits;
    // From here: the whole body must arrive within this (read only when a body is still to
    // come: a notification's body usually came with its head).
    let deadline = || Deadline::now() + limits.body_timeout;
    let timed_out = || {
        Rejection::new(
            Reason::BodyTimeout,
            format!("body did not arrive within {:?}", limits.body_timeout),
        )
    };
    let incomplete = || Rejection::new(Reason::BodyIncomplete, "the body ended early");
    let complete_in_buffer = match framing {
        BodyFraming::Length(n) => buf.len() >= head.len + n,
        BodyFraming::Chunked => false,
    };
    if head.expects_continue && !complete_in_buffer && buf.len() == head.len {
        // Only once the head passed its checks, and only if the client is waiting for it (it
        // sent no body byte yet).
        if !write_within(stream, CONTINUE, limits.write_timeout).await {
            return Err(incomplete());
        }
    }
    match framing {
        BodyFraming::Length(n) => {
            let end = head.len + n;
            if buf.capacity() < end {
                buf.reserve(end - buf.len());
            }
            if buf.len() < end {
                let deadline = deadline();
                while buf.len() < end {
                    match read_more(stream, buf, deadline).await {
                        Some(0) => return Err(incomplete()),
                        Some(_) => {}
                        None if Deadline::now() >= deadline => return Err(timed_out()),
                        None => return Err(incomplete()),
                    }
                }
            }
            Ok(Body::InBuffer(n))
        }
        BodyFraming::Chunked => {
            let deadline = deadline();
            let head_bytes = buf[..head.len].to_vec();
            buf.advance(head.len);
            let mut dechunker = Dechunker::new(limits.max_body_bytes);
            let mut body = Vec::with_capacity(2048);
            loop {
                match dechunker.feed(buf, &mut body) {
                    Ok(used) => buf.advance(used),
                    Err(ChunkError::TooLarge(_)) => return Err(checks::too_large(limits)),
                    Err(e) => {
                        return Err(Rejection::new(
                            Reason::Malformed,
                            format!("invalid chunked body: {e}"),
                        ))
                    }
                }
                if dechunker.is_done() {
                    return Ok(Body::Owned {
                        head: head_bytes,
                        body,
                    });
                }
                match read_more(stream, buf, deadline).await {
                    Some(0) => return Err(incomplete()),
                    Some(_) => {}
                    None if Deadline::now() >= deadline => return Err(timed_out()),
                    None => return Err(incomplete()),
                }
            }
        }
    }
}
