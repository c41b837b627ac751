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

    /// The limit counts decoded bytes: exactly the limit passes, and a chunk that would pass
    /// it is refused as soon as its size line is read, before any of its data.
    #[test]
    fn a_body_of_exactly_the_limit_passes_and_a_chunk_past_it_is_refused_at_its_size() {
        let body = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        let (out, _) = decode_in_pieces(body, body.len()).unwrap();
        assert_eq!(out, b"helloworld");
        let mut d = Dechunker::new(10);
        assert!(d.feed(body, &mut Vec::new()).is_ok() && d.is_done());
        for limit in [9, 4, 0] {
            let mut out = Vec::new();
            let refused = Dechunker::new(limit).feed(&body[..18], &mut out);
            assert_eq!(refused, Err(ChunkError::TooLarge(limit)), "limit {limit}");
        }
        let mut out = Vec::new();
        assert_eq!(
            Dechunker::new(4).feed(b"5\r\n", &mut out),
            Err(ChunkError::TooLarge(4)),
            "refused at the size line, no data read"
        );
        assert!(out.is_empty());
    }

    /// A trailer line still arriving is held up to the trailer bound, and refused one byte past
    /// it, without waiting for its end.
    #[test]
    fn an_unfinished_trailer_is_held_up_to_its_bound_and_no_further() {
        for (len, refused) in [(MAX_TRAILERS, false), (MAX_TRAILERS + 1, true)] {
            let mut input = b"0\r\n".to_vec();
            input.extend(std::iter::repeat_n(b'a', len));
            let verdict = Dechunker::new(64).feed(&input, &mut Vec::new());
            if refused {
                assert_eq!(verdict, Err(ChunkError::BadTrailers), "{len}");
            } else {
                assert_eq!(
                    verdict,
                    Ok(3),
                    "{len}: the size line read, the trailer held"
                );
            }
        }
        // After a first trailer line, the bound counts both.
        let mut input = b"0\r\nX: 1\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_TRAILERS - 5));
        assert_eq!(
            Dechunker::new(64).feed(&input, &mut Vec::new()),
            Err(ChunkError::BadTrailers)
        );
    }

    /// Trailer field lines end in CRLF, and the whole section (every line and the blank one) is at
    /// most `MAX_TRAILERS` bytes: exactly that is read, one byte more refused.
    #[test]
    fn a_trailer_section_ends_in_crlf_and_is_bounded_over_all_its_lines() {
        let section = |lines: &[usize]| {
            let mut s = b"0\r\n".to_vec();
            for &len in lines {
                // "X: " + filler + CRLF is `len` bytes.
                s.extend(b"X: ");
                s.extend(std::iter::repeat_n(b'a', len - 5));
                s.extend(b"\r\n");
            }
            s.extend(b"\r\n");
            s
        };
        for lines in [
            vec![MAX_TRAILERS - 2],
            vec![1000, 1000, MAX_TRAILERS - 2002],
        ] {
            let input = section(&lines);
            let mut d = Dechunker::new(64);
            assert_eq!(
                d.feed(&input, &mut Vec::new()),
                Ok(input.len()),
                "{lines:?}"
            );
            assert!(d.is_done());
            let mut over = lines.clone();
            *over.last_mut().unwrap() += 1;
            let verdict = Dechunker::new(64).feed(&section(&over), &mut Vec::new());
            assert_eq!(verdict, Err(ChunkError::BadTrailers), "{over:?}");
        }
        let bare_lf = b"0\r\nX: 1\n\r\n";
        let verdict = Dechunker::new(64).feed(bare_lf, &mut Vec::new());
        assert_eq!(
            verdict,
            Err(ChunkError::BadTrailers),
            "a field line ending in a bare LF"
        );
    }

    /// A size line may be `MAX_SIZE_LINE` bytes before its LF; one byte more is refused.
    #[test]
    fn a_size_line_of_exactly_its_bound_is_read_and_one_byte_more_is_refused() {
        let line = |len: usize| {
            // "5;" + extension + CRLF: the LF at index `len`.
            let mut s = b"5;".to_vec();
            s.extend(std::iter::repeat_n(b'x', len - 3));
            s.extend(b"\r\nhello\r\n0\r\n\r\n");
            s
        };
        let (out, _) = decode_in_pieces(&line(MAX_SIZE_LINE), 64).unwrap();
        assert_eq!(out, b"hello");
        let verdict = Dechunker::new(64).feed(&line(MAX_SIZE_LINE + 1), &mut Vec::new());
        assert_eq!(verdict, Err(ChunkError::BadSize));
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
