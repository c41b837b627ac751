//! The YAML file as written: a serde mirror with `deny_unknown_fields` everywhere.
//!
//! Owns only the shape of the file and its defaults. Closed choices (`body`, `schema_mode`,
//! `on_exhausted`, `dedupe.key`, `logging.format`) are serde enums, so an unknown value is
//! rejected by the parser with its key and the accepted values. No other validation happens
//! here: [`super::validate`] turns this into the typed, checked [`super::Config`].

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
    #[serde(default = "default_access_log")]
    pub access_log: bool,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            level: default_log_level(),
            format: default_log_format(),
            access_log: default_access_log(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}
fn default_log_format() -> LogFormat {
    LogFormat::Text
}
fn default_access_log() -> bool {
    true
}

/// The durable store for notifications the handler could not take (routes with
/// `on_exhausted: buffer`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuffer {
    pub path: String,
    #[serde(default = "default_max_messages")]
    pub max_messages: u64,
    #[serde(default = "default_redelivery_interval")]
    pub redelivery_interval: String,
    #[serde(default = "default_redelivery_concurrency")]
    pub redelivery_concurrency: usize,
    #[serde(default = "default_redelivery_backoff")]
    pub redelivery_backoff: RawBackoff,
}

fn default_max_messages() -> u64 {
    100_000
}
fn default_redelivery_interval() -> String {
    "250ms".into()
}
fn default_redelivery_concurrency() -> usize {
    8
}
fn default_redelivery_backoff() -> RawBackoff {
    RawBackoff {
        initial: "500ms".into(),
        max: "5s".into(),
        jitter: 0.5,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    pub initial: String,
    pub max: String,
    #[serde(default = "default_jitter")]
    pub jitter: f64,
}

fn default_jitter() -> f64 {
    0.5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDedupe {
    #[serde(default = "default_dedupe_enabled")]
    pub enabled: bool,
    #[serde(default = "default_dedupe_key")]
    pub key: DedupeKey,
    #[serde(default = "default_dedupe_ttl")]
    pub ttl: String,
    #[serde(default = "default_dedupe_capacity")]
    pub capacity: usize,
}

impl Default for RawDedupe {
    fn default() -> Self {
        RawDedupe {
            enabled: default_dedupe_enabled(),
            key: default_dedupe_key(),
            ttl: default_dedupe_ttl(),
            capacity: default_dedupe_capacity(),
        }
    }
}

fn default_dedupe_enabled() -> bool {
    true
}
fn default_dedupe_key() -> DedupeKey {
    DedupeKey::Auto
}
fn default_dedupe_ttl() -> String {
    "10m".into()
}
fn default_dedupe_capacity() -> usize {
    100_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_deadline")]
    pub deadline: String,
    #[serde(default = "default_retry_backoff")]
    pub backoff: RawBackoff,
    #[serde(default = "default_on_status")]
    pub on_status: Vec<u16>,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            max_attempts: default_max_attempts(),
            deadline: default_deadline(),
            backoff: default_retry_backoff(),
            on_status: default_on_status(),
        }
    }
}

fn default_max_attempts() -> u32 {
    3
}
fn default_deadline() -> String {
    "8s".into()
}
fn default_retry_backoff() -> RawBackoff {
    RawBackoff {
        initial: "50ms".into(),
        max: "1s".into(),
        jitter: 0.5,
    }
}
fn default_on_status() -> Vec<u16> {
    vec![500, 502, 503, 504]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_open_for")]
    pub open_for: String,
}

impl Default for RawCircuitBreaker {
    fn default() -> Self {
        RawCircuitBreaker {
            failure_threshold: default_failure_threshold(),
            open_for: default_open_for(),
        }
    }
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_open_for() -> String {
    "10s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "default_threads")]
    pub threads: usize,
    #[serde(default)]
    pub work_stealing: bool,
    #[serde(default = "default_grace_period")]
    pub grace_period: String,
    #[serde(default = "default_graceful_shutdown_timeout")]
    pub graceful_shutdown_timeout: String,
    pub pid_file: Option<String>,
    pub upgrade_sock: Option<String>,
    pub error_log: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            threads: default_threads(),
            work_stealing: false,
            grace_period: default_grace_period(),
            graceful_shutdown_timeout: default_graceful_shutdown_timeout(),
            pid_file: None,
            upgrade_sock: None,
            error_log: None,
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
fn default_grace_period() -> String {
    "5s".into()
}
fn default_graceful_shutdown_timeout() -> String {
    "10s".into()
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
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    #[serde(default = "default_body_timeout")]
    pub body_timeout: String,
    #[serde(default = "default_header_timeout")]
    pub header_timeout: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_body_bytes: default_max_body_bytes(),
            body_timeout: default_body_timeout(),
            header_timeout: default_header_timeout(),
        }
    }
}

fn default_header_timeout() -> String {
    "10s".into()
}

fn default_max_body_bytes() -> usize {
    64 * 1024
}
fn default_body_timeout() -> String {
    "5s".into()
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
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub path: Option<String>,
    pub public_url: Option<String>,
    pub upstream: String,
    pub body: BodyKind,
    pub schema: Option<String>,
    #[serde(default = "default_schema_mode")]
    pub schema_mode: SchemaMode,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub on_exhausted: RawOnExhausted,
    #[serde(default = "default_buffer_ttl")]
    pub buffer_ttl: String,
    #[serde(default = "default_buffered_status")]
    pub buffered_status: u16,
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
fn default_buffer_ttl() -> String {
    "60s".into()
}
fn default_buffered_status() -> u16 {
    200
}

fn default_schema_mode() -> SchemaMode {
    SchemaMode::Enforce
}
