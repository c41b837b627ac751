//! The socket side of a probe's steps: DNS on a helper thread, TCP connect, the TLS handshake
//! (reading the leaf certificate's notAfter), one HTTP/1.1 exchange.
//!
//! Owns the bounds: every call gets only the time left before the probe's deadline, so a
//! probe ends by then whatever the network does ([`Deadlined`] re-arms the socket's timeout
//! before each read and write, the handshake's included). Each failure is a fixed cause word
//! and a detail for a person. Knows nothing of signing or of what an answer means.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::ssl::{HandshakeError, SslConnector, SslMethod, SslStream, SslVerifyMode};
use openssl::x509::{X509VerifyResult, X509};

/// The most bytes of an answer read.
const MAX_ANSWER: usize = 256 * 1024;

/// A step's failure: a fixed cause and what happened.
pub(super) type StepError = (&'static str, String);

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the probe's timeout passed")
}

fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    Ok(left)
}

/// The host's addresses. A lookup can hang far longer than a probe may take, so it runs on a
/// helper thread that is given up (left to finish alone) at the deadline.
pub(super) fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, StepError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("probe-dns".into())
        .spawn(move || {
            let found = (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(found);
        })
        .map_err(|e| ("error", format!("DNS: cannot start a lookup: {e}")))?;
    let within = left(deadline).map_err(|_| ("timeout", format!("DNS: {host}: no time left")))?;
    match rx.recv_timeout(within) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(("no_address", format!("DNS: {host} resolves to no address"))),
        Ok(Err(e)) => Err(("unresolvable", format!("DNS: cannot resolve {host}: {e}"))),
        Err(_) => Err((
            "timeout",
            format!("DNS: no answer for {host} within the timeout"),
        )),
    }
}

pub(super) fn connect(
    addrs: &[SocketAddr],
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), StepError> {
    let mut last = ("no_address", "TCP: no address to connect to".to_string());
    for addr in addrs {
        let tried = left(deadline).and_then(|within| TcpStream::connect_timeout(addr, within));
        match tried {
            Ok(tcp) => return Ok((tcp, *addr)),
            Err(e) => {
                let cause = match e.kind() {
                    io::ErrorKind::ConnectionRefused => "refused",
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timeout",
                    _ => "error",
                };
                last = (cause, format!("TCP: cannot connect to {addr}: {e}"));
            }
        }
    }
    Err(last)
}

/// The TLS handshake, verifying the certificate for `host` (see [`connector`]).
pub(super) fn handshake(
    host: &str,
    addr: SocketAddr,
    stream: Deadlined,
    extra_roots: &[X509],
    seen: &Arc<Mutex<Option<i64>>>,
) -> Result<SslStream<Deadlined>, StepError> {
    let setup = |e: openssl::error::ErrorStack| ("error", format!("TLS setup: {e}"));
    let connector = connector(extra_roots, seen).map_err(setup)?;
    match connector.connect(host, stream) {
        Ok(s) => Ok(s),
        Err(HandshakeError::WouldBlock(_)) => Err((
            "timeout",
            format!("TLS with {host} ({addr}): no handshake within the timeout"),
        )),
        Err(HandshakeError::Failure(mid)) => {
            let verify = mid.ssl().verify_result();
            if verify != X509VerifyResult::OK {
                return Err((
                    "certificate",
                    format!(
                        "TLS with {host} ({addr}): certificate refused: {}",
                        verify.error_string()
                    ),
                ));
            }
            let cause = match mid.error().io_error().map(io::Error::kind) {
                Some(io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => "timeout",
                _ => "handshake",
            };
            Err((cause, format!("TLS with {host} ({addr}): {}", mid.error())))
        }
        Err(HandshakeError::SetupFailure(e)) => Err(setup(e)),
    }
}

/// A client that trusts the system's roots and `extra_roots`, and puts the leaf certificate's
/// notAfter in `seen` as soon as the certificate arrives (so an expired one is still reported).
fn connector(
    extra_roots: &[X509],
    seen: &Arc<Mutex<Option<i64>>>,
) -> Result<SslConnector, openssl::error::ErrorStack> {
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    // The vendored OpenSSL looks for roots where it was built to (/usr/local/ssl), which hosts
    // and images rarely have: load the system's bundle, found as Pingora's connector finds it.
    let system = system_roots();
    if system.cert_file.is_some() || system.cert_dir.is_some() {
        builder.load_verify_locations(system.cert_file.as_deref(), system.cert_dir.as_deref())?;
    }
    for root in extra_roots {
        builder.cert_store_mut().add_cert(root.clone())?;
    }
    let leaf = seen.clone();
    builder.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
        if ctx.error_depth() == 0 {
            if let Some(cert) = ctx.current_cert() {
                *leaf.lock().unwrap_or_else(|e| e.into_inner()) = unix_seconds(cert.not_after());
            }
        }
        ok
    });
    Ok(builder.build())
}

/// Where this system keeps its trusted roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` first), looked
/// up once per process.
fn system_roots() -> &'static openssl_probe::ProbeResult {
    static ROOTS: OnceLock<openssl_probe::ProbeResult> = OnceLock::new();
    ROOTS.get_or_init(openssl_probe::probe)
}

/// Unix seconds of an ASN.1 time.
pub(super) fn unix_seconds(t: &Asn1TimeRef) -> Option<i64> {
    let diff = Asn1Time::from_unix(0).ok()?.diff(t).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

pub(super) trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// A TCP stream whose every read and write may only use the time left before `deadline`.
pub(super) struct Deadlined {
    pub tcp: TcpStream,
    pub deadline: Instant,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(left(self.deadline)?))?;
        self.tcp.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(left(self.deadline)?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

fn io_cause(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timeout",
        _ => "closed",
    }
}

/// Sends `request` and reads the answer: its head, then `Content-Length` bytes of body (or up
/// to the close when there is none).
pub(super) fn exchange(
    stream: &mut Box<dyn Conn>,
    request: &[u8],
) -> Result<(u16, Vec<u8>), StepError> {
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| (io_cause(&e), format!("cannot send the probe: {e}")))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((status, head_len, length)) = parse_head(&raw)? {
            if length.is_some_and(|n| raw.len() >= head_len + n) {
                let end = head_len + length.unwrap_or(0);
                return Ok((status, raw[head_len..end].to_vec()));
            }
        }
        if raw.len() > MAX_ANSWER {
            return Err(("too_large", "the answer is larger than 256 KiB".into()));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err((io_cause(&e), format!("no complete answer: {e}"))),
        }
    }
    match parse_head(&raw)? {
        Some((status, head_len, _)) => Ok((status, raw[head_len..].to_vec())),
        None => Err((
            "closed",
            format!(
                "the connection closed before an HTTP answer ({} bytes)",
                raw.len()
            ),
        )),
    }
}

/// Status, head length and `Content-Length` of a complete head; `None` while incomplete.
fn parse_head(raw: &[u8]) -> Result<Option<(u16, usize, Option<usize>)>, StepError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(raw) {
        Ok(httparse::Status::Complete(len)) => {
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
            Ok(Some((response.code.unwrap_or(0), len, length)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(("not_http", format!("the answer is not HTTP/1.1: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_times_become_unix_seconds() {
        let t = Asn1Time::from_unix(4_102_444_800).unwrap(); // 2100-01-01T00:00:00Z
        assert_eq!(unix_seconds(&t), Some(4_102_444_800));
        assert_eq!(unix_seconds(&Asn1Time::from_unix(0).unwrap()), Some(0));
    }

    /// Without `SSL_CERT_FILE` the vendored OpenSSL finds no root at all on most hosts. Cargo
    /// sets it for what it runs: see that case by running the test binary itself under
    /// `env -u SSL_CERT_FILE -u SSL_CERT_DIR`.
    #[test]
    fn the_systems_roots_are_trusted() {
        let seen = Arc::new(Mutex::new(None));
        let c = connector(&[], &seen).unwrap();
        assert!(!c.context().cert_store().all_certificates().is_empty());
    }
}
