//! Reading one HTTP/1 request head out of the connection's buffer: httparse does the parsing;
//! this module adds what RFC 9112 leaves to the server (how the body is framed, whether the
//! connection persists, `Expect`) and the limits of this edge.
//!
//! Pure and synchronous over a byte slice: no socket, no allocation beyond the small header
//! index (and none when the caller hands one back), so the fuzz target and the differential test against httparse drive it directly.
//! How a body is framed is [`crate::framing`]'s rule, applied here once per head; it never
//! judges what a header says about the notification (that is [`crate::checks`]).

use std::ops::Range;

pub use crate::framing::Framing;
use crate::framing::{request_framing, FramingError};

/// Header lines beyond this are refused: Twilio sends about a dozen.
pub const MAX_HEADERS: usize = 100;
/// A request head (request line, header lines, blank line) beyond this is refused.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Why a head cannot be served. Every one ends the connection: after it, where the next request
/// starts is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head is not valid HTTP/1.x: {0}")]
    Syntax(&'static str),
    #[error("request head has more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("request head is larger than {MAX_HEAD_BYTES} bytes")]
    TooLarge,
    #[error("both Content-Length and Transfer-Encoding are present")]
    LengthAndChunked,
    #[error("Content-Length is not one valid length")]
    BadContentLength,
}

/// One header line, as offsets into the buffer the head was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderAt {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// A parsed request head. Offsets point into the buffer given to [`parse`], which the caller
/// keeps unchanged while it uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, blank line included: the body (or the next request) starts here.
    pub len: usize,
    pub method: Range<usize>,
    pub target: Range<usize>,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor_version: u8,
    pub headers: Vec<HeaderAt>,
    pub framing: Framing,
    /// What the client said about persistence (before the server's own reasons to close).
    pub keep_alive: bool,
    /// `Expect: 100-continue` (HTTP/1.1 only: a 1.0 client cannot read an interim answer).
    pub expects_continue: bool,
}

impl Head {
    /// The values of every header named `name` (ASCII case-insensitive), in order.
    pub fn values<'b>(&'b self, buf: &'b [u8], name: &'b str) -> impl Iterator<Item = &'b [u8]> {
        self.headers
            .iter()
            .filter(move |h| buf[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(move |h| &buf[h.value.clone()])
    }

    /// The first value of `name`.
    pub fn value<'b>(&'b self, buf: &'b [u8], name: &'b str) -> Option<&'b [u8]> {
        self.values(buf, name).next()
    }
}

/// Parses the head at the start of `buf`. `Ok(None)`: incomplete, read more (the caller enforces
/// [`MAX_HEAD_BYTES`] on what it buffers; a complete head over it is refused here).
pub fn parse(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    parse_reusing(buf, &mut Vec::new())
}

/// [`parse`], with the header index in `spare` (emptied first; taken into the head only when
/// one is complete). A connection hands back the index of its previous request: one
/// allocation less per request.
pub fn parse_reusing(buf: &[u8], spare: &mut Vec<HeaderAt>) -> Result<Option<Head>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Syntax(syntax_name(e))),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let at = |s: &[u8]| {
        // httparse hands out subslices of `buf`: their offsets are the positions in it.
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    let (Some(method), Some(path), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::Syntax("incomplete request line"));
    };
    let minor_version = minor_version.min(1);
    spare.clear();
    spare.extend(req.headers.iter().map(|h| HeaderAt {
        name: at(h.name.as_bytes()),
        value: at(h.value),
    }));
    let headers = std::mem::take(spare);
    let mut head = Head {
        len,
        method: at(method.as_bytes()),
        target: at(path.as_bytes()),
        minor_version,
        headers,
        framing: Framing::None,
        // Both are read from the headers just below, once the head can look them up.
        keep_alive: false,
        expects_continue: false,
    };
    head.framing = framing(&head, buf)?;
    let mut close = false;
    let mut keep_alive_token = false;
    for value in head.values(buf, "connection") {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            close |= token.eq_ignore_ascii_case(b"close");
            keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    // RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive".
    head.keep_alive = !close && (minor_version == 1 || keep_alive_token);
    head.expects_continue = minor_version == 1
        && head
            .values(buf, "expect")
            .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    Ok(Some(head))
}

/// RFC 9112 §6.3 for a request, by the rule both sides share ([`crate::framing`]).
fn framing(head: &Head, buf: &[u8]) -> Result<Framing, HeadError> {
    request_framing(
        head.values(buf, "transfer-encoding"),
        head.values(buf, "content-length"),
    )
    .map_err(|e| match e {
        FramingError::LengthAndChunked => HeadError::LengthAndChunked,
        FramingError::BadContentLength => HeadError::BadContentLength,
    })
}

fn syntax_name(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests;
