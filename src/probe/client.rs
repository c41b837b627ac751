//! The sending side of a probe, shared by `twilio-notify-proxy probe` and the proxy's own
//! `probe.public`: build and sign the synthetic notification, then run it as the [`Step`]s
//! `dns`, `connect`, `tls` and `answer`, each timed, the served certificate's notAfter read
//! during `tls`.
//!
//! Owns the request (signed as Twilio signs, marked as a probe) and the order of the steps, each
//! timed: one blocking HTTP/1.1 exchange over TCP or TLS (the system trust store plus optional
//! extra roots, through OpenSSL), all of it within the target's timeout ([`super::wire`] does
//! the socket calls and their bounds). What the answer means is [`super::answer`]'s; the
//! marker and the body are [`super`]'s; signing is `signature`'s. Never logs: callers report.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::x509::X509;

use super::answer::{judge, Sent, Verdict};
use super::wire::{connect, exchange, handshake, resolve, Conn, Deadlined};
use super::{notification, Mode, Step, HEADER};
use crate::signature::{sign_json, SignedUrl, SigningKey};

/// Where a probe goes and how long it may take.
pub struct Target<'a> {
    /// The URL configured in Twilio.
    pub url: &'a str,
    /// Connect here instead of resolving the URL's host (like curl --resolve).
    pub connect: Option<SocketAddr>,
    /// Trust anchors added to the system's (an internal CA, a test certificate).
    pub extra_roots: &'a [X509],
    /// The whole probe, DNS to answer, ends within this.
    pub timeout: Duration,
}

/// What a probe says and who signs it.
pub struct Signer<'a> {
    pub key: &'a SigningKey,
    /// Where the key came from, as an operator names it (for a wrong-token diagnosis).
    pub token: &'a str,
    pub mode: Mode,
    /// The Account SID in the body.
    pub account: &'a str,
    /// The identity in `twi_to`.
    pub identity: &'a str,
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// An answer came back and was judged (passed or not): step `answer`.
    Answered { status: u16, verdict: Verdict },
    /// A step failed before an answer could be judged.
    Failed {
        step: Step,
        /// A fixed word for the kind of failure (`refused`, `timeout`, `certificate`, ...).
        cause: &'static str,
        detail: String,
    },
}

/// One probe's result.
#[derive(Debug, Clone)]
pub struct Report {
    /// Each step's duration in [`Step::ALL`] order: `None` for a step not reached, zero for one
    /// skipped (an IP address or a `connect` address needs no DNS, plain http no TLS).
    pub durations: [Option<Duration>; 4],
    /// The address connected to.
    pub addr: Option<SocketAddr>,
    pub tls: bool,
    /// The served leaf certificate's notAfter, as unix seconds, when one was seen (also when
    /// it failed verification).
    pub certificate_not_after: Option<i64>,
    pub ending: Ending,
}

impl Report {
    pub fn passed(&self) -> bool {
        matches!(&self.ending, Ending::Answered { verdict, .. } if verdict.passed)
    }

    /// The step that failed, the fixed cause and the detail; `None` when it passed.
    pub fn failure(&self) -> Option<(Step, &'static str, String)> {
        match &self.ending {
            Ending::Answered { verdict, .. } if verdict.passed => None,
            Ending::Answered { status, verdict } => Some((
                Step::Answer,
                verdict.cause,
                format!("answered {status}: {}", verdict.diagnosis),
            )),
            Ending::Failed {
                step,
                cause,
                detail,
            } => Some((*step, cause, detail.clone())),
        }
    }

    /// The time `step` took (zero when not reached).
    pub fn duration(&self, step: Step) -> Duration {
        self.durations[step as usize].unwrap_or_default()
    }
}

/// A signed probe, ready to send to its URL.
pub struct Request {
    host: String,
    port: u16,
    tls: bool,
    bytes: Vec<u8>,
}

/// Builds and signs a probe of `url` (an error names what is wrong with the URL).
pub fn request(url: &str, signer: &Signer<'_>) -> Result<Request, String> {
    let parsed = SignedUrl::parse(url)?;
    let tls = parsed.scheme.eq_ignore_ascii_case("https");
    let port: u16 = match parsed.port {
        Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
        None if tls => 443,
        None => 80,
    };
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let body = notification(signer.mode, signer.account, signer.identity, nonce);
    let (signed_url, signature) = sign_json(signer.key, url, body.as_bytes())?;
    let signed = SignedUrl::parse(&signed_url)?;
    let mut target = String::from_utf8_lossy(signed.path).into_owned();
    if target.is_empty() {
        target.push('/');
    }
    target.push_str(&String::from_utf8_lossy(signed.query));
    let host_header = match parsed.port {
        Some(p) => format!("{}:{p}", parsed.host),
        None => parsed.host.to_string(),
    };
    let bytes = format!(
        "POST {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: twilio-notify-proxy-probe\r\n\
         Content-Type: application/json\r\nX-Twilio-Signature: {signature}\r\n{HEADER}: 1\r\n\
         I-Twilio-Idempotency-Token: notify-proxy-probe-{nonce:032x}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    Ok(Request {
        host: parsed.host.trim_matches(['[', ']']).to_string(),
        port,
        tls,
        bytes,
    })
}

/// Sends `request` to `target` and reports each step. Blocks for at most `target.timeout`
/// (plus the moment it takes to notice).
pub fn run(request: &Request, signer: &Signer<'_>, target: &Target<'_>) -> Report {
    let deadline = Instant::now() + target.timeout;
    let mut report = Report {
        durations: [None; 4],
        addr: None,
        tls: request.tls,
        certificate_not_after: None,
        ending: Ending::Failed {
            step: Step::Dns,
            cause: "timeout",
            detail: String::new(),
        },
    };
    let failed = |step, cause, detail| Ending::Failed {
        step,
        cause,
        detail,
    };

    let started = Instant::now();
    let addrs = match target.connect {
        Some(addr) => Ok(vec![addr]),
        None => resolve(&request.host, request.port, deadline),
    };
    let looked_up = target.connect.is_none() && request.host.parse::<IpAddr>().is_err();
    report.durations[Step::Dns as usize] = Some(if !looked_up {
        Duration::ZERO
    } else {
        started.elapsed()
    });
    let addrs = match addrs {
        Ok(a) => a,
        Err((cause, detail)) => {
            report.ending = failed(Step::Dns, cause, detail);
            return report;
        }
    };

    let started = Instant::now();
    let connected = connect(&addrs, deadline);
    report.durations[Step::Connect as usize] = Some(started.elapsed());
    let (tcp, addr) = match connected {
        Ok(c) => c,
        Err((cause, detail)) => {
            report.ending = failed(Step::Connect, cause, detail);
            return report;
        }
    };
    report.addr = Some(addr);
    let stream = Deadlined { tcp, deadline };

    let started = Instant::now();
    let mut stream: Box<dyn Conn> = if request.tls {
        let seen = Arc::new(Mutex::new(None));
        let handshake = handshake(&request.host, addr, stream, target.extra_roots, &seen);
        report.durations[Step::Tls as usize] = Some(started.elapsed());
        report.certificate_not_after = *seen.lock().unwrap_or_else(|e| e.into_inner());
        match handshake {
            Ok(s) => Box::new(s),
            Err((cause, detail)) => {
                report.ending = failed(Step::Tls, cause, detail);
                return report;
            }
        }
    } else {
        report.durations[Step::Tls as usize] = Some(Duration::ZERO);
        Box::new(stream)
    };

    let started = Instant::now();
    let answer = exchange(&mut stream, &request.bytes);
    report.durations[Step::Answer as usize] = Some(started.elapsed());
    report.ending = match answer {
        Ok((status, body)) => {
            let sent = Sent {
                mode: signer.mode,
                url: target.url,
                token: signer.token,
            };
            Ending::Answered {
                status,
                verdict: judge(&sent, status, &body),
            }
        }
        Err((cause, detail)) => failed(Step::Answer, cause, detail),
    };
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::Algorithm;

    fn signer(key: &SigningKey) -> Signer<'_> {
        Signer {
            key,
            token: "$T",
            mode: Mode::Answer,
            account: "AC00000000000000000000000000000000",
            identity: "notify-proxy-probe",
        }
    }

    #[test]
    fn the_request_is_signed_for_the_url_and_marked() {
        let key = SigningKey::new(Algorithm::HmacSha1, b"t");
        let r = request("https://voice.example.com:8443/notify?x=1", &signer(&key)).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.tls),
            ("voice.example.com", 8443, true)
        );
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.starts_with("POST /notify?x=1&bodySHA256="), "{text}");
        assert!(text.contains("\r\nHost: voice.example.com:8443\r\n"));
        assert!(text.contains(&format!("\r\n{HEADER}: 1\r\n")));
        assert!(request("https://voice.example.com/a#frag", &signer(&key)).is_err());
    }

    /// A peer that accepts and then says nothing: each step it stalls ends at the deadline.
    #[test]
    fn a_silent_peer_fails_the_step_it_stalls_within_the_timeout() {
        let key = SigningKey::new(Algorithm::HmacSha1, b"t");
        for (scheme, step) in [("https", Step::Tls), ("http", Step::Answer)] {
            let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = silent.local_addr().unwrap();
            // Holds the connection open, silent, far longer than the probe may take.
            let held = std::thread::spawn(move || {
                let conn = silent.accept();
                std::thread::sleep(Duration::from_secs(3));
                drop(conn);
            });
            let url = format!("{scheme}://127.0.0.1:{}/notify", addr.port());
            let target = Target {
                url: &url,
                connect: None,
                extra_roots: &[],
                timeout: Duration::from_millis(300),
            };
            let started = Instant::now();
            let report = run(
                &request(&url, &signer(&key)).unwrap(),
                &signer(&key),
                &target,
            );
            let (failed, cause, _) = report.failure().expect("a silent peer fails");
            assert_eq!((failed, cause), (step, "timeout"), "{scheme}");
            // Generous: the point is that it ends, not how fast.
            assert!(started.elapsed() < Duration::from_secs(2), "{scheme}");
            held.join().unwrap();
        }
    }
}
