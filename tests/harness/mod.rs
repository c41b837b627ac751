//! End-to-end test harness: the real proxy binary on ephemeral ports, in front of an in-process
//! mock handler that records every byte it receives, plus a Twilio-style signer and a raw
//! HTTP/1.1 client (raw, so tests control every header byte and can send broken requests).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use twilio_notify_proxy::signature::{sign_json, Algorithm, SigningKey};

pub const TOKEN: &str = "test-auth-token-0123456789";
pub const PUBLIC_URL: &str = "https://voice.example.com/twilio/client-notify";
pub const PATH: &str = "/twilio/client-notify";
pub const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/conf/schemas/client-notification.schema.json"
);
pub const BIN: &str = env!("CARGO_BIN_EXE_twilio-notify-proxy");

/// A realistic client notification (the shape of `notification_no_port` in the vectors), with
/// its own `twi_message_id`, as every notification Twilio sends has.
pub fn notification() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "WB{:016x}{:016x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    format!(
        r#"{{"twi_account_sid":"AC0123456789abcdef0123456789abcdef","twi_bridge_token":"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl","twi_call_sid":"CA0123456789abcdef0123456789abcdef","twi_from":"client:alice","twi_message_id":"{id}","twi_message_type":"twilio.voice.call","twi_to":"client:bob"}}"#
    )
}

/// A port nobody listens on now, and that no other test in this process has been given: two
/// tests probing at once could otherwise both be handed the same port, and one proxy would
/// answer for the other. Every port the harness binds (mock handlers, refusing addresses, the
/// proxy's listeners) comes from here, so a `:0` bind elsewhere in the harness cannot be given
/// a port already promised to a proxy that has not bound it yet.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut handed = HANDED_OUT.lock().unwrap();
        if handed.get_or_insert_with(Default::default).insert(port) {
            return port;
        }
    }
}

/// A listener on a port from [`free_port`] (retried: something outside this process may take
/// the port between probing and binding).
fn bind_free() -> TcpListener {
    for _ in 0..20 {
        if let Ok(l) = TcpListener::bind(("127.0.0.1", free_port())) {
            return l;
        }
    }
    panic!("no free port to bind");
}

/// Polls `f` every 20 ms until it holds; fails the test, naming `what`, after `within`.
pub fn eventually_within(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A spawned process that is killed (and reaped) when the guard drops, also when the test
/// panics first: a proxy outliving its test keeps its ports and its store lock.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> ChildGuard {
        ChildGuard(cmd.spawn().expect("spawn"))
    }

    /// Waits until something accepts connections on `addr` (the public listener, not the admin
    /// one: the admin listener can be up before the public one is bound). Panics if the process
    /// exits first or nothing listens within 10 s.
    pub fn wait_listening(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                panic!("process exited ({status}) before listening on {addr}");
            }
            if TcpStream::connect(addr).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "nothing listens on {addr}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Mock handler

/// What the mock handler does with a request.
#[derive(Clone)]
pub enum Behaviour {
    /// Answer with this status, extra headers and body.
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request, then never answer.
    Hang,
    /// Write these bytes verbatim, then close.
    Raw(String),
    /// The n-th request (counting from 0 over the upstream's life) gets `statuses[n]`; once
    /// they run out, the last one repeats.
    Statuses(Vec<u16>),
    /// Answer like `status`, then close the connection without saying so (no
    /// `Connection: close`), as a handler with a short keep-alive timeout does.
    AnswerThenClose(u16),
    /// Answer `status` after holding the request for `delay` (to see how many are in flight).
    Slow { status: u16, delay: Duration },
}

impl Behaviour {
    pub fn status(status: u16, body: &str) -> Self {
        Behaviour::Answer {
            status,
            headers: vec![("X-Handler".into(), "mock".into())],
            body: body.into(),
        }
    }
}

/// An in-process HTTP/1.1 server that records each request's exact bytes.
pub struct MockUpstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    in_flight: Arc<InFlight>,
}

/// Requests read but not yet answered: now, and the most at any one time.
#[derive(Default)]
pub struct InFlight {
    counts: Mutex<(usize, usize)>,
}

impl InFlight {
    fn enter(&self) {
        let mut c = self.counts.lock().unwrap();
        c.0 += 1;
        c.1 = c.1.max(c.0);
    }

    fn leave(&self) {
        self.counts.lock().unwrap().0 -= 1;
    }
}

impl MockUpstream {
    pub fn start(behaviour: Behaviour) -> Self {
        Self::serve(bind_free(), behaviour)
    }

    pub fn start_on(addr: SocketAddr, behaviour: Behaviour) -> Self {
        Self::serve(TcpListener::bind(addr).unwrap(), behaviour)
    }

    fn serve(listener: TcpListener, behaviour: Behaviour) -> Self {
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let in_flight = Arc::new(InFlight::default());
        let (r, b, f) = (requests.clone(), behaviour.clone(), in_flight.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (r, b, f) = (r.clone(), b.clone(), f.clone());
                thread::spawn(move || serve_connection(conn, r, b, f));
            }
        });
        MockUpstream {
            addr,
            requests,
            behaviour,
            in_flight,
        }
    }

    /// The most requests this handler held unanswered at one time.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.counts.lock().unwrap().1
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn serve_connection(
    conn: TcpStream,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    in_flight: Arc<InFlight>,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let Some(raw) = read_message(&mut reader) else {
            return;
        };
        let n = {
            let mut r = requests.lock().unwrap();
            r.push(raw);
            r.len() - 1
        };
        let mut behaviour = behaviour.lock().unwrap().clone();
        if let Behaviour::Statuses(list) = &behaviour {
            let status = list[n.min(list.len() - 1)];
            behaviour = Behaviour::status(status, &format!("status {status}"));
        }
        if let Behaviour::Slow { status, delay } = behaviour {
            in_flight.enter();
            thread::sleep(delay);
            in_flight.leave();
            behaviour = Behaviour::status(status, &format!("status {status}"));
        }
        match behaviour {
            Behaviour::Statuses(_) | Behaviour::Slow { .. } => unreachable!("resolved above"),
            Behaviour::Hang => {
                thread::sleep(Duration::from_secs(30));
                return;
            }
            Behaviour::Raw(bytes) => {
                let _ = conn.write_all(bytes.as_bytes());
                let _ = conn.shutdown(Shutdown::Both);
                return;
            }
            Behaviour::AnswerThenClose(status) => {
                let out = format!("HTTP/1.1 {status} Mock\r\nContent-Length: 2\r\n\r\nok");
                let _ = conn.write_all(out.as_bytes());
                let _ = conn.shutdown(Shutdown::Both);
                return;
            }
            Behaviour::Answer {
                status,
                headers,
                body,
            } => {
                let mut out = format!(
                    "HTTP/1.1 {status} Mock\r\nContent-Length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                if conn.write_all(out.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads one HTTP/1.1 message framed by Content-Length; returns its exact bytes.
fn read_message(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        raw.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        if let Some((k, v)) = text.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().ok()?;
            }
        }
        if line == b"\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body).ok()?;
    raw.extend_from_slice(&body);
    Some(raw)
}

// ---------------------------------------------------------------------------------------------
// The proxy process

/// Settings the tests vary; the rest of the config is fixed.
pub struct ProxySpec {
    pub upstream_peers: Vec<SocketAddr>,
    pub route_extra: String,
    pub top_extra: String,
    pub secrets: String,
    pub response_timeout: &'static str,
    /// Extra keys for the `upstreams.handler` block (4-space indent).
    pub upstream_extra: String,
    pub body_timeout: &'static str,
    pub header_timeout: &'static str,
    /// Extra keys for the `limits` block (2-space indent), e.g. `  write_timeout: 1s\n`.
    pub limits_extra: String,
    pub env: Vec<(String, String)>,
    /// Collect the proxy's stderr lines (see [`Proxy::log_lines`]) instead of passing them on.
    pub capture_stderr: bool,
}

impl ProxySpec {
    pub fn new(upstream: SocketAddr) -> Self {
        ProxySpec {
            upstream_peers: vec![upstream],
            route_extra: String::new(),
            top_extra: String::new(),
            secrets: "  auth_token: { env: TNP_TOKEN }\n".into(),
            response_timeout: "2s",
            upstream_extra: String::new(),
            body_timeout: "1s",
            header_timeout: "10s",
            limits_extra: String::new(),
            env: vec![("TNP_TOKEN".into(), TOKEN.into())],
            capture_stderr: false,
        }
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub fn start(spec: ProxySpec) -> Proxy {
        // A port can be taken between probing and binding; try a few times.
        for _ in 0..5 {
            if let Some(p) = Self::try_start(&spec) {
                return p;
            }
        }
        panic!("proxy did not start (see stderr above)");
    }

    fn try_start(spec: &ProxySpec) -> Option<Proxy> {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let peers = spec
            .upstream_peers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let yaml = format!(
            r#"server:
  threads: 1
  grace_period: 0s
  graceful_shutdown_timeout: 1s
listeners:
  - address: 127.0.0.1:{port}
admin:
  address: 127.0.0.1:{admin_port}
limits:
  max_body_bytes: 65536
  body_timeout: {body_timeout}
  header_timeout: {header_timeout}
{limits_extra}
secrets:
{secrets}
{top_extra}
upstreams:
  handler:
    peers: [{peers}]
    connect_timeout: 1s
    response_timeout: {response_timeout}
{upstream_extra}
routes:
  - name: notify
    path: {PATH}
    public_url: {PUBLIC_URL}
    upstream: handler
    body: json
    schema: {SCHEMA}
{route_extra}
"#,
            body_timeout = spec.body_timeout,
            header_timeout = spec.header_timeout,
            limits_extra = spec.limits_extra,
            secrets = spec.secrets,
            top_extra = spec.top_extra,
            response_timeout = spec.response_timeout,
            upstream_extra = spec.upstream_extra,
            route_extra = spec.route_extra,
        );
        let config_path = dir.path().join("proxy.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(if spec.capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn proxy");
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            let admin_up = http_get(admin, "/healthz").is_some_and(|r| r.status == 200);
            if admin_up && TcpStream::connect(addr).is_ok() {
                // A listener that failed to bind ends the process a moment after the admin
                // listener is up: make sure this one is still ours.
                thread::sleep(Duration::from_millis(50));
                if !matches!(child.try_wait(), Ok(None)) {
                    return None;
                }
                return Some(Proxy {
                    addr,
                    admin,
                    config_path,
                    log,
                    child,
                    _dir: dir,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Sends raw bytes to the public listener and reads one response.
    pub fn send(&self, raw: &[u8]) -> Response {
        send_raw(self.addr, raw).expect("proxy answered")
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").expect("metrics").text()
    }

    /// The value of one sample, e.g. `notify_proxy_rejections_total{reason="schema",route="notify"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("sample {sample} not exported:\n{text}"))
    }

    pub fn rejections(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "notify_proxy_rejections_total{{reason=\"{reason}\",route=\"notify\"}}"
        ))
    }

    /// Upstream attempts of group `handler` that ended with `result`.
    pub fn attempts(&self, result: &str) -> f64 {
        self.metric(&format!(
            "notify_proxy_upstream_attempts_total{{result=\"{result}\",upstream=\"handler\"}}"
        ))
    }

    pub fn outcomes(&self, outcome: &str) -> f64 {
        self.metric(&format!(
            "notify_proxy_requests_total{{outcome=\"{outcome}\",route=\"notify\"}}"
        ))
    }

    /// Lines the proxy wrote to stderr so far (with `capture_stderr`).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGHUP (live reload) once the proxy handles it: `notify_proxy_config_info` is
    /// exported only from then on (before, SIGHUP's default action would end the process).
    pub fn sighup(&self) {
        eventually_within(
            "the reload handler to be armed",
            Duration::from_secs(10),
            || self.metrics().contains("notify_proxy_config_info{"),
        );
        let sent = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -HUP failed");
    }

    /// Rewrites the config file, sends SIGHUP and waits until the reload counted `result`
    /// once more.
    pub fn reload_with(&self, yaml: &str, result: &str) {
        let sample = format!("notify_proxy_config_reloads_total{{result=\"{result}\"}}");
        let before = self.metric(&sample);
        std::fs::write(&self.config_path, yaml).unwrap();
        self.sighup();
        eventually_within(
            &format!("a reload counted as {result}"),
            Duration::from_secs(10),
            || self.metric(&sample) > before,
        );
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal (`-STOP`, `-CONT`, ...) to the proxy process.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} failed");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Client side

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The `error` field of a proxy-made error answer; for any other answer, its body (so an
    /// assertion that expected a rejection shows what came instead).
    pub fn reason(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("(not an error answer) {}", self.text()))
    }
}

pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> Option<Response> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(raw).ok()?;
    read_response(&mut BufReader::new(stream))
}

pub fn read_response(reader: &mut BufReader<TcpStream>) -> Option<Response> {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).ok()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            content_length = v.trim().parse().ok()?;
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    Some(Response {
        status,
        headers,
        body,
    })
}

pub fn http_get(addr: SocketAddr, path: &str) -> Option<Response> {
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Half-closes after writing, for requests whose body never completes.
pub fn send_and_half_close(addr: SocketAddr, raw: &[u8]) -> Option<Response> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(raw).ok()?;
    stream.shutdown(Shutdown::Write).ok()?;
    read_response(&mut BufReader::new(stream))
}

/// The path+query and signature Twilio would send for `body` (signed with `token`).
pub fn sign(body: &str, token: &str) -> (String, String) {
    let key = SigningKey::new(Algorithm::HmacSha1, token.as_bytes());
    let (url, signature) = sign_json(&key, PUBLIC_URL, body.as_bytes()).unwrap();
    let path_and_query = url
        .strip_prefix("https://voice.example.com")
        .unwrap()
        .to_string();
    (path_and_query, signature)
}

/// A complete signed request as Twilio would send it.
pub fn twilio_request(body: &str) -> Vec<u8> {
    let (target, signature) = sign(body, TOKEN);
    request_with(&target, &[("X-Twilio-Signature", signature.as_str())], body)
}

/// A fresh idempotency token, as Twilio sends a new one with each notification.
pub fn fresh_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "6b1f5e9a-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A POST with the usual Twilio headers plus `extra`, framed with Content-Length. Each call
/// carries a new `I-Twilio-Idempotency-Token` unless `extra` sets one.
pub fn request_with(target: &str, extra: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: voice.example.com\r\nUser-Agent: TwilioProxy/1.1\r\nContent-Type: application/json\r\n"
    );
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("I-Twilio-Idempotency-Token"))
    {
        raw.push_str(&format!(
            "I-Twilio-Idempotency-Token: {}\r\n",
            fresh_token()
        ));
    }
    for (k, v) in extra {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw.into_bytes()
}

/// `raw` as the handler receives it from a harness proxy: the client's bytes exactly, plus what
/// the proxy says it saw of this (untrusted, plain TCP) client after the header lines.
pub fn as_forwarded(raw: &[u8]) -> Vec<u8> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let mut out = raw[..end + 2].to_vec();
    out.extend_from_slice(b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n");
    out.extend_from_slice(&raw[end + 2..]);
    out
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// An address that refuses connections and stays refused for as long as the guard lives: the
/// port is bound (so no other test can take it) but never listened on.
pub fn refusing_address() -> (tokio::net::TcpSocket, SocketAddr) {
    for _ in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        if socket.bind(addr).is_ok() {
            return (socket, addr);
        }
    }
    panic!("no free port to hold")
}
