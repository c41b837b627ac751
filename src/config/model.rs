//! The typed, validated configuration the rest of the proxy runs on.
//!
//! Owns the shape of [`Config`] and its sections: durations are `Duration`, choices are enums,
//! counts that must not be zero are `NonZero*`. Only [`super::validate`] builds these values, so
//! code holding a `Config` may trust every field. Nothing here reads files, the environment or
//! the YAML text.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::policy::{Backoff, RetryPolicy};
use crate::schema::NotificationSchema;
use crate::signature::KeyRing;

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file this was loaded from (for messages).
    pub source: PathBuf,
    pub server: ServerSettings,
    pub listeners: Vec<Listener>,
    pub admin_address: SocketAddr,
    pub limits: Limits,
    pub trusted_proxies: Vec<IpNet>,
    pub keys: KeyRing,
    /// Empty: every account is accepted.
    pub allowed_accounts: HashSet<String>,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<Route>,
    /// Routes receiving Twilio's error events (`kind: twilio_errors`).
    pub error_routes: Vec<ErrorRoute>,
    /// What the proxy remembers to reconcile those events with its answers.
    pub twilio_errors: TwilioErrorsConfig,
    /// The durable buffer; present when any route buffers on exhaustion.
    pub buffer: Option<BufferConfig>,
    /// Duplicate suppression; `None` when disabled.
    pub dedupe: Option<DedupeConfig>,
    pub logging: LoggingConfig,
    pub probe: ProbeConfig,
    /// Things that are legal but probably not what the operator wants.
    pub warnings: Vec<String>,
}

/// Pingora's process settings (`server:`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: NonZeroUsize,
    pub work_stealing: bool,
    pub grace_period: Duration,
    pub graceful_shutdown_timeout: Duration,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub error_log: Option<String>,
}

/// One public listener (`listeners[i]`).
#[derive(Debug, Clone)]
pub struct Listener {
    pub address: SocketAddr,
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// What a request may cost the proxy before it is checked (`limits:`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// A request head (or, on a kept-alive connection, the next one) must arrive within this.
    pub header_timeout: Duration,
    /// Each write of an answer (or of `100 Continue`) must be taken by the client within this.
    pub write_timeout: Duration,
    /// Open public connections; beyond this, new connections are closed at once (and counted).
    pub max_connections: NonZeroUsize,
}

/// `probe:`.
#[derive(Debug, Clone, Default)]
pub struct ProbeConfig {
    /// The identity a `probe --through` may notify (`twi_to: client:<identity>`).
    pub identity: Option<String>,
    /// The proxy's own probe of its public URL (`probe.public`).
    pub public: Option<Arc<super::probe::PublicProbe>>,
}

/// A peer as written in `upstreams.NAME.peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSpec {
    /// An IP address and port: never resolved.
    Addr(SocketAddr),
    /// A host name and port: resolved at load, then every `resolve_interval`.
    Name { host: String, port: u16 },
}

impl std::fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerSpec::Addr(a) => write!(f, "{a}"),
            PeerSpec::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A peer spec with the addresses it resolved to last (one, for an address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPeer {
    pub spec: PeerSpec,
    pub addrs: Vec<SocketAddr>,
}

/// Every address of `peers`, in order, without repeats.
pub fn flatten_peers(peers: &[ResolvedPeer]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for addr in peers.iter().flat_map(|p| &p.addrs) {
        if !out.contains(addr) {
            out.push(*addr);
        }
    }
    out
}

/// One group of handler peers (`upstreams.NAME`).
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// Every address of [`Self::resolved`] at load time, flattened.
    pub peers: Vec<SocketAddr>,
    /// The peers as written, with what each resolved to at load time.
    pub resolved: Vec<ResolvedPeer>,
    /// How often host-name peers are resolved again.
    pub resolve_interval: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub pool_size: NonZeroUsize,
    pub health_check_interval: Option<Duration>,
    pub breaker_threshold: NonZeroU32,
    pub breaker_open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

/// `logging:`.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// An `EnvFilter` directive (`info`, `warn,access=info`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    /// One line per request (target `access`).
    pub access_log: bool,
}

/// The durable store and its redelivery worker (`buffer:`).
#[derive(Debug, Clone)]
pub struct BufferConfig {
    pub backend: BufferBackend,
    /// Pending messages at most (fleet-wide for postgres).
    pub max_messages: u64,
    /// The dead-letter table holds at most this many; the oldest are evicted (and counted).
    pub max_dead_letters: u64,
    pub redelivery_interval: Duration,
    pub redelivery_concurrency: NonZeroUsize,
    pub redelivery_backoff: Backoff,
    /// How long a call rings: the SLI counts buffered deliveries inside and after it.
    pub ring_window: Duration,
}

/// Where buffered notifications live (`buffer.backend`).
#[derive(Debug, Clone)]
pub enum BufferBackend {
    /// A local file, locked by one process: a single instance.
    Redb { path: PathBuf },
    /// A database several instances share.
    Postgres(PostgresBuffer),
}

/// `buffer:` with `backend: postgres`.
#[derive(Clone)]
pub struct PostgresBuffer {
    /// The connection URL (a secret: it may hold a password; `Debug` hides it).
    pub url: String,
    pub schema: String,
    pub pool_size: NonZeroUsize,
    /// How long an instance holds a message it claimed for redelivery.
    pub lease: Duration,
    /// The longest one store call may take, waiting for a connection included.
    pub store_timeout: Duration,
}

impl std::fmt::Debug for PostgresBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBuffer")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("lease", &self.lease)
            .field("store_timeout", &self.store_timeout)
            .finish()
    }
}

/// Which request property identifies a notification for duplicate suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupeKey {
    /// `I-Twilio-Idempotency-Token` when present, else the body's `twi_message_id`.
    Auto,
    IdempotencyToken,
    MessageId,
}

/// `dedupe:` when enabled.
#[derive(Debug, Clone)]
pub struct DedupeConfig {
    pub key: DedupeKey,
    pub ttl: Duration,
    pub capacity: usize,
}

/// What the live path does when every attempt failed (or the circuit is open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    /// Answer 502/503/504 so Twilio logs the failure (and its fallback, if any, runs).
    Fail,
    /// Store the request durably, answer `status`, redeliver until `ttl` after arrival.
    Buffer {
        ttl: Duration,
        status: http::StatusCode,
    },
}

/// What a route's body is, which decides how its signature covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// Client call notification: JSON, covered by `bodySHA256` in the signed URL.
    Json,
    /// Other Twilio webhooks: form parameters, sorted into the signed string.
    Form,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaMode {
    /// Violations are rejected with 400.
    Enforce,
    /// Violations are counted and logged; the request is forwarded anyway.
    Report,
}

/// The scheme and authority of the public URL Twilio signs, split as the verifier needs it.
#[derive(Debug, Clone)]
pub struct PublicUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<String>,
    pub path: String,
}

impl PublicUrl {
    /// The URL's parts as the signature code takes them (no query: each request brings its own).
    pub fn as_signed_url(&self) -> crate::signature::SignedUrl<'_> {
        crate::signature::SignedUrl {
            scheme: &self.scheme,
            host: &self.host,
            port: self.port.as_deref(),
            path: self.path.as_bytes(),
            query: b"",
        }
    }
}

/// A path receiving Twilio's error events (`routes[i]` with `kind: twilio_errors`): the
/// Debugger webhook (form) and Event Streams error logs (JSON), verified like notifications,
/// counted and answered by the proxy, never forwarded.
#[derive(Debug, Clone)]
pub struct ErrorRoute {
    pub name: String,
    pub path: String,
    pub public_url: Option<PublicUrl>,
    /// As [`Route::allowed_hosts`].
    pub allowed_hosts: Vec<String>,
}

/// `twilio_errors:`.
#[derive(Debug, Clone, Copy)]
pub struct TwilioErrorsConfig {
    /// How long what the proxy answered for a call (and an error event's Sid) is remembered.
    pub remember: Duration,
    /// Calls remembered at most in this process (the oldest are forgotten first).
    pub max_calls: NonZeroUsize,
}

/// One path the proxy serves (`routes[i]`).
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    pub public_url: Option<PublicUrl>,
    /// Without `public_url`: the authorities (`host` or `host:port`, lower case) the signed URL
    /// may be rebuilt from. Never empty then; empty with `public_url`.
    pub allowed_hosts: Vec<String>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub body: BodyKind,
    pub schema: Option<Arc<NotificationSchema>>,
    pub schema_mode: SchemaMode,
    pub retry: RetryPolicy,
    pub on_exhausted: OnExhausted,
}
