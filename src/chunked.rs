//! De-chunking an HTTP/1.1 body (RFC 9112 §7.1), incrementally and within limits: a client's
//! request at the edge and a handler's answer in delivery go through this one decoder.
//!
//! Pure: bytes in, body bytes out, the caller reads from the socket. Chunk sizes go through
//! httparse, on whole size lines only; chunk extensions are ignored and trailer fields are
//! skipped (nothing on the other side could use them: requests and answers are re-framed with a
//! Content-Length). It bounds what it buffers (the body limit, one size line, the trailer
//! section) and never panics on input. Nothing here knows about sockets, routes or peers.

/// A chunk-size line (with extensions) longer than this is refused.
const MAX_SIZE_LINE: usize = 1024;
/// The trailer section (after the last chunk) may be at most this large.
const MAX_TRAILERS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size line")]
    BadSize,
    #[error("chunk data is not followed by CRLF")]
    BadDelimiter,
    #[error("trailer section too large or malformed")]
    BadTrailers,
    #[error("body exceeds {0} bytes")]
    TooLarge(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data: this many bytes left.
    Data(u64),
    /// After chunk data: expecting CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; bytes seen so far.
    Trailers(usize),
    Done,
}

/// The decoder's position in a chunked body.
#[derive(Debug, Clone)]
pub struct Dechunker {
    state: State,
    limit: usize,
}

impl Dechunker {
    /// A decoder that refuses bodies over `limit` bytes (decoded).
    pub fn new(limit: usize) -> Self {
        Dechunker {
            state: State::Size,
            limit,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what it can of `input` into `out`; returns how many input bytes it consumed.
    /// Unconsumed bytes are an incomplete line: feed them again with more after them. Once
    /// [`is_done`](Self::is_done), it consumes nothing more (what follows is the next request).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut at = 0;
        loop {
            let rest = &input[at..];
            match self.state {
                State::Done => return Ok(at),
                // httparse only ever sees a whole size line: on a partial one its answer can
                // depend on where the bytes were cut (found by the `http_edge` fuzz target).
                State::Size => match size_line(rest) {
                    None if rest.len() <= MAX_SIZE_LINE => return Ok(at),
                    None => return Err(ChunkError::BadSize),
                    Some(line) => match httparse::parse_chunk_size(line) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            at += used;
                            if size > self.limit.saturating_sub(out.len()) as u64 {
                                return Err(ChunkError::TooLarge(self.limit));
                            }
                            self.state = if size == 0 {
                                State::Trailers(0)
                            } else {
                                State::Data(size)
                            };
                        }
                        _ => return Err(ChunkError::BadSize),
                    },
                },
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(at);
                    }
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    out.extend_from_slice(&rest[..take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => return Ok(at),
                    _ => return Err(ChunkError::BadDelimiter),
                },
                State::Trailers(seen) => {
                    let Some(eol) = rest.iter().position(|&b| b == b'\n') else {
                        if seen + rest.len() > MAX_TRAILERS {
                            return Err(ChunkError::BadTrailers);
                        }
                        return Ok(at);
                    };
                    let line = &rest[..eol];
                    if seen + eol + 1 > MAX_TRAILERS || line.last().is_some_and(|&b| b != b'\r') {
                        return Err(ChunkError::BadTrailers);
                    }
                    at += eol + 1;
                    self.state = if line.len() <= 1 {
                        State::Done
                    } else {
                        State::Trailers(seen + eol + 1)
                    };
                }
            }
        }
    }
}

/// The size line at the start of `input`, up to and including its `\n`, if it is all there
/// within [`MAX_SIZE_LINE`] bytes.
fn size_line(input: &[u8]) -> Option<&[u8]> {
    let window = &input[..input.len().min(MAX_SIZE_LINE + 1)];
    window
        .iter()
        .position(|&b| b == b'\n')
        .map(|eol| &input[..=eol])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = Dechunker::new(1024);
        let mut out = Vec::new();
        let mut pending = Vec::new();
        let mut consumed_total = 0;
        for part in input.chunks(piece) {
            pending.extend_from_slice(part);
            let used = d.feed(&pending, &mut out)?;
            consumed_total += used;
            pending.drain(..used);
            if d.is_done() {
                break;
            }
        }
        assert!(d.is_done(), "incomplete");
        Ok((out, consumed_total))
    }

    #[test]
    fn decodes_whole_and_byte_by_byte_with_extensions_and_trailers() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, body.len()] {
            let (out, used) = decode_in_pieces(body, piece).unwrap();
            assert_eq!(out, b"hello world", "piece {piece}");
            assert_eq!(&body[used..], b"NEXT", "piece {piece}");
        }
    }

    #[test]
    fn refuses_oversize_bad_sizes_and_missing_crlf() {
        let mut out = Vec::new();
        assert_eq!(
            Dechunker::new(4).feed(b"5\r\nhello\r\n0\r\n\r\n", &mut out),
            Err(ChunkError::TooLarge(4))
        );
        for bad in [&b"zz\r\n"[..], b"ffffffffffffffffffff\r\n", b"5\r\nhelloXX"] {
            assert!(
                Dechunker::new(64).feed(bad, &mut Vec::new()).is_err(),
                "{bad:?}"
            );
        }
        let long_line = [b'1'; MAX_SIZE_LINE + 10];
        assert!(Dechunker::new(64).feed(&long_line, &mut out).is_err());
    }

    /// Found by the `http_edge` fuzz target: a size line whose extension held a NUL and other
    /// bytes was refused when it arrived whole, but waited for more when it arrived in pieces.
    #[test]
    fn fuzz_http_edge_size_line_verdict_does_not_depend_on_the_cut() {
        let body: &[u8] = b"9;x\0Transfer-E,ncod\xff\xff\0\0\r\n123456789\r\n0\r\n\r\n";
        let whole = {
            let mut d = Dechunker::new(1024);
            d.feed(body, &mut Vec::new()).map(|_| d.is_done())
        };
        for cut in 1..body.len() {
            let mut d = Dechunker::new(1024);
            let mut out = Vec::new();
            let verdict = (|| {
                let used = d.feed(&body[..cut], &mut out)?;
                d.feed(&body[used..], &mut out)?;
                Ok(d.is_done())
            })();
            assert_eq!(verdict, whole, "cut at {cut}");
        }
    }
}
