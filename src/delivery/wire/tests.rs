//! Unit tests of the HTTP/1 framing of requests sent to and answers read from the handler.

use super::*;
use crate::delivery::Forwarding;

fn read(wire: &[u8]) -> Result<Answer, ReadError> {
    let mut stream = wire;
    let mut buf = BytesMut::new();
    block_on(read_answer(&mut stream, &mut buf, 1024))
}

/// A tiny executor for futures that never actually wait (reading from a byte slice).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn forwards_head_verbatim_minus_hop_by_hop() {
    let head = b"POST /n?bodySHA256=ab HTTP/1.1\r\nHost: voice.example.com\r\nX-Twilio-Signature: abc=\r\nconnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nContent-Length: 2\r\nX-Keep:  spaced value \r\n\r\n";
    let out = upstream_request(head, b"{}", &Forwarding::default());
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "POST /n?bodySHA256=ab HTTP/1.1\r\nHost: voice.example.com\r\nX-Twilio-Signature: abc=\r\nContent-Length: 2\r\nX-Keep:  spaced value \r\nX-Forwarded-Proto: http\r\n\r\n{}"
    );
}

#[test]
fn content_length_keeps_its_place_and_spelling() {
    let head = b"POST /n HTTP/1.1\r\nhost: h\r\ncontent-length:3\r\nX-Twilio-Signature: s\r\ncontent-length: 3\r\n\r\n";
    let text = String::from_utf8(upstream_request(head, b"abc", &Forwarding::default())).unwrap();
    assert_eq!(
        text,
        "POST /n HTTP/1.1\r\nhost: h\r\ncontent-length: 3\r\nX-Twilio-Signature: s\r\nX-Forwarded-Proto: http\r\n\r\nabc"
    );
}

#[test]
fn chunked_and_http10_requests_are_reframed() {
    let head = b"POST /n HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let text = String::from_utf8(upstream_request(head, b"abc", &Forwarding::default())).unwrap();
    assert_eq!(
        text,
        "POST /n HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: http\r\nContent-Length: 3\r\n\r\nabc"
    );
}

#[test]
fn content_length_answer() {
    let a =
        read(b"HTTP/1.1 404 Not Found\r\nX-Handler: v1\r\nContent-Length: 5\r\n\r\nnope!").unwrap();
    assert_eq!(a.status, 404);
    assert_eq!(&a.body[..], b"nope!");
    assert!(a.reusable);
    assert_eq!(
        String::from_utf8(a.downstream_bytes(false)).unwrap(),
        "HTTP/1.1 404 Not Found\r\nX-Handler: v1\r\nContent-Length: 5\r\n\r\nnope!"
    );
}

#[test]
fn chunked_answer_is_decoded_and_reframed() {
    let a = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n").unwrap();
    assert_eq!(&a.body[..], b"abcde");
    assert!(a.reusable);
    assert_eq!(
        String::from_utf8(a.downstream_bytes(true)).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde"
    );
}

#[test]
fn close_delimited_and_connection_close_are_not_reused() {
    let a = read(b"HTTP/1.1 200 OK\r\n\r\nuntil close").unwrap();
    assert_eq!(&a.body[..], b"until close");
    assert!(!a.reusable);
    let a = read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok").unwrap();
    assert!(!a.reusable);
    let a = read(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
    assert!(!a.reusable);
    let a = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA").unwrap();
    assert!(!a.reusable, "bytes beyond the framed body");
}

#[test]
fn informational_answers_are_skipped() {
    let a = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n").unwrap();
    assert_eq!(a.status, 204);
    assert!(a.body.is_empty());
}

/// One Content-Length rule for both sides (crate::framing): a list or repeated lines of one
/// number are that length in an answer too.
#[test]
fn a_content_length_list_of_one_number_frames_the_answer() {
    for wire in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    ] {
        let a = read(wire).unwrap();
        assert_eq!((a.status, &a.body[..]), (200, &b"ok"[..]));
        assert!(
            a.reusable,
            "framed by its length, so the connection is reusable"
        );
    }
}

#[test]
fn broken_answers() {
    assert_eq!(read(b"").unwrap_err(), ReadError::NothingRead);
    for wire in [
        &b"HTTP/1.1 200 OK\r\nContent-Le"[..],
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ] {
        assert!(
            matches!(read(wire), Err(ReadError::Broken(_))),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn forwarding_headers_are_kept_from_trusted_proxies_only_and_completed() {
    let head = b"POST /n HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.9\r\nx-forwarded-proto: https\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Host: evil.example\r\n\r\n";
    let client = Some("203.0.113.7".parse().unwrap());
    let from = |trusted, tls| {
        let forwarding = Forwarding {
            client,
            tls,
            trusted,
        };
        String::from_utf8(upstream_request(head, b"{}", &forwarding)).unwrap()
    };
    // A caller's own claims are dropped; the proxy says what it saw.
    assert_eq!(
        from(false, true),
        "POST /n HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nContent-Length: 2\r\n\r\n{}"
    );
    // A trusted proxy's lines stay as written; the peer joins its X-Forwarded-For list (on that
    // line) and its X-Forwarded-Proto stands (this hop may be plain HTTP behind its TLS).
    assert_eq!(
        from(true, false),
        "POST /n HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.9, 203.0.113.7\r\nx-forwarded-proto: https\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Host: evil.example\r\nContent-Length: 2\r\n\r\n{}"
    );
}

/// Found by the `wire` fuzz target: a request head preceded by an empty line was sent
/// upstream with an empty request line.
#[test]
fn fuzz_wire_request_leading_empty_line_keeps_request_line() {
    let out = upstream_request(
        b"\r\nPOST /n HTTP/1.1\r\nHost: h\r\n\r\n",
        b"{}",
        &Forwarding::default(),
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /n HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: http\r\nContent-Length: 2\r\n\r\n{}"
    );
}

/// Found by the `wire` fuzz target: an answer preceded by an empty line (which httparse
/// skips) was forwarded without its status line.
#[test]
fn fuzz_wire_leading_empty_line_keeps_status_line() {
    let a = read(b"\r\n\nHTTP/1.1 200 Ok\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok").unwrap();
    assert_eq!(
        String::from_utf8(a.downstream_bytes(false)).unwrap(),
        "HTTP/1.1 200 Ok\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok"
    );
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a handler sends back, reading it ends in an answer or an error, never a panic,
        /// and an answer's body never exceeds the limit.
        #[test]
        fn any_answer_bytes_are_read_or_refused(wire in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut stream = &wire[..];
            let mut buf = BytesMut::new();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            if let Ok(answer) = runtime.block_on(read_answer(&mut stream, &mut buf, 256)) {
                prop_assert!(answer.body.len() <= 256);
                let _ = answer.downstream_bytes(false);
            }
        }

        /// Well-formed answers survive with their body intact, however the bytes are chunked.
        #[test]
        fn chunked_bodies_are_reassembled(body in proptest::collection::vec(any::<u8>(), 0..300), cut in 1usize..50) {
            let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for chunk in body.chunks(cut) {
                wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let mut stream = &wire[..];
            let mut buf = BytesMut::new();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let answer = runtime.block_on(read_answer(&mut stream, &mut buf, 1024)).unwrap();
            prop_assert_eq!(&answer.body[..], &body[..]);
            prop_assert!(answer.reusable);
        }

        /// Heads are cut into the lines `split` at LF would give, whatever the bytes.
        #[test]
        fn lines_are_those_of_a_split_at_lf(head in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a')], 0..40)) {
            let split: Vec<&[u8]> = head.split(|&b| b == b'\n').collect();
            prop_assert_eq!(Lines::of(&head).collect::<Vec<_>>(), split);
        }

        /// A `Connection` line is recognised exactly as splitting it into name and value would.
        #[test]
        fn connection_lines_are_those_named_connection(
            name in prop::sample::select(vec!["connection", "Connection", "CONNECTION", "connectio", "connections", "x-connection", ""]),
            colon in prop::sample::select(vec![":", " :", "", "::"]),
            rest in "[ a-z,:\r]{0,10}",
        ) {
            let line = format!("{name}{colon}{rest}");
            let named = header_name_value(line.as_bytes())
                .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
                .map(|(_, value)| value);
            prop_assert_eq!(connection_value(line.as_bytes()), named);
        }

        /// Request heads of any shape are forwarded or skipped line by line, never panicked on.
        #[test]
        fn any_request_head_is_reframed(head in proptest::collection::vec(any::<u8>(), 0..400), body in proptest::collection::vec(any::<u8>(), 0..50)) {
            let out = upstream_request(&head, &body, &Forwarding::default());
            prop_assert!(out.ends_with(&body));
        }
    }
}

/// Found by the `wire` fuzz target's 10M run: a chunked answer whose size line is long and odd
/// (a `0` with an extension of tabs and non-ASCII bytes) was accepted when it arrived whole and
/// refused when it arrived in pieces; the answer reader now shares the edge's decoder, which
/// only ever judges whole size lines.
#[test]
fn fuzz_wire_chunked_verdict_does_not_depend_on_the_cut() {
    // The fuzzer's input as found: a head, then that size line, then more junk and a trailer
    // section that ends much later.
    let wire = include_bytes!("fuzz-chunked-cut.bin");
    let whole = read(wire).map(|a| a.body);
    for piece in 1..16 {
        let mut reader = Pieces(wire, piece);
        let mut buf = BytesMut::new();
        let cut = block_on(read_answer(&mut reader, &mut buf, 1024)).map(|a| a.body);
        assert_eq!(
            format!("{cut:?}"),
            format!("{whole:?}"),
            "in pieces of {piece}"
        );
    }
}

/// A stream that hands out at most `.1` bytes per read.
struct Pieces<'a>(&'a [u8], usize);

impl tokio::io::AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.1.min(self.0.len()).min(buf.remaining());
        buf.put_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        std::task::Poll::Ready(Ok(()))
    }
}
