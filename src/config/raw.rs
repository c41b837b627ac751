//! The YAML file as written: a serde mirror with `deny_unknown_fields` everywhere.
//!
//! Owns only the shape of the file and its defaults. No validation beyond types happens here;
//! [`super::Config::try_from_raw`] turns this into the typed, checked [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;

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
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_body_bytes: default_max_body_bytes(),
            body_timeout: default_body_timeout(),
        }
    }
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
}

fn default_connect_timeout() -> String {
    "2s".into()
}
fn default_response_timeout() -> String {
    "10s".into()
}
fn default_idle_timeout() -> String {
    "60s".into()
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
    pub body: String,
    pub schema: Option<String>,
    #[serde(default = "default_schema_mode")]
    pub schema_mode: String,
}

fn default_schema_mode() -> String {
    "enforce".into()
}
