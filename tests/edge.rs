//! The HTTP/1 edge through the real binary (issue 11): pipelining, framing, keep-alive by
//! version, `Expect: 100-continue`, an oversized head answered before the close, the write
//! timeout and the connection cap. One test per fix, each named after what it pins.

mod harness;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use harness::*;

fn proxy(upstream: &MockUpstream, limits_extra: &str) -> Proxy {
    let mut spec = ProxySpec::new(upstream.addr);
    spec.limits_extra = limits_extra.to_string();
    Proxy::start(spec)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// What the next read says once the proxy is done with the connection: `true` when it closed
/// (end of stream or reset), `false` when the connection is still open (the read timed out).
fn closed_by_proxy(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut sink = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn as_http_10(raw: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(raw).unwrap();
    text.replacen(" HTTP/1.1\r\n", " HTTP/1.0\r\n", 1)
        .into_bytes()
}

#[test]
fn pipelined_pair_is_both_answered_and_both_delivered() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = proxy(&upstream, "");
    let mut both = twilio_request(&notification());
    both.extend_from_slice(&twilio_request(&notification()));
    let mut stream = connect(proxy.addr);
    stream.write_all(&both).unwrap();
    let mut reader = BufReader::new(stream);
    for n in 1..=2 {
        let answer = read_response(&mut reader).unwrap_or_else(|| panic!("answer {n}"));
        assert_eq!(answer.status, 200, "answer {n}: {}", answer.reason());
    }
    assert_eq!(upstream.request_count(), 2);
}

#[test]
fn content_length_with_transfer_encoding_is_refused_and_the_connection_closed() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = proxy(&upstream, "");
    let body = notification();
    let (target, signature) = sign(&body, TOKEN);
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let raw = request_with(
        &target,
        &[
            ("X-Twilio-Signature", &signature),
            ("Transfer-Encoding", "chunked"),
        ],
        "",
    );
    // `request_with` framed an empty body with Content-Length: 0; the chunked body follows.
    let mut raw = raw;
    raw.extend_from_slice(chunked.as_bytes());
    let mut stream = connect(proxy.addr);
    stream.write_all(&raw).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let answer = read_response(&mut reader).expect("an answer");
    assert_eq!(answer.status, 400, "{}", answer.reason());
    assert_eq!(answer.reason(), "malformed");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(closed_by_proxy(&mut stream, Duration::from_secs(5)));
    assert_eq!(upstream.request_count(), 0, "never forwarded");
}

/// A signed notification whose head has exactly `lines` header lines (padded with `X-Pad-*`).
fn with_header_lines(lines: usize) -> Vec<u8> {
    let body = notification();
    let (target, signature) = sign(&body, TOKEN);
    // request_with adds Host, User-Agent, Content-Type, the idempotency token, Content-Length.
    let pads: Vec<(String, String)> = (0..lines - 6)
        .map(|i| (format!("X-Pad-{i:03}"), "v".to_owned()))
        .collect();
    let mut extra: Vec<(&str, &str)> = vec![("X-Twilio-Signature", &signature)];
    extra.extend(pads.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let raw = request_with(&target, &extra, &body);
    let head = String::from_utf8_lossy(&raw)
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        head.lines().count() - 1,
        lines,
        "header lines after the request line"
    );
    raw
}

/// docs/config.md: heads are at most 100 header lines; more is answered 400 and the
/// connection closed. 100 is served (and forwarded whole), 101 is refused.
#[test]
fn a_head_of_100_header_lines_is_served_and_101_is_refused() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = proxy(&upstream, "");
    let hundred = with_header_lines(100);
    let r = proxy.send(&hundred);
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(upstream.requests(), [as_forwarded(&hundred)]);

    let mut stream = connect(proxy.addr);
    stream.write_all(&with_header_lines(101)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let r = read_response(&mut reader).expect("an answer");
    assert_refused(&r, 400, "malformed");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_by_proxy(&mut stream, Duration::from_secs(5)));
    assert_eq!(
        upstream.request_count(),
        1,
        "the 101-line head was not forwarded"
    );
    assert_eq!(
        proxy.metric(r#"notify_proxy_rejections_total{reason="malformed",route="unmatched"}"#),
        1.0
    );
}

#[test]
fn ten_thousand_header_lines_get_their_400_before_the_close() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = proxy(&upstream, "");
    let mut head = format!("POST {PATH} HTTP/1.1\r\nHost: voice.example.com\r\n");
    for i in 0..10_000 {
        head.push_str(&format!("X-Line-{i:05}: v\r\n"));
    }
    head.push_str("\r\n");
    let (first, rest) = head.as_bytes().split_at(8 * 1024);
    let mut stream = connect(proxy.addr);
    // Like curl: the whole request goes out before the answer is read. The proxy has answered
    // (and, without a lingering close, closed) by the time the rest of the head follows; a close
    // with unread bytes resets the connection and the client never gets to read its answer.
    stream.write_all(first).unwrap();
    thread::sleep(Duration::from_millis(300));
    let sent = rest
        .chunks(4096)
        .all(|piece| stream.write_all(piece).is_ok());
    assert!(
        sent,
        "the proxy reset the connection while the request was being sent"
    );
    let answer = read_response(&mut BufReader::new(stream)).expect("the 400, not a reset");
    assert_eq!(answer.status, 400);
    assert_eq!(answer.reason(), "malformed");
    assert_eq!(upstream.request_count(), 0);
}

#[test]
fn expect_100_continue_gets_continue_then_the_answer() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = proxy(&upstream, "");
    let body = notification();
    let (target, signature) = sign(&body, TOKEN);
    let raw = request_with(
        &target,
        &[
            ("X-Twilio-Signature", &signature),
            ("Expect", "100-continue"),
        ],
        &body,
    );
    let head_len = raw.len() - body.len();
    let mut stream = connect(proxy.addr);
    stream.write_all(&raw[..head_len]).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let interim = read_response(&mut reader).expect("100 Continue before the body is sent");
    assert_eq!(interim.status, 100);
    stream.write_all(body.as_bytes()).unwrap();
    let answer = read_response(&mut reader).expect("final answer");
    assert_eq!(answer.status, 200, "{}", answer.reason());
    assert_eq!(upstream.request_count(), 1);
    let forwarded = String::from_utf8_lossy(&upstream.requests()[0]).to_ascii_lowercase();
    assert!(!forwarded.contains("expect:"), "Expect is hop-by-hop");
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked_for() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = proxy(&upstream, "");

    let mut plain = connect(proxy.addr);
    plain
        .write_all(&as_http_10(twilio_request(&notification())))
        .unwrap();
    let answer = read_response(&mut BufReader::new(plain.try_clone().unwrap())).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.reason());
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(
        closed_by_proxy(&mut plain, Duration::from_secs(5)),
        "an HTTP/1.0 connection that did not ask for keep-alive is closed"
    );

    let asking = connect(proxy.addr);
    let mut writer = asking.try_clone().unwrap();
    let mut reader = BufReader::new(asking);
    for n in 1..=2 {
        let body = notification();
        let (target, signature) = sign(&body, TOKEN);
        let raw = request_with(
            &target,
            &[
                ("X-Twilio-Signature", &signature),
                ("Connection", "keep-alive"),
            ],
            &body,
        );
        writer.write_all(&as_http_10(raw)).unwrap();
        let answer = read_response(&mut reader).unwrap_or_else(|| panic!("answer {n}"));
        assert_eq!(answer.status, 200, "answer {n}: {}", answer.reason());
        assert_eq!(answer.header("connection"), Some("keep-alive"));
    }
    assert_eq!(upstream.request_count(), 3);
}

#[test]
fn slow_reader_is_cut_off_by_the_write_timeout() {
    const ANSWER: usize = 512 * 1024;
    const REQUESTS: usize = 16;
    let upstream = MockUpstream::start(Behaviour::status(200, &"x".repeat(ANSWER)));
    let proxy = proxy(&upstream, "  write_timeout: 1s\n");
    // A small receive window, so that the answers pile up at the proxy rather than in this
    // socket's buffer.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket
            .connect(proxy.addr)
            .await
            .unwrap()
            .into_std()
            .unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    let mut requests = Vec::new();
    for _ in 0..REQUESTS {
        requests.extend_from_slice(&twilio_request(&notification()));
    }
    stream.write_all(&requests).unwrap();
    // Read nothing for a while: the proxy's write of an answer stalls past its write timeout.
    thread::sleep(Duration::from_secs(3));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut received = 0;
    let mut sink = vec![0u8; 64 * 1024];
    let ended = loop {
        match stream.read(&mut sink) {
            Ok(0) => break true,
            Ok(n) => received += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false
            }
            Err(_) => break true,
        }
    };
    assert!(
        ended,
        "the proxy still held the connection after {received} bytes"
    );
    assert!(
        received < REQUESTS * ANSWER,
        "every answer arrived ({received} bytes): nothing was cut off"
    );
}

#[test]
fn connection_cap_holds_with_twice_as_many_connections_attempted() {
    const CAP: usize = 4;
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = proxy(&upstream, &format!("  max_connections: {CAP}\n"));
    let mut admitted: Vec<(TcpStream, BufReader<TcpStream>)> = (0..CAP)
        .map(|_| {
            let stream = connect(proxy.addr);
            let reader = BufReader::new(stream.try_clone().unwrap());
            (stream, reader)
        })
        .collect();
    for (n, (stream, reader)) in admitted.iter_mut().enumerate() {
        stream.write_all(&twilio_request(&notification())).unwrap();
        let answer = read_response(reader).unwrap_or_else(|| panic!("connection {n}"));
        assert_eq!(answer.status, 200, "{}", answer.reason());
    }
    for n in 0..CAP {
        let mut extra = connect(proxy.addr);
        assert!(
            closed_by_proxy(&mut extra, Duration::from_secs(5)),
            "connection {} beyond the cap of {CAP} was left open",
            CAP + n
        );
    }
    assert_eq!(
        proxy.metric("notify_proxy_connections_refused_total"),
        CAP as f64
    );
    // The admitted connections keep being served.
    for (n, (stream, reader)) in admitted.iter_mut().enumerate() {
        stream.write_all(&twilio_request(&notification())).unwrap();
        let answer = read_response(reader).unwrap_or_else(|| panic!("connection {n} again"));
        assert_eq!(answer.status, 200, "{}", answer.reason());
    }
    assert_eq!(upstream.request_count(), 2 * CAP);
}

/// One framing rule (src/framing.rs) decides a request's Content-Length: a list or repeated
/// lines of one number are that length and the request is served (the handler gets a single
/// Content-Length); members that disagree are no length at all, refused 400 `malformed` and the
/// connection closed. Before, `5, 5` was answered 411 by a second parser while `5, 6` got 400.
#[test]
fn a_content_length_list_of_one_number_is_served_and_one_that_disagrees_is_refused() {
    let upstream = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = proxy(&upstream, "");
    let length_as = |spelling: &dyn Fn(usize) -> String| {
        let body = notification();
        let (target, signature) = sign(&body, TOKEN);
        let raw = String::from_utf8(request_with(
            &target,
            &[("X-Twilio-Signature", &signature)],
            &body,
        ))
        .unwrap();
        let plain = format!("Content-Length: {}\r\n", body.len());
        raw.replace(&plain, &spelling(body.len())).into_bytes()
    };
    for spelling in [
        &(|n| format!("Content-Length: {n}, {n}\r\n")) as &dyn Fn(usize) -> String,
        &|n| format!("Content-Length: {n},{n}\r\n"),
        &|n| format!("Content-Length: {n}\r\nContent-Length: {n}\r\n"),
    ] {
        let answer = proxy.send(&length_as(spelling));
        assert_eq!((answer.status, answer.text().as_str()), (200, "ok"));
        let received = String::from_utf8(upstream.requests().last().unwrap().clone()).unwrap();
        assert_eq!(
            received.matches("Content-Length").count() + received.matches("content-length").count(),
            1,
            "one Content-Length forwarded: {received}"
        );
    }
    let served = upstream.request_count();
    let mut stream = connect(proxy.addr);
    stream
        .write_all(&length_as(&|n| {
            format!("Content-Length: {n}, {}\r\n", n + 1)
        }))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let answer = read_response(&mut reader).expect("an answer");
    assert_eq!((answer.status, answer.reason()), (400, "malformed".into()));
    assert!(closed_by_proxy(&mut stream, Duration::from_secs(5)));
    assert_eq!(upstream.request_count(), served, "never forwarded");
}
