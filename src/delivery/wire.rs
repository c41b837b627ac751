//! HTTP/1.1 on the upstream connection: the exact bytes sent, and reading the handler's answer.
//!
//! Owns framing only: which headers are connection-level (never forwarded), how a request is
//! framed for the handler, and how an answer's body is delimited (Content-Length, chunked, or
//! close). Parsing is httparse's; this module adds the framing rules of RFC 9112 §6 around it.
//! It knows nothing about peers, pools or timeouts.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::forwarded::Forwarding;
use crate::chunked::{ChunkError, Dechunker};

/// Header sections larger than this are refused (a notification handler answers a few lines).
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// Headers that describe one connection, not the message: never forwarded in either direction.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 9] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"content-length",
        b"expect",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The bytes sent upstream: the request line and header lines exactly as received (order,
/// case, spacing), minus hop-by-hop headers and untrusted forwarding headers, plus the
/// proxy's own `X-Forwarded-For`/`-Proto` (see [`Forwarding`]), then the body.
/// `Content-Length` stays where the client put it, with the client's spelling of the name,
/// its value set to the body as read (a chunked request gets one at the end). HTTP/1.0
/// request lines are sent as HTTP/1.1 so the upstream connection stays reusable.
pub fn upstream_request(raw_head: &[u8], body: &[u8], forwarding: &Forwarding) -> Vec<u8> {
    // Parsers skip empty lines before the request line; start at it, or it would be taken for
    // a header line and dropped.
    let start = raw_head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(raw_head.len());
    let raw_head = &raw_head[start..];
    // Room for what is added (X-Forwarded-For with an IPv6 address, -Proto, a Content-Length):
    // the head is written without growing the buffer.
    let mut out = Vec::with_capacity(raw_head.len() + body.len() + 128);
    let mut lines = Lines::of(raw_head);
    if let Some(request_line) = lines.next() {
        let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
        match request_line.strip_suffix(b"HTTP/1.0") {
            Some(prefix) => {
                out.extend_from_slice(prefix);
                out.extend_from_slice(b"HTTP/1.1");
            }
            None => out.extend_from_slice(request_line),
        }
        out.extend_from_slice(b"\r\n");
    }
    // Headers named in Connection are hop-by-hop too; most requests name none beyond the
    // standard tokens, so the list is usually empty and costs nothing.
    let connection_tokens: Vec<&[u8]> = lines
        .clone()
        .filter_map(connection_value)
        .flat_map(|value| value.split(|&b| b == b',').map(<[u8]>::trim_ascii))
        .filter(|t| !t.eq_ignore_ascii_case(b"keep-alive") && !t.eq_ignore_ascii_case(b"close"))
        .collect();
    let mut length = itoa::Buffer::new();
    let length = length.format(body.len());
    let mut framed = false;
    let mut proto_kept = false;
    let mut kept_for_end = None;
    for line in lines {
        let Some((name, _)) = header_name_value(line) else {
            continue;
        };
        // Re-framed in place rather than moved to the end: a handler that checks the signature
        // or logs the head sees the headers in the order the client sent them. A repeated
        // Content-Length (same value, or the head would not have parsed) is sent once.
        if name.eq_ignore_ascii_case(b"content-length") {
            if !framed {
                out.extend_from_slice(name);
                out.extend_from_slice(b": ");
                out.extend_from_slice(length.as_bytes());
                out.extend_from_slice(b"\r\n");
                framed = true;
            }
            continue;
        }
        let named_in_connection = !connection_tokens.is_empty()
            && connection_tokens
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name));
        if is_hop_by_hop(name) || named_in_connection || !forwarding.keeps(name) {
            continue;
        }
        proto_kept |= name.eq_ignore_ascii_case(b"x-forwarded-proto");
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(content);
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            // The list ends at its last non-blank byte: the peer goes right after it.
            let blank_tail = content.len() - content.trim_ascii_end().len();
            kept_for_end = Some(out.len() - blank_tail);
        }
        out.extend_from_slice(b"\r\n");
    }
    forwarding.complete(&mut out, kept_for_end, proto_kept);
    if !framed {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(length.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The lines of a head, split at LF (a CR before it stays on the line), as `split` would give
/// them, found with `memchr`: each head is split three times per request, and a byte-by-byte
/// split cost ~1,900 instructions of it (benches/load/per_request.py).
#[derive(Clone)]
struct Lines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Lines<'a> {
    fn of(head: &'a [u8]) -> Self {
        Lines { rest: Some(head) }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match memchr::memchr(b'\n', rest) {
            Some(end) => {
                self.rest = Some(&rest[end + 1..]);
                Some(&rest[..end])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// The value of a `Connection` header line, as [`header_name_value`] gives it, or `None` for
/// any other line. Every line of a head is asked, so it looks at 11 bytes first (the name ends
/// at the first colon: a `Connection` line has it at byte 10) instead of splitting each line.
fn connection_value(line: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"connection";
    if line.get(NAME.len()) != Some(&b':') || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return None;
    }
    header_name_value(line).map(|(_, value)| value)
}

fn header_name_value(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let colon = line.iter().position(|&b| b == b':')?;
    let (name, value) = line.split_at(colon);
    if name.is_empty() {
        return None;
    }
    Some((name, value[1..].trim_ascii()))
}

/// The handler's answer as read: its status, its head exactly as received, the whole body
/// (de-chunked), and whether the connection can be reused.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Status line and header lines as the handler sent them, up to and including the blank line.
    pub raw_head: Bytes,
    pub body: Bytes,
    pub reusable: bool,
}

impl Answer {
    /// The answer as sent on to the client: the handler's status line and header lines verbatim
    /// (order, case), minus connection-level headers, framed by `Content-Length`, then the body.
    /// With `close`, a `Connection: close` tells the client this connection ends here.
    pub fn downstream_bytes(&self, close: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw_head.len() + self.body.len() + 40);
        let mut lines = Lines::of(&self.raw_head);
        if let Some(status_line) = lines.next() {
            let status_line = status_line.strip_suffix(b"\r").unwrap_or(status_line);
            match status_line.strip_prefix(b"HTTP/1.0") {
                Some(rest) => {
                    out.extend_from_slice(b"HTTP/1.1");
                    out.extend_from_slice(rest);
                }
                None => out.extend_from_slice(status_line),
            }
            out.extend_from_slice(b"\r\n");
        }
        for line in lines {
            match header_name_value(line) {
                Some((name, _)) if !is_hop_by_hop(name) => {
                    out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
                    out.extend_from_slice(b"\r\n");
                }
                _ => {}
            }
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(self.body.len()).as_bytes());
        if close {
            out.extend_from_slice(b"\r\nConnection: close");
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Why no answer could be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection closed (or reset) before a single byte: on a pooled connection this is the
    /// keep-alive race, safe to retry on a fresh one.
    NothingRead,
    /// The handler broke HTTP/1.1; the detail says how.
    Broken(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

struct Head {
    len: usize,
    status: u16,
    framing: BodyFraming,
    keep_alive: bool,
}

/// Parses one response head at the start of `buf`: `Ok(None)` if it is not complete yet.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Broken(format!("invalid response head: {e}"))),
    };
    let status = resp.code.unwrap_or_default();
    if !(100..=999).contains(&status) {
        return Err(ReadError::Broken(format!("invalid status {status}")));
    }
    let http10 = resp.version == Some(0);
    // The same Content-Length rule as for requests: a list or repeated lines of one number.
    let content_length = crate::framing::content_length(
        resp.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| h.value),
    )
    .ok()
    .and_then(|n| n.map(usize::try_from).transpose().ok())
    .ok_or_else(|| ReadError::Broken("invalid or conflicting Content-Length".into()))?;
    let mut chunked = false;
    let mut keep_alive = !http10;
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked must be the final coding; anything else is delimited by close.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            if !chunked {
                keep_alive = false;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = match status {
        100..=199 | 204 | 304 => BodyFraming::None,
        _ if chunked => BodyFraming::Chunked,
        _ if !keep_alive && content_length.is_none() => BodyFraming::UntilClose,
        _ => match content_length {
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::UntilClose,
        },
    };
    if framing == BodyFraming::UntilClose {
        keep_alive = false;
    }
    Ok(Some(Head {
        len,
        status,
        framing,
        keep_alive,
    }))
}

/// Reads more bytes into `buf`; `Ok(0)` at end of stream.
async fn fill<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<usize, ReadError> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    stream
        .read_buf(buf)
        .await
        .map_err(|e| ReadError::Broken(format!("read failed: {e}")))
}

/// Reads one whole answer. `buf` is the connection's read buffer, kept across requests; it must
/// be empty on entry (a reusable connection never has bytes left over).
pub async fn read_answer<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_body: usize,
) -> Result<Answer, ReadError> {
    let head = loop {
        if let Some(head) = parse_head(buf)? {
            if (100..200).contains(&head.status) {
                if head.status == 101 {
                    return Err(ReadError::Broken(
                        "unexpected 101 Switching Protocols".into(),
                    ));
                }
                buf.advance(head.len); // 100 Continue and friends precede the real answer
                continue;
            }
            break head;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Broken(format!(
                "response head exceeds {MAX_HEAD} bytes"
            )));
        }
        let was_empty = buf.is_empty();
        match fill(stream, buf).await {
            Ok(0) if was_empty => return Err(ReadError::NothingRead),
            Ok(0) => {
                return Err(ReadError::Broken(
                    "connection closed inside the response head".into(),
                ))
            }
            Ok(_) => {}
            Err(_) if was_empty => return Err(ReadError::NothingRead),
            Err(e) => return Err(e),
        }
    };
    let mut raw_head = buf.split_to(head.len).freeze();
    // httparse skips empty lines before the status line; the head forwarded must start at it,
    // or the status line would be taken for a header line and dropped.
    let start = raw_head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(raw_head.len());
    raw_head.advance(start);
    let too_big = || ReadError::Broken(format!("response body exceeds {max_body} bytes"));
    let body = match head.framing {
        BodyFraming::None => Bytes::new(),
        BodyFraming::Length(n) => {
            if n > max_body {
                return Err(too_big());
            }
            while buf.len() < n {
                if fill(stream, buf).await? == 0 {
                    return Err(ReadError::Broken(
                        "connection closed inside the response body".into(),
                    ));
                }
            }
            buf.split_to(n).freeze()
        }
        BodyFraming::Chunked => read_chunked(stream, buf, max_body).await?,
        BodyFraming::UntilClose => {
            while fill(stream, buf).await? > 0 {
                if buf.len() > max_body {
                    return Err(too_big());
                }
            }
            buf.split().freeze()
        }
    };
    // Bytes after the answer mean the handler sent more than it framed: never reuse that.
    let reusable = head.keep_alive && buf.is_empty();
    Ok(Answer {
        status: head.status,
        raw_head,
        body,
        reusable,
    })
}

/// A chunked answer, de-chunked by the same decoder as a client's chunked request.
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_body: usize,
) -> Result<Bytes, ReadError> {
    let mut decoder = Dechunker::new(max_body);
    let mut body = Vec::new();
    loop {
        let used = decoder.feed(buf, &mut body).map_err(|e| match e {
            ChunkError::TooLarge(_) => {
                ReadError::Broken(format!("response body exceeds {max_body} bytes"))
            }
            other => ReadError::Broken(other.to_string()),
        })?;
        buf.advance(used);
        if decoder.is_done() {
            return Ok(Bytes::from(body));
        }
        if fill(stream, buf).await? == 0 {
            return Err(ReadError::Broken(
                "connection closed inside a chunked body".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
