//! Fuzz target: HTTP/1.1 framing on the upstream connection (`delivery::wire`): reading the
//! handler's answer, re-framing it for the client, and framing the request sent upstream.
//!
//! Input: `split \0 answer-bytes` where the first byte picks how the answer bytes are cut into
//! reads (0: as few reads as possible; n: reads of 1..=n bytes, varied). The request side uses
//! the same bytes as a request head (the first complete head httparse finds) and body.
//!
//! Properties, beyond "no panic":
//! - the answer read does not depend on how the bytes arrive (status, head and body are the
//!   same; only reuse may differ, since a slow stream hides bytes sent past the body);
//! - an answer's status is final (>= 200), its body is within the limit;
//! - the bytes sent on to the client read back as the same status and body, with a single
//!   Content-Length, no connection-level header, and a close when asked for;
//! - the request sent upstream keeps every end-to-end header in order, drops connection-level
//!   ones, and is framed by exactly one Content-Length matching the body.
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};
use twilio_notify_proxy::delivery::{read_answer, upstream_request, Answer, Forwarding, ReadError};

const MAX_BODY: usize = 4096;

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "expect",
];

/// A stream that hands out `data` in reads whose sizes cycle through `1..=max_read`.
struct Trickle<'a> {
    data: &'a [u8],
    max_read: usize,
    next: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let want = if this.max_read == 0 {
            usize::MAX
        } else {
            this.next = this.next % this.max_read + 1;
            this.next
        };
        let n = want.min(this.data.len()).min(buf.remaining());
        buf.put_slice(&this.data[..n]);
        this.data = &this.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Runs a future that never waits (it reads from memory) to completion.
fn run<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("reading from memory never waits"),
    }
}

fn read(data: &[u8], max_read: usize) -> Result<Answer, ReadError> {
    let mut stream = Trickle {
        data,
        max_read,
        next: 0,
    };
    run(read_answer(&mut stream, &mut BytesMut::new(), MAX_BODY))
}

fuzz_target!(|data: &[u8]| {
    let (split, wire) = match data.split_first() {
        Some((&split, rest)) => (split as usize, rest.strip_prefix(b"\0").unwrap_or(rest)),
        None => (0, data),
    };
    check_answer(wire, split);
    check_request(wire);
});

fn check_answer(wire: &[u8], split: usize) {
    let whole = read(wire, 0);
    let trickled = read(wire, split % 64);
    match (&whole, &trickled) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.status, b.status);
            assert_eq!(a.raw_head, b.raw_head);
            assert_eq!(a.body, b.body);
            // A slow stream may stop right after the body; bytes beyond it then go unseen.
            assert!(!a.reusable || b.reusable);
        }
        (Err(a), Err(b)) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "{a:?} vs {b:?}"
        ),
        _ => panic!("the read depends on how the bytes arrive: {whole:?} vs {trickled:?}"),
    }
    let Ok(answer) = whole else {
        return;
    };
    assert!((200..=999).contains(&answer.status));
    assert!(answer.body.len() <= MAX_BODY);
    assert!(answer.raw_head.ends_with(b"\n\n") || answer.raw_head.ends_with(b"\n\r\n"));

    for close in [false, true] {
        let out = answer.downstream_bytes(close);
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&out) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("downstream bytes do not parse: {other:?}"),
        };
        assert_eq!(resp.code, Some(answer.status));
        assert_eq!(&out[len..], &answer.body[..]);
        let lengths: Vec<_> = resp
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| h.value)
            .collect();
        assert_eq!(lengths, [answer.body.len().to_string().as_bytes()]);
        for h in resp.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            let ours = name == "content-length" || (close && name == "connection");
            assert!(
                ours || !HOP_BY_HOP.contains(&name.as_str()),
                "{name} forwarded"
            );
        }
        // Read back by the proxy's own reader, which takes at most 100 header lines from a
        // handler: the proxy adds up to two (Content-Length, Connection), so an answer that
        // already had 99 or 100 is sent on with more than that reader takes. Clients have no
        // such limit; the framing of those answers is checked by httparse above.
        if resp.headers.len() > 100 {
            continue;
        }
        let again = read(&out, 0).expect("our own bytes read back");
        assert_eq!((again.status, &again.body), (answer.status, &answer.body));
        if close {
            assert!(!again.reusable);
        }
    }
}

fn check_request(data: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = req.parse(data) else {
        return;
    };
    let (head, body) = data.split_at(head_len);
    // Whether the peer is a trusted proxy and the connection TLS: drawn from the input's shape.
    let forwarding = Forwarding {
        client: Some(std::net::IpAddr::from([192, 0, 2, 1])),
        tls: head_len % 2 == 1,
        trusted: data.len() % 2 == 1,
    };
    let out = upstream_request(head, body, &forwarding);
    assert!(out.ends_with(body));

    // Three more than the input may hold: the Content-Length and the two forwarding lines we add.
    let mut out_headers = [httparse::EMPTY_HEADER; 67];
    let mut sent = httparse::Request::new(&mut out_headers);
    let sent_len = match sent.parse(&out) {
        Ok(httparse::Status::Complete(len)) => len,
        other => panic!("the upstream request does not parse: {other:?}"),
    };
    assert_eq!(&out[sent_len..], body);
    assert_eq!(sent.method, req.method);
    assert_eq!(sent.path, req.path);
    assert_eq!(sent.version, Some(1));

    // Tokens of the Connection header name more connection-level headers (RFC 9110 §7.6.1);
    // `close` is an option, not a header name.
    let named: Vec<String> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .filter(|t| t != "close")
        .collect();
    let end_to_end = |name: &str| {
        let name = name.to_ascii_lowercase();
        !HOP_BY_HOP.contains(&name.as_str()) && !named.contains(&name)
    };
    // What a client says about itself reaches the handler only from a trusted proxy.
    let believed = |name: &str| {
        let name = name.to_ascii_lowercase();
        forwarding.trusted
            || !(name.starts_with("x-forwarded-") && name.len() > "x-forwarded-".len()
                || name == "forwarded"
                || name == "x-real-ip")
    };
    let mut expected: Vec<(&str, Vec<u8>)> = req
        .headers
        .iter()
        .filter(|h| end_to_end(h.name) && believed(h.name))
        .map(|h| (h.name, h.value.to_vec()))
        .collect();
    let proto_kept = expected
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-proto"));
    // The peer joins the last kept X-Forwarded-For list, or gets a line of its own.
    match expected
        .iter_mut()
        .rev()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
    {
        Some((_, value)) => value.extend_from_slice(b", 192.0.2.1"),
        None => expected.push(("X-Forwarded-For", b"192.0.2.1".to_vec())),
    }
    if !proto_kept {
        let proto: &[u8] = if forwarding.tls { b"https" } else { b"http" };
        expected.push(("X-Forwarded-Proto", proto.to_vec()));
    }
    let (framing, forwarded): (Vec<_>, Vec<_>) = sent
        .headers
        .iter()
        .map(|h| (h.name, h.value.to_vec()))
        .partition(|(name, _)| name.eq_ignore_ascii_case("content-length"));
    assert_eq!(forwarded, expected);
    // One Content-Length for the body as read; it keeps the client's spelling of the name (and
    // its place), so the name is compared without case.
    assert_eq!(framing.len(), 1, "{framing:?}");
    assert!(framing[0].0.eq_ignore_ascii_case("content-length"));
    assert_eq!(framing[0].1, body.len().to_string().as_bytes());
}
