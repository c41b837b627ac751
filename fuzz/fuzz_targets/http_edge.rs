//! Fuzz target: the edge's request head parser (`edge::head::parse`) and chunked body decoder
//! (`chunked::Dechunker`), on the bytes a client sends.
//!
//! Input: `split` byte, then the bytes of the connection. `split` picks how the body bytes are
//! cut into reads (0: one read; n: reads of 1..=n bytes, varied).
//!
//! Properties, beyond "no panic":
//! - the head parser agrees with httparse: same head length, method, target, version and header
//!   lines; incomplete exactly when httparse is (below the size limit); every offset it hands
//!   out lies inside the head;
//! - a complete head parses the same from exactly its own bytes, and a strict prefix of it is
//!   incomplete (so a head cut across reads is read the same);
//! - framing is never both chunked and a length; HTTP/1.0 persists only with a keep-alive token;
//! - de-chunking does not depend on how the bytes arrive, never yields more than its limit, and
//!   never consumes past the end of the chunked body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twilio_notify_proxy::edge::head::{self, Framing, HeadError, MAX_HEADERS};
use twilio_notify_proxy::chunked::{ChunkError, Dechunker};

const BODY_LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split, conn)) = data.split_first() else {
        return;
    };
    let ours = head::parse(conn);
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let theirs = req.parse(conn);
    let head = match (ours, theirs) {
        (Ok(None), Ok(httparse::Status::Partial)) => return,
        (Err(HeadError::TooLarge), Ok(httparse::Status::Partial)) => {
            assert!(conn.len() >= head::MAX_HEAD_BYTES);
            return;
        }
        (Err(HeadError::TooManyHeaders), Err(httparse::Error::TooManyHeaders)) => return,
        (Err(HeadError::Syntax(_)), Err(_)) => return,
        (Err(HeadError::LengthAndChunked | HeadError::BadContentLength), Ok(httparse::Status::Complete(_))) => return,
        (Err(HeadError::TooLarge), Ok(httparse::Status::Complete(n))) => {
            assert!(n > head::MAX_HEAD_BYTES);
            return;
        }
        (Ok(Some(head)), Ok(httparse::Status::Complete(n))) => {
            assert_eq!(head.len, n);
            head
        }
        (ours, theirs) => panic!("disagree: ours {ours:?}, httparse {theirs:?}"),
    };
    assert_eq!(&conn[head.method.clone()], req.method.unwrap().as_bytes());
    assert_eq!(&conn[head.target.clone()], req.path.unwrap().as_bytes());
    assert_eq!(head.minor_version, req.version.unwrap());
    assert_eq!(head.headers.len(), req.headers.len());
    for (h, t) in head.headers.iter().zip(req.headers.iter()) {
        assert!(h.name.end <= head.len && h.value.end <= head.len);
        assert_eq!(&conn[h.name.clone()], t.name.as_bytes());
        assert_eq!(&conn[h.value.clone()], t.value);
    }
    assert_eq!(head::parse(&conn[..head.len]), Ok(Some(head.clone())));
    assert_eq!(head::parse(&conn[..head.len - 1]), Ok(None));
    if head.minor_version == 0 && head.keep_alive {
        let asked = head
            .values(conn, "connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"keep-alive"));
        assert!(asked, "HTTP/1.0 kept alive without being asked");
    }
    if head.framing != Framing::Chunked {
        return;
    }
    let body = &conn[head.len..];
    let whole = dechunk(body, body.len().max(1));
    let pieces = dechunk(body, usize::from(split).max(1));
    assert_eq!(whole, pieces, "de-chunking depends on how the bytes arrive");
    if let Ok(Some((decoded, used))) = whole {
        assert!(decoded.len() <= BODY_LIMIT);
        assert!(used <= body.len());
    }
});

/// De-chunks `input` fed in reads of at most `max_read` bytes. `Ok(None)`: incomplete.
fn dechunk(input: &[u8], max_read: usize) -> Result<Option<(Vec<u8>, usize)>, ChunkError> {
    let mut decoder = Dechunker::new(BODY_LIMIT);
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut consumed = 0;
    let mut at = 0;
    let mut step = 0;
    while !decoder.is_done() {
        if at == input.len() {
            return Ok(None);
        }
        step += 1;
        let take = 1 + (step * 7) % max_read;
        let end = (at + take).min(input.len());
        pending.extend_from_slice(&input[at..end]);
        at = end;
        let used = decoder.feed(&pending, &mut out)?;
        assert!(used <= pending.len());
        consumed += used;
        pending.drain(..used);
    }
    Ok(Some((out, consumed)))
}
