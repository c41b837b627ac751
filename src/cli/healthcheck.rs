//! `healthcheck`: GET a URL (by default the admin listener's `/healthz`), exit 0 on a 200 and 1
//! otherwise, saying why. It is the HEALTHCHECK of a container image that has no shell or curl.
//!
//! Owns a deliberately tiny HTTP/1.1 client over a std `TcpStream`: plain `http://` only, one
//! request, `Connection: close`, the status line read within a fixed time. It never follows
//! redirects and never reads more than the status line's first kilobyte.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

/// Connect, send and read the status line within this; container runtimes time the whole
/// command out on their own (Docker: 30 s by default), this keeps well inside.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to GET (http:// only).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9090/healthz"
    )]
    pub url: String,
}

pub fn run(args: &HealthcheckArgs) -> Result<()> {
    let url = &args.url;
    let target = Target::parse(url)?;
    let status = get_status(&target, TIMEOUT).map_err(|e| anyhow!("healthcheck {url}: {e:#}"))?;
    if status != 200 {
        bail!("healthcheck {url}: answered {status}, not 200");
    }
    println!("ok: {url} answered 200");
    Ok(())
}

/// Where to connect and what to ask for, from an `http://host[:port][/path]` URL.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `host:port`, the port defaulted to 80; also the `Host` header.
    authority: String,
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            anyhow!("--url {url:?}: only http:// URLs are supported (the admin listener speaks plain HTTP)")
        })?;
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("--url {url:?}: expected http://host[:port]/path");
        }
        // The path goes into the request line as is: no spaces or control bytes.
        if path
            .bytes()
            .chain(authority.bytes())
            .any(|b| b <= b' ' || b == 0x7f)
        {
            bail!("--url {url:?}: spaces and control characters are not allowed");
        }
        let has_port = !authority.ends_with(']')
            && authority.rsplit_once(':').is_some_and(|(_, port)| {
                !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
            });
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Target { authority, path })
    }
}

/// The status code of `GET target`, or why there is none.
fn get_status(target: &Target, timeout: Duration) -> Result<u16> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = target
        .authority
        .to_socket_addrs()
        .map_err(|e| anyhow!("cannot resolve {}: {e}", target.authority))?
        .collect();
    let mut last_error = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some(anyhow!("cannot connect to {addr}: {e}")),
        }
    }
    let mut stream = match stream {
        Some(s) => s,
        None => {
            return Err(last_error
                .unwrap_or_else(|| anyhow!("{} resolves to no address", target.authority)))
        }
    };
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: twilio-notify-proxy-healthcheck\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| anyhow!("cannot send the request: {e}"))?;
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        let n = stream
            .read(&mut buf)
            .map_err(|e| anyhow!("no answer within {timeout:?}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    status_code(&head)
}

fn remaining(deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("no answer within {TIMEOUT:?}");
    }
    Ok(left)
}

/// The code from an HTTP/1 status line (`HTTP/1.1 200 OK`).
fn status_code(head: &[u8]) -> Result<u16> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") && code.len() == 3 => code
            .parse()
            .map_err(|_| anyhow!("not an HTTP status line: {line:?}")),
        _ if head.is_empty() => bail!("the connection closed without an answer"),
        _ => bail!("not an HTTP status line: {line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(authority: &str, path: &str) -> Target {
        Target {
            authority: authority.into(),
            path: path.into(),
        }
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        let cases = [
            (
                "http://127.0.0.1:9090/healthz",
                target("127.0.0.1:9090", "/healthz"),
            ),
            (
                "http://localhost/healthz",
                target("localhost:80", "/healthz"),
            ),
            ("http://[::1]:9090/readyz", target("[::1]:9090", "/readyz")),
            ("http://[::1]", target("[::1]:80", "/")),
            ("http://h:1?x=1", target("h:1", "/?x=1")),
        ];
        for (url, expected) in cases {
            assert_eq!(Target::parse(url).unwrap(), expected, "{url}");
        }
        for bad in [
            "https://h/healthz",
            "h:9090/healthz",
            "http:///healthz",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "http://user@h/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn status_lines_are_read_or_refused() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\nX: y").unwrap(),
            503
        );
        assert_eq!(status_code(b"HTTP/1.1 404\r\n").unwrap(), 404);
        for bad in [
            &b""[..],
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/2 200\r\n",
        ] {
            assert!(
                status_code(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
