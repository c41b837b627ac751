//! The YAML file as written: a serde mirror with `deny_unknown_fields` everywhere.
//!
//! Owns only the shape of the file and its defaults (a section's defaults sit in its `Default`
//! impl, or beside the field when the section has required keys). Closed choices (`kind`,
//! `body`, `schema_mode`, `on_exhausted`, `buffer.backend`, `dedupe.key`, `logging.format`) are serde
//! enums, so an unknown value is rejected by the parser with its key and the accepted values.
//! No other validation happens here: [`super::validate`] turns this into the typed
//! [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{BodyKind, DedupeKey, LogFormat, SchemaMode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub listeners: Vec<RawListener>,
    pub admin: RawAdmin,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub secrets: RawSecrets,
    #[serde(default)]
    pub allowed_accounts: Vec<String>,
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub routes: Vec<RawRoute>,
    pub buffer: Option<RawBuffer>,
    pub dedupe: Option<RawDedupe>,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub probe: RawProbe,
    #[serde(default)]
    pub twilio_errors: RawTwilioErrors,
}

/// `twilio_errors:`: how long and how much the proxy remembers for reconciling Twilio's error
/// events with its own answers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTwilioErrors {
    pub remember: String,
    pub max_calls: usize,
}

impl Default for RawTwilioErrors {
    fn default() -> Self {
        RawTwilioErrors {
            // Twilio's error events arrive seconds after the call; ten minutes covers a delayed
            // Event Streams batch with room to spare.
            remember: "10m".into(),
            max_calls: 100_000,
        }
    }
}

/// `probe:`: what synthetic notifications may do, and the proxy's own probe.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// The test identity a `probe --through` may be forwarded for; unset refuses them.
    pub identity: Option<String>,
    /// The proxy's own probe of its public URL; unset: none.
    pub public: Option<super::probe::RawPublicProbe>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub threads: usize,
    pub work_stealing: bool,
    pub grace_period: String,
    pub graceful_shutdown_timeout: String,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub error_log: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            work_stealing: false,
            grace_period: "5s".into(),
            graceful_shutdown_timeout: "10s".into(),
            pid_file: None,
            upgrade_sock: None,
            error_log: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: String,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub max_body_bytes: usize,
    pub body_timeout: String,
    pub header_timeout: String,
    pub write_timeout: String,
    pub max_connections: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_body_bytes: 64 * 1024,
            body_timeout: "5s".into(),
            header_timeout: "10s".into(),
            write_timeout: "10s".into(),
            max_connections: 10_000,
        }
    }
}

/// Where a secret comes from: exactly one of `env` or `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecretRef {
    pub env: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecrets {
    pub auth_token: Option<RawSecretRef>,
    pub secondary_auth_token: Option<RawSecretRef>,
    #[serde(default)]
    pub accounts: BTreeMap<String, RawSecretRef>,
    #[serde(default)]
    pub shared_keys: BTreeMap<String, RawSecretRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub peers: Vec<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "default_response_timeout")]
    pub response_timeout: String,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    pub health_check: Option<RawHealthCheck>,
    #[serde(default)]
    pub circuit_breaker: RawCircuitBreaker,
    /// How often peers given as host names are resolved again.
    #[serde(default = "default_resolve_interval")]
    pub resolve_interval: String,
}

fn default_resolve_interval() -> String {
    // Kubernetes' DNS caches for 30 s: asking more often only finds the same answer.
    "30s".into()
}

fn default_connect_timeout() -> String {
    "2s".into()
}
fn default_response_timeout() -> String {
    "10s".into()
}
fn default_idle_timeout() -> String {
    // Below the 60 s keep-alive timeout common in handlers, so the proxy closes idle
    // connections before the handler does (fewer keep-alive races).
    "30s".into()
}
fn default_pool_size() -> usize {
    128
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub interval: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCircuitBreaker {
    pub failure_threshold: u32,
    pub open_for: String,
}

impl Default for RawCircuitBreaker {
    fn default() -> Self {
        RawCircuitBreaker {
            failure_threshold: 5,
            open_for: "1s".into(),
        }
    }
}

/// One entry of `routes:`. Its `kind` decides which keys it may have: a notification route
/// (the default) is forwarded to a handler; a `twilio_errors` route takes Twilio's error events
/// and forwards nothing, so it takes only the endpoint keys. The handler keys are `Option`s so
/// that [`super::route`] can refuse them by name on a `twilio_errors` route; their defaults
/// sit in the functions below, applied there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default)]
    pub kind: RouteKind,
    pub name: Option<String>,
    pub path: Option<String>,
    pub public_url: Option<String>,
    /// Without `public_url`: the hosts Twilio may call this path on.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    pub upstream: Option<String>,
    pub body: Option<BodyKind>,
    pub schema: Option<String>,
    pub schema_mode: Option<SchemaMode>,
    pub retry: Option<RawRetry>,
    pub on_exhausted: Option<RawOnExhausted>,
    pub buffer_ttl: Option<String>,
    pub buffered_status: Option<u16>,
}

/// `routes[].kind:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// A Client Notification URL (or another Twilio webhook), forwarded to a handler.
    #[default]
    Notification,
    /// Twilio's error events (Debugger webhook, Event Streams error logs), taken by the proxy.
    TwilioErrors,
}

impl RawRoute {
    /// The handler keys written on this route, by name (a `twilio_errors` route takes none).
    pub fn handler_keys(&self) -> Vec<&'static str> {
        [
            ("upstream", self.upstream.is_some()),
            ("body", self.body.is_some()),
            ("schema", self.schema.is_some()),
            ("schema_mode", self.schema_mode.is_some()),
            ("retry", self.retry.is_some()),
            ("on_exhausted", self.on_exhausted.is_some()),
            ("buffer_ttl", self.buffer_ttl.is_some()),
            ("buffered_status", self.buffered_status.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, written)| written.then_some(key))
        .collect()
    }
}

pub fn default_schema_mode() -> SchemaMode {
    SchemaMode::Enforce
}
pub fn default_buffer_ttl() -> &'static str {
    "60s"
}
pub fn default_buffered_status() -> u16 {
    200
}

/// `on_exhausted:` as written; `buffer_ttl` and `buffered_status` complete `buffer` in the
/// typed [`super::OnExhausted`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawOnExhausted {
    #[default]
    Fail,
    Buffer,
}

/// A route's `retry:`. Its defaults are `RetryPolicy::default()`'s (a config test pins this).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetry {
    pub max_attempts: u32,
    pub deadline: String,
    pub backoff: RawBackoff,
    pub on_status: Vec<u16>,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            max_attempts: 3,
            deadline: "8s".into(),
            backoff: RawBackoff::new("50ms", "1s"),
            on_status: vec![500, 502, 503, 504],
        }
    }
}

/// A backoff block: `initial` and `max` are required when the block is written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    pub initial: String,
    pub max: String,
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

impl RawBackoff {
    fn new(initial: &str, max: &str) -> Self {
        RawBackoff {
            initial: initial.into(),
            max: max.into(),
            jitter: default_jitter(),
        }
    }
}

fn default_jitter() -> f64 {
    0.5
}

/// The durable store for notifications the handler could not take (routes with
/// `on_exhausted: buffer`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuffer {
    /// `redb` (one instance, a local file) or `postgres` (a fleet shares one database).
    #[serde(default)]
    pub backend: BufferBackendKind,
    /// redb: the store file.
    pub path: Option<String>,
    /// postgres: the connection URL, a secret read from `env` or `file`.
    pub url: Option<RawSecretRef>,
    /// postgres: the schema holding the tables (several fleets can share one database).
    pub schema: Option<String>,
    /// postgres: connections per instance.
    pub pool_size: Option<usize>,
    /// postgres: how long an instance holds a message it claimed for redelivery.
    pub lease: Option<String>,
    /// postgres: the longest one store call may take, connecting included.
    pub store_timeout: Option<String>,
    #[serde(default = "default_max_messages")]
    pub max_messages: u64,
    #[serde(default = "default_max_dead_letters")]
    pub max_dead_letters: u64,
    #[serde(default = "default_redelivery_interval")]
    pub redelivery_interval: String,
    #[serde(default = "default_redelivery_concurrency")]
    pub redelivery_concurrency: usize,
    #[serde(default = "default_redelivery_backoff")]
    pub redelivery_backoff: RawBackoff,
    /// How long a call rings: buffered notifications delivered later are counted apart.
    #[serde(default = "default_ring_window")]
    pub ring_window: String,
}

/// `buffer.backend:`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferBackendKind {
    #[default]
    Redb,
    Postgres,
}

fn default_max_messages() -> u64 {
    100_000
}
fn default_max_dead_letters() -> u64 {
    10_000
}
fn default_ring_window() -> String {
    "30s".into()
}
fn default_redelivery_interval() -> String {
    "250ms".into()
}
fn default_redelivery_concurrency() -> usize {
    8
}
fn default_redelivery_backoff() -> RawBackoff {
    RawBackoff::new("500ms", "5s")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDedupe {
    pub enabled: bool,
    pub key: DedupeKey,
    pub ttl: String,
    pub capacity: usize,
}

impl Default for RawDedupe {
    fn default() -> Self {
        RawDedupe {
            enabled: true,
            key: DedupeKey::Auto,
            ttl: "10m".into(),
            capacity: 100_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogging {
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            level: "info".into(),
            format: LogFormat::Text,
            access_log: true,
        }
    }
}
