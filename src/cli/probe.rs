//! `probe`: send a correctly signed synthetic notification through the real public path and
//! report each step (URL, connect and TLS, the proxy's verdict) with its latency; exit 0 or 1.
//!
//! Owns the client side: building and signing the probe (the marker and the body are
//! [`crate::probe`]'s, signing is [`crate::signature`]'s), one blocking HTTP/1.1 exchange over
//! TCP or TLS (system trust store, through Pingora's OpenSSL), and turning the proxy's JSON
//! answer into a diagnosis. The token is read from the environment variable `--secret-env`, as
//! `sign` does, and never printed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::probe::{self, Mode};
use crate::signature::{sign_json, Algorithm, SignedUrl, SigningKey};

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The URL configured in Twilio (e.g. https://voice.example.com/twilio/client-notify).
    #[arg(long)]
    pub url: String,
    /// Forward the probe to the handler (for probe.identity only) instead of the proxy
    /// answering it.
    #[arg(long)]
    pub through: bool,
    /// The identity in `twi_to` (must be the proxy's probe.identity with --through).
    #[arg(long, default_value = "notify-proxy-probe")]
    pub identity: String,
    /// The Account SID in the body (one of allowed_accounts, if the proxy has that list).
    #[arg(long, default_value = "AC00000000000000000000000000000000")]
    pub account: String,
    /// The environment variable holding the Auth Token.
    #[arg(long, value_name = "VAR", default_value = "TWILIO_AUTH_TOKEN")]
    pub secret_env: String,
    /// Connect to this address instead of resolving the URL's host (like curl --resolve).
    #[arg(long, value_name = "IP:PORT")]
    pub connect: Option<SocketAddr>,
    /// The whole exchange must end within this.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// One reported step. `warn` marks a URL Twilio would refuse that may still be right to probe
/// (plain http to an internal Service): reported, but not a failure.
struct Step {
    ok: bool,
    warn: bool,
    name: &'static str,
    detail: String,
}

pub fn run(args: &ProbeArgs) -> Result<()> {
    let steps = probe(args)?;
    let mut ok = true;
    for s in &steps {
        let verdict = match (s.ok, s.warn) {
            (true, _) => "PASS",
            (false, true) => "WARN",
            (false, false) => "FAIL",
        };
        println!("{verdict} {}: {}", s.name, s.detail);
        ok &= s.ok || s.warn;
    }
    if !ok {
        bail!("probe of {} failed", args.url);
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn probe(args: &ProbeArgs) -> Result<Vec<Step>> {
    let token = std::env::var(&args.secret_env).map_err(|_| {
        anyhow!(
            "the Auth Token is read from ${}, which is not set",
            args.secret_env
        )
    })?;
    if token.is_empty() {
        bail!("${} is empty", args.secret_env);
    }
    let url = SignedUrl::parse(&args.url).map_err(|e| anyhow!("--url: {e}"))?;
    let mut steps = Vec::new();
    steps.push(Step {
        ok: url.scheme.eq_ignore_ascii_case("https") && !url.host.contains('_'),
        warn: !url.host.contains('_'),
        name: "url",
        detail: if url.host.contains('_') {
            format!(
                "host {:?} has an underscore: Twilio cannot call it",
                url.host
            )
        } else if !url.scheme.eq_ignore_ascii_case("https") {
            "not https: Twilio requires https for client notifications".into()
        } else {
            args.url.clone()
        },
    });
    let mode = if args.through {
        Mode::Through
    } else {
        Mode::Answer
    };
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let body = probe::notification(mode, &args.account, &args.identity, nonce);
    let key = SigningKey::new(Algorithm::HmacSha1, token.trim_end().as_bytes());
    let (signed_url, signature) =
        sign_json(&key, &args.url, body.as_bytes()).map_err(|e| anyhow!("--url: {e}"))?;
    let signed = SignedUrl::parse(&signed_url).map_err(|e| anyhow!("--url: {e}"))?;
    let mut target = String::from_utf8_lossy(signed.path).into_owned();
    if target.is_empty() {
        target.push('/');
    }
    target.push_str(&String::from_utf8_lossy(signed.query));
    let tls = url.scheme.eq_ignore_ascii_case("https");
    let port: u16 = match url.port {
        Some(p) => p.parse().map_err(|_| anyhow!("--url: bad port {p:?}"))?,
        None if tls => 443,
        None => 80,
    };
    let host_header = match url.port {
        Some(p) => format!("{}:{p}", url.host),
        None => url.host.to_string(),
    };
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: twilio-notify-proxy-probe\r\n\
         Content-Type: application/json\r\nX-Twilio-Signature: {signature}\r\n{}: 1\r\n\
         I-Twilio-Idempotency-Token: notify-proxy-probe-{nonce:032x}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        probe::HEADER,
        body.len()
    );

    let started = Instant::now();
    let deadline = started + args.timeout;
    let connected = connect(url.host, port, args.connect, tls, args.timeout);
    let mut stream = match connected {
        Ok((stream, addr)) => {
            steps.push(Step {
                ok: true,
                warn: false,
                name: "connect",
                detail: format!(
                    "{addr}{} ({})",
                    if tls { " with TLS" } else { "" },
                    ms(started.elapsed())
                ),
            });
            stream
        }
        Err(e) => {
            steps.push(Step {
                ok: false,
                warn: false,
                name: "connect",
                detail: format!("{e:#}"),
            });
            return Ok(steps);
        }
    };
    let sent = Instant::now();
    let answer = exchange(&mut stream, request.as_bytes(), deadline);
    let latency = ms(sent.elapsed());
    match answer {
        Err(e) => steps.push(Step {
            ok: false,
            warn: false,
            name: "answer",
            detail: format!("{e:#} ({latency})"),
        }),
        Ok((status, body)) => steps.push(verdict(args, mode, status, &body, &latency)),
    }
    Ok(steps)
}

/// What the proxy's answer says, with the likely cause for each refusal.
fn verdict(args: &ProbeArgs, mode: Mode, status: u16, body: &[u8], latency: &str) -> Step {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |k: &str| {
        json.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    if mode == Mode::Answer && status == 200 && field("probe") == "ok" {
        return Step {
            ok: true,
            warn: false,
            name: "verified",
            detail: format!(
                "the proxy checked signature, body hash and schema on route {} ({latency})",
                field("route")
            ),
        };
    }
    if mode == Mode::Through && (200..300).contains(&status) {
        return Step {
            ok: true,
            warn: false,
            name: "through",
            detail: format!("the handler answered {status} ({latency})"),
        };
    }
    let (error, detail) = (field("error"), field("detail"));
    let diagnosis = match error.as_str() {
        "signature_mismatch" => {
            let expected = detail
                .split_once(&probe::mismatch_hint(""))
                .map(|(_, url)| url.trim().to_string());
            let given = args.url.split(['?', '#']).next().unwrap_or("").to_string();
            match expected {
                Some(url) if !url.is_empty() && url != given => format!(
                    "public URL mismatch: the proxy verifies signatures for {url}, but Twilio \
                     would sign {given} (fix routes[].public_url or the URL in Twilio)"
                ),
                _ => format!(
                    "wrong token: the URL matches, so ${} is not a token the proxy accepts",
                    args.secret_env
                ),
            }
        }
        "unknown_route" => format!("no route serves this path: {detail}"),
        "schema" | "not_json" => format!("schema: {detail}"),
        "" if status == 200 => "the answer is not the proxy's probe answer: is another server \
             (or an old proxy) at this URL?"
            .to_string(),
        "" => format!(
            "answered {status} without a proxy error: {}",
            String::from_utf8_lossy(body)
        ),
        other => format!("{other}: {detail}"),
    };
    Step {
        ok: false,
        warn: false,
        name: "verified",
        detail: format!("{status} {diagnosis} ({latency})"),
    }
}

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn connect(
    host: &str,
    port: u16,
    over: Option<SocketAddr>,
    tls: bool,
    timeout: Duration,
) -> Result<(Box<dyn Conn>, SocketAddr)> {
    let addrs: Vec<SocketAddr> = match over {
        Some(a) => vec![a],
        None => (host, port)
            .to_socket_addrs()
            .map_err(|e| anyhow!("DNS: cannot resolve {host}: {e}"))?
            .collect(),
    };
    let mut last = anyhow!("DNS: {host} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => {
                tcp.set_read_timeout(Some(timeout))?;
                tcp.set_write_timeout(Some(timeout))?;
                if !tls {
                    return Ok((Box::new(tcp), addr));
                }
                use pingora::tls::ssl::{SslConnector, SslMethod};
                let connector = SslConnector::builder(SslMethod::tls_client())
                    .map_err(|e| anyhow!("TLS setup: {e}"))?
                    .build();
                let stream = connector
                    .connect(host, tcp)
                    .map_err(|e| anyhow!("TLS with {host} ({addr}): {e}"))?;
                return Ok((Box::new(stream), addr));
            }
            Err(e) => last = anyhow!("TCP: cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Sends `request` and reads the answer: its head, then `Content-Length` bytes of body (or up
/// to the close when there is none).
fn exchange(
    stream: &mut Box<dyn Conn>,
    request: &[u8],
    deadline: Instant,
) -> Result<(u16, Vec<u8>)> {
    stream
        .write_all(request)
        .map_err(|e| anyhow!("cannot send the probe: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some((status, head_len, length)) = parse_head(&raw)? {
            if length.is_some_and(|n| raw.len() >= head_len + n) {
                let end = head_len + length.unwrap_or(0);
                return Ok((status, raw[head_len..end].to_vec()));
            }
        }
        if Instant::now() > deadline || raw.len() > 256 * 1024 {
            bail!("no complete answer in time");
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => bail!("no complete answer: {e}"),
        }
    }
    match parse_head(&raw)? {
        Some((status, head_len, _)) => Ok((status, raw[head_len..].to_vec())),
        None => bail!(
            "the connection closed before an HTTP answer ({} bytes)",
            raw.len()
        ),
    }
}

/// Status, head length and `Content-Length` of a complete head; `None` while incomplete.
fn parse_head(raw: &[u8]) -> Result<Option<(u16, usize, Option<usize>)>> {
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
        Err(e) => bail!("the answer is not HTTP/1.1: {e}"),
    }
}
