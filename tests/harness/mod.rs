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

pub mod events;

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

/// The `twi_message_id` in a notification body, or in a whole request carrying one (what a
/// sender sent, or what the handler received).
pub fn message_id(body_or_request: impl AsRef<[u8]>) -> String {
    let bytes = body_or_request.as_ref();
    let body = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &bytes[end + 4..],
        None => bytes,
    };
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["twi_message_id"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no twi_message_id in {}", String::from_utf8_lossy(bytes)))
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

/// How long [`eventually`] waits: generous, because CI machines are slow; a wait that holds
/// returns as soon as it does, so the bound costs nothing when the test passes.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `f` every 20 ms until it holds; fails the test, naming `what`, after [`WAIT`].
#[track_caller]
pub fn eventually(what: &str, f: impl FnMut() -> bool) {
    eventually_within(what, WAIT, f)
}

/// Polls `f` every 20 ms until it holds; fails the test, naming `what`, after `within`.
#[track_caller]
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

    /// The `twi_message_id` of each request received, with how often it came.
    pub fn deliveries(&self) -> std::collections::HashMap<String, usize> {
        let mut seen = std::collections::HashMap::new();
        for request in self.requests() {
            *seen.entry(message_id(&request)).or_insert(0) += 1;
        }
        seen
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
    /// `limits.max_body_bytes`.
    pub max_body_bytes: usize,
    /// Extra keys for the `limits` block (2-space indent), e.g. `  write_timeout: 1s\n`.
    pub limits_extra: String,
    /// `server.grace_period` (none by default: a stopped test proxy goes at once).
    pub grace_period: &'static str,
    /// Certificate and key files: the public listener then speaks HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
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
            max_body_bytes: 65536,
            limits_extra: String::new(),
            grace_period: "0s",
            tls: None,
            env: vec![("TNP_TOKEN".into(), TOKEN.into())],
            capture_stderr: false,
        }
    }

    /// The config file for a proxy on `ports`.
    pub fn yaml(&self, ports: &Ports) -> String {
        let peers = self
            .upstream_peers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let tls = match &self.tls {
            Some((cert, key)) => format!(
                "    tls: {{ cert_file: {}, key_file: {} }}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        format!(
            r#"server:
  threads: 1
  grace_period: {grace_period}
  graceful_shutdown_timeout: 1s
listeners:
  - address: 127.0.0.1:{port}
{tls}admin:
  address: 127.0.0.1:{admin_port}
limits:
  max_body_bytes: {max_body_bytes}
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
            port = ports.public,
            admin_port = ports.admin,
            grace_period = self.grace_period,
            max_body_bytes = self.max_body_bytes,
            body_timeout = self.body_timeout,
            header_timeout = self.header_timeout,
            limits_extra = self.limits_extra,
            secrets = self.secrets,
            top_extra = self.top_extra,
            response_timeout = self.response_timeout,
            upstream_extra = self.upstream_extra,
            route_extra = self.route_extra,
        )
    }

    /// How [`Proxy::start`] runs this spec: `run`, with the spec's environment.
    pub fn launch(&self) -> Launch {
        let mut launch = Launch::run();
        launch.env = self.env.clone();
        launch.capture_stderr = self.capture_stderr;
        launch
    }
}

/// A proxy that buffers into the redb file `store` after one failed attempt (the
/// shared buffering setup of the end-to-end tests). The worker looks every 50 ms and waits
/// 50–100 ms between tries of one message; the circuit never opens, so the worker retries as
/// soon as the handler is back. `buffer_extra`: more keys of the `buffer` block (2-space
/// indent, ending in a newline).
pub fn buffering_spec(upstream: SocketAddr, store: &Path, buffer_extra: &str) -> ProxySpec {
    buffering_spec_on(
        upstream,
        &format!("  path: {}\n{buffer_extra}", store.display()),
    )
}

/// [`buffering_spec`] on any store: `buffer_lines` are the `buffer` block's keys naming the
/// store and anything else the test sets (2-space indent, ending in a newline).
pub fn buffering_spec_on(upstream: SocketAddr, buffer_lines: &str) -> ProxySpec {
    let mut lines = buffer_lines.to_owned();
    if !lines.ends_with('\n') {
        lines.push('\n');
    }
    // A key given twice is a YAML error: the test's own `redelivery_*` keys win.
    for (key, default) in [
        ("redelivery_interval", "50ms"),
        ("redelivery_backoff", "{ initial: 50ms, max: 100ms }"),
    ] {
        if !lines.contains(&format!("  {key}:")) {
            lines.push_str(&format!("  {key}: {default}\n"));
        }
    }
    let mut spec = ProxySpec::new(upstream);
    spec.top_extra = format!("buffer:\n{lines}");
    spec.route_extra = "    on_exhausted: buffer\n    retry: { max_attempts: 1 }".into();
    spec.upstream_extra = "    circuit_breaker: { failure_threshold: 1000000 }".into();
    spec
}

/// The ports a launched process is given, each from [`free_port`].
#[derive(Debug, Clone)]
pub struct Ports {
    /// The public listener.
    pub public: u16,
    /// The admin listener (`/metrics`, `/healthz`).
    pub admin: u16,
    /// As many more as [`Launch::extra_ports`] asks for (e.g. the demo's sample handler).
    pub extra: Vec<u16>,
}

/// How to run the binary, for the processes a [`ProxySpec`] does not describe (the `demo`
/// command, the example config, a config a test rewrote). Every process a test starts goes
/// through [`Proxy::launch`], which retries with new ports when one was taken meanwhile.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The arguments; `--config FILE` follows them when the process has a config. `{public}`
    /// is replaced with the public port.
    pub args: Vec<String>,
    /// On top of `RUST_LOG=error`.
    pub env: Vec<(String, String)>,
    pub capture_stderr: bool,
    /// Ports besides the public and admin ones; each must accept connections before the start
    /// counts.
    pub extra_ports: usize,
    /// The process has an admin listener: it must answer `/healthz` before the start counts.
    pub admin: bool,
    /// The process takes `--config FILE`.
    pub config: bool,
}

impl Launch {
    /// `run --config FILE`, with the test token in `TNP_TOKEN`.
    pub fn run() -> Self {
        Launch {
            args: vec!["run".into()],
            env: vec![("TNP_TOKEN".into(), TOKEN.into())],
            capture_stderr: false,
            extra_ports: 0,
            admin: true,
            config: true,
        }
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub ports: Ports,
    log: Arc<Mutex<Vec<String>>>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub fn start(spec: ProxySpec) -> Proxy {
        Self::launch(&spec.launch(), |ports| spec.yaml(ports))
    }

    /// Starts the binary as `launch` says, on the config `config` writes for the ports it is
    /// given. A port can be taken between probing and binding; then it tries again with new
    /// ports (five times).
    pub fn launch(launch: &Launch, config: impl Fn(&Ports) -> String) -> Proxy {
        for _ in 0..5 {
            if let Some(p) = Self::try_launch(launch, &config) {
                return p;
            }
        }
        panic!("proxy did not start (see stderr above)");
    }

    fn try_launch(launch: &Launch, config: &impl Fn(&Ports) -> String) -> Option<Proxy> {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports {
            public: free_port(),
            admin: free_port(),
            extra: (0..launch.extra_ports).map(|_| free_port()).collect(),
        };
        let config_path = dir.path().join("proxy.yaml");
        let mut cmd = Command::new(BIN);
        cmd.args(
            launch
                .args
                .iter()
                .map(|a| a.replace("{public}", &ports.public.to_string())),
        );
        if launch.config {
            std::fs::write(&config_path, config(&ports)).unwrap();
            cmd.arg("--config").arg(&config_path);
        }
        cmd.env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(if launch.capture_stderr {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        for (k, v) in &launch.env {
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
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let (addr, admin) = (at(ports.public), at(ports.admin));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            let admin_up =
                !launch.admin || http_get(admin, "/healthz").is_some_and(|r| r.status == 200);
            let listening = std::iter::once(&ports.public)
                .chain(&ports.extra)
                .all(|p| TcpStream::connect(at(*p)).is_ok());
            if admin_up && listening {
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
                    ports,
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
    #[track_caller]
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

    /// Redelivery attempts on route `notify` that ended with `result`.
    pub fn redeliveries(&self, result: &str) -> f64 {
        self.metric(&format!(
            "notify_proxy_redeliveries_total{{result=\"{result}\",route=\"notify\"}}"
        ))
    }

    /// Messages in the buffer's pending table.
    pub fn pending(&self) -> f64 {
        self.metric(r#"notify_proxy_buffer_messages{table="pending"}"#)
    }

    /// Store calls of `operation` so far (`due` is one per redelivery pass).
    pub fn store_calls(&self, operation: &str) -> f64 {
        self.metric(&format!(
            "notify_proxy_buffer_store_duration_seconds_count{{operation=\"{operation}\"}}"
        ))
    }

    /// Waits until the redelivery worker has begun `passes` more passes (each asks the store
    /// for due messages once): whatever it would do with the store as it is now, it has done.
    #[track_caller]
    pub fn wait_passes(&self, passes: u32) {
        let from = self.store_calls("due");
        eventually(&format!("{passes} more redelivery passes"), || {
            self.store_calls("due") >= from + f64::from(passes)
        });
    }

    /// Lines the proxy wrote to stderr so far (with `capture_stderr`).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal `name` (`TERM`, `QUIT`, `HUP`) to the process.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} failed");
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for the process to exit on its own; fails the test after `within`.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGHUP (live reload) once the proxy handles it: `notify_proxy_config_info` is
    /// exported only from then on (before, SIGHUP's default action would end the process).
    pub fn sighup(&self) {
        eventually_within(
            "the reload handler to be armed",
            Duration::from_secs(10),
            || self.metrics().contains("notify_proxy_config_info{"),
        );
        self.signal("HUP");
    }

    /// Rewrites the config file, sends SIGHUP and waits until the reload counted `result`
    /// once more.
    #[track_caller]
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

    /// The config file serving now.
    pub fn config(&self) -> String {
        std::fs::read_to_string(&self.config_path).unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

pub fn read_response(reader: &mut impl BufRead) -> Option<Response> {
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
    as_forwarded_over(raw, "http")
}

/// [`as_forwarded`] for a client that came over `proto` (`http`, or `https` on a TLS listener).
pub fn as_forwarded_over(raw: &[u8], proto: &str) -> Vec<u8> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let mut out = raw[..end + 2].to_vec();
    out.extend_from_slice(
        format!("X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: {proto}\r\n").as_bytes(),
    );
    out.extend_from_slice(&raw[end + 2..]);
    out
}

/// The `X-Forwarded-*` lines of a request the handler received, in order.
pub fn forwarded_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap();
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-forwarded-"))
        .map(str::to_owned)
        .collect()
}

/// Sends `raw` through `proxy` and asserts the handler's answer came back (`status`, `body`)
/// and the handler's latest request is `raw` byte for byte (plus the proxy's two
/// `X-Forwarded-*` lines). Returns the answer.
#[track_caller]
pub fn assert_delivered(
    proxy: &Proxy,
    handler: &MockUpstream,
    raw: &[u8],
    status: u16,
    body: &str,
) -> Response {
    let r = proxy.send(raw);
    assert_eq!((r.status, r.text().as_str()), (status, body), "{r:?}");
    let received = handler.requests();
    assert_eq!(
        received
            .last()
            .map(|r| String::from_utf8_lossy(r).into_owned()),
        Some(String::from_utf8_lossy(&as_forwarded(raw)).into_owned()),
        "the handler got the request byte for byte"
    );
    r
}

/// Sends `raw` through `proxy` and asserts it was buffered: 200 `{"buffered": true, "id": N}`.
/// Returns the buffer id.
#[track_caller]
pub fn buffer_one(proxy: &Proxy, raw: &[u8]) -> u64 {
    let r = proxy.send(raw);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["buffered"], true, "{body}");
    body["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no buffer id: {body}"))
}

/// Asserts `r` is an answer the proxy made itself: `status`, `Content-Type: application/json`,
/// an `X-Request-Id`, and the JSON body `{"request_id", "error": error, "detail"}` with the
/// same request id and a non-empty fixed detail.
#[track_caller]
pub fn assert_refused(r: &Response, status: u16, error: &str) {
    assert_eq!(
        (r.status, r.reason().as_str()),
        (status, error),
        "{}",
        r.text()
    );
    assert_eq!(r.header("Content-Type"), Some("application/json"), "{r:?}");
    let id = r.header("X-Request-Id").expect("X-Request-Id").to_owned();
    let body = r.json();
    assert_eq!(body["request_id"], id.as_str(), "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
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
