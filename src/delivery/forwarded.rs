//! The `X-Forwarded-*` headers the handler receives: what they say about the client, and whose
//! word they carry.
//!
//! Owns one rule: a client's own `X-Forwarded-*`, `Forwarded` and `X-Real-IP` lines reach the
//! handler only when the peer is one of `trusted_proxies` (a load balancer that wrote them);
//! from anyone else they are dropped, since a handler that logs or trusts them would believe
//! whatever the caller wrote. Either way the proxy adds what it knows itself: `X-Forwarded-For`
//! with the peer's address (appended to a trusted proxy's list, as nginx's
//! `$proxy_add_x_forwarded_for` does) and `X-Forwarded-Proto` unless a trusted proxy set one.
//! Pure: no I/O, no config; [`super::wire`] calls it while it writes the head.

use std::io::Write;
use std::net::IpAddr;

/// Who sent the request, as the handler will be told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// The TCP peer's address (`None` on a Unix socket: nothing to add).
    pub client: Option<IpAddr>,
    /// The client connection is TLS: `X-Forwarded-Proto: https`.
    pub tls: bool,
    /// The peer is in `trusted_proxies`: its forwarding headers are kept.
    pub trusted: bool,
}

/// Headers that claim something about the original client or connection.
pub(super) fn is_forwarding_header(name: &[u8]) -> bool {
    const PREFIX: &[u8] = b"x-forwarded-";
    (name.len() > PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX))
        || name.eq_ignore_ascii_case(b"forwarded")
        || name.eq_ignore_ascii_case(b"x-real-ip")
}

impl Forwarding {
    /// Whether a client's header line `name` is sent on.
    pub(super) fn keeps(&self, name: &[u8]) -> bool {
        self.trusted || !is_forwarding_header(name)
    }

    /// Adds what the proxy saw to the head written so far (`out`, up to the last header line).
    /// `kept_for_end`: where the last `X-Forwarded-For` line kept from a trusted proxy ends
    /// (before its CRLF); the peer joins that list there, on one line (readers that take the
    /// first line only still see every hop). `proto_kept`: a trusted proxy's
    /// `X-Forwarded-Proto` is in the head (it knows the scheme Twilio used; this hop may be
    /// plain).
    pub(super) fn complete(
        &self,
        out: &mut Vec<u8>,
        kept_for_end: Option<usize>,
        proto_kept: bool,
    ) {
        if let Some(ip) = self.client {
            match kept_for_end {
                Some(end) => {
                    let mut joined = b", ".to_vec();
                    push_address(&mut joined, ip);
                    out.splice(end..end, joined);
                }
                None => {
                    out.extend_from_slice(b"X-Forwarded-For: ");
                    push_address(out, ip);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        if !proto_kept {
            out.extend_from_slice(if self.tls {
                b"X-Forwarded-Proto: https\r\n"
            } else {
                b"X-Forwarded-Proto: http\r\n"
            });
        }
    }
}

/// `ip` as text, as `Display` writes it. An IPv4 address (the usual peer) is written digit by
/// digit: through `core::fmt` it cost ~950 instructions per request (benches/load/per_request.py).
fn push_address(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
            }
        }
        // Writing into a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_are_recognised_in_any_case() {
        for name in [
            &b"X-Forwarded-For"[..],
            b"x-forwarded-proto",
            b"X-FORWARDED-HOST",
            b"Forwarded",
            b"X-Real-IP",
        ] {
            assert!(
                is_forwarding_header(name),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        for name in [
            &b"X-Forwarded-"[..],
            b"X-Forwarder",
            b"Host",
            b"X-Twilio-Signature",
        ] {
            assert!(
                !is_forwarding_header(name),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "203.0.113.7",
            "255.255.255.255",
            "10.20.0.9",
            "::1",
            "2001:db8::7",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            push_address(&mut out, ip);
            assert_eq!(out, ip.to_string().as_bytes());
        }
    }

    #[test]
    fn the_proxy_says_what_it_saw() {
        let mut out = Vec::new();
        let f = Forwarding {
            client: Some("203.0.113.7".parse().unwrap()),
            tls: true,
            trusted: false,
        };
        f.complete(&mut out, None, false);
        assert_eq!(
            out,
            b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
        );
        let mut out = Vec::new();
        Forwarding::default().complete(&mut out, None, true);
        assert!(
            out.is_empty(),
            "no address, and the trusted proxy's proto kept"
        );
        // After a trusted list: the peer joins it, on its line.
        let mut out = b"X-Forwarded-For: 198.51.100.9\r\nX-A: b\r\n".to_vec();
        f.complete(&mut out, Some(29), true);
        assert_eq!(
            out,
            b"X-Forwarded-For: 198.51.100.9, 203.0.113.7\r\nX-A: b\r\n"
        );
    }
}
