//! Configuration: load the YAML file, resolve secrets and schemas, validate everything.
//!
//! Owns the typed [`Config`] the rest of the proxy runs on. Loading happens once, before any port
//! is bound; every error names the file, the key and, where there is one, the fix. This module
//! reads files and environment variables but never opens sockets and never logs a secret.

mod raw;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;

use crate::policy::{Backoff, RetryPolicy};
use crate::schema::NotificationSchema;
use crate::signature::{Algorithm, KeyRing, SigningKey};
use raw::{RawBackoff, RawConfig, RawRoute, RawSecretRef, RawUpstream};

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
    /// The durable buffer; present when any route buffers on exhaustion.
    pub buffer: Option<BufferConfig>,
    /// Duplicate suppression; `None` when disabled.
    pub dedupe: Option<DedupeConfig>,
    pub logging: LoggingConfig,
    /// Things that are legal but probably not what the operator wants.
    pub warnings: Vec<String>,
}

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

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// A request head (or, on a kept-alive connection, the next one) must arrive within this.
    pub header_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub peers: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub pool_size: NonZeroUsize,
    pub health_check_interval: Option<Duration>,
    pub breaker_threshold: std::num::NonZeroU32,
    pub breaker_open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// An `EnvFilter` directive (`info`, `warn,access=info`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    /// One line per request (target `access`).
    pub access_log: bool,
}

#[derive(Debug, Clone)]
pub struct BufferConfig {
    pub path: PathBuf,
    pub max_messages: u64,
    pub redelivery_interval: Duration,
    pub redelivery_concurrency: NonZeroUsize,
    pub redelivery_backoff: Backoff,
}

/// Which request property identifies a notification for duplicate suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupeKey {
    /// `I-Twilio-Idempotency-Token` when present, else the body's `twi_message_id`.
    Auto,
    IdempotencyToken,
    MessageId,
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Client call notification: JSON, covered by `bodySHA256` in the signed URL.
    Json,
    /// Other Twilio webhooks: form parameters, sorted into the signed string.
    Form,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    pub public_url: Option<PublicUrl>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub body: BodyKind,
    pub schema: Option<Arc<NotificationSchema>>,
    pub schema_mode: SchemaMode,
    pub retry: RetryPolicy,
    pub on_exhausted: OnExhausted,
}

impl Config {
    /// Reads, parses and validates `path`, including the secrets and schema files it names.
    pub fn load(path: &Path) -> Result<Config> {
        Self::load_with(path, Secrets::Load)
    }

    /// Like [`Config::load`] but without reading any secret: for commands that never verify a
    /// signature (`buffer ...`), so operators need not export tokens to inspect the buffer.
    pub fn load_without_secrets(path: &Path) -> Result<Config> {
        Self::load_with(path, Secrets::Skip)
    }

    fn load_with(path: &Path, secrets: Secrets) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("config: cannot read {}", path.display()))?;
        Self::parse(&text, path, secrets)
    }

    /// Parses `text` as if it were the file at `path` (relative paths resolve against its folder).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config> {
        Self::parse(text, path, Secrets::Load)
    }

    fn parse(text: &str, path: &Path, secrets: Secrets) -> Result<Config> {
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| anyhow!("config {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::try_from_raw(raw, path, base, secrets)
            .map_err(|e| anyhow!("config {}: {e:#}", path.display()))
    }

    fn try_from_raw(
        raw: RawConfig,
        source: &Path,
        base: &Path,
        secrets: Secrets,
    ) -> Result<Config> {
        let mut warnings = Vec::new();
        let server = ServerSettings {
            threads: NonZeroUsize::new(raw.server.threads)
                .ok_or_else(|| anyhow!("server.threads: must be at least 1"))?,
            work_stealing: raw.server.work_stealing,
            grace_period: duration("server.grace_period", &raw.server.grace_period)?,
            graceful_shutdown_timeout: duration(
                "server.graceful_shutdown_timeout",
                &raw.server.graceful_shutdown_timeout,
            )?,
            pid_file: raw.server.pid_file,
            upgrade_sock: raw.server.upgrade_sock,
            error_log: raw.server.error_log,
        };

        if raw.listeners.is_empty() {
            bail!("listeners: at least one listener is required (e.g. - address: 0.0.0.0:8080)");
        }
        let mut listeners = Vec::new();
        for (i, l) in raw.listeners.into_iter().enumerate() {
            let key = format!("listeners[{i}]");
            let address = socket_addr(&format!("{key}.address"), &l.address)?;
            let tls = match l.tls {
                Some(t) => Some(TlsFiles {
                    cert_file: existing_file(&format!("{key}.tls.cert_file"), base, &t.cert_file)?,
                    key_file: existing_file(&format!("{key}.tls.key_file"), base, &t.key_file)?,
                }),
                None => None,
            };
            listeners.push(Listener { address, tls });
        }
        let admin_address = socket_addr("admin.address", &raw.admin.address)?;
        if listeners.iter().any(|l| l.address == admin_address) {
            bail!("admin.address: {admin_address} is also a public listener; use a separate port");
        }
        if !admin_address.ip().is_loopback() {
            warnings.push(format!(
                "admin.address: {admin_address} is not loopback; /metrics will be reachable from the network"
            ));
        }

        let limits = Limits {
            max_body_bytes: match raw.limits.max_body_bytes {
                0 => bail!("limits.max_body_bytes: must be greater than 0"),
                n if n > 1024 * 1024 => {
                    bail!("limits.max_body_bytes: {n} is above the 1 MiB ceiling (Twilio sends < 2 KiB)")
                }
                n => n,
            },
            body_timeout: nonzero_duration("limits.body_timeout", &raw.limits.body_timeout)?,
            header_timeout: nonzero_duration("limits.header_timeout", &raw.limits.header_timeout)?,
        };

        let trusted_proxies = raw
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        anyhow!("trusted_proxies[{i}]: {s:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)")
                    })
            })
            .collect::<Result<Vec<_>>>()?;

        let keys = match secrets {
            Secrets::Load => load_keys(&raw.secrets, base)?,
            Secrets::Skip => KeyRing::default(),
        };

        let mut allowed_accounts = HashSet::new();
        for (i, sid) in raw.allowed_accounts.iter().enumerate() {
            check_account_sid(&format!("allowed_accounts[{i}]"), sid)?;
            allowed_accounts.insert(sid.clone());
        }

        if raw.upstreams.is_empty() {
            bail!("upstreams: at least one upstream group is required");
        }
        let mut upstreams = Vec::new();
        for (name, u) in &raw.upstreams {
            upstreams.push(upstream(name, u)?);
        }

        if raw.routes.is_empty() {
            bail!("routes: at least one route is required");
        }
        let mut routes: Vec<Route> = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let route = route(&format!("routes[{i}]"), r, &upstreams, base, &mut warnings)?;
            if let Some(other) = routes.iter().find(|o| o.path == route.path) {
                bail!(
                    "routes[{i}].path: {:?} is already served by route {:?}; paths must be unique",
                    route.path,
                    other.name
                );
            }
            if routes.iter().any(|o| o.name == route.name) {
                bail!(
                    "routes[{i}].name: {:?} is used twice; names label metrics and must be unique",
                    route.name
                );
            }
            routes.push(route);
        }

        let buffer = match &raw.buffer {
            Some(b) => Some(BufferConfig {
                path: resolve(base, &b.path),
                max_messages: match b.max_messages {
                    0 => bail!("buffer.max_messages: must be at least 1"),
                    n => n,
                },
                redelivery_interval: nonzero_duration(
                    "buffer.redelivery_interval",
                    &b.redelivery_interval,
                )?,
                redelivery_concurrency: NonZeroUsize::new(b.redelivery_concurrency)
                    .ok_or_else(|| anyhow!("buffer.redelivery_concurrency: must be at least 1"))?,
                redelivery_backoff: backoff("buffer.redelivery_backoff", &b.redelivery_backoff)?,
            }),
            None => None,
        };
        if buffer.is_none() {
            if let Some(r) = routes
                .iter()
                .find(|r| matches!(r.on_exhausted, OnExhausted::Buffer { .. }))
            {
                bail!(
                    "route {:?} has on_exhausted: buffer, but there is no buffer section (add buffer: {{ path: /var/lib/twilio-notify-proxy/buffer.redb }})",
                    r.name
                );
            }
        }
        let dedupe_raw = raw.dedupe.unwrap_or_default();
        let dedupe = if dedupe_raw.enabled {
            Some(DedupeConfig {
                key: match dedupe_raw.key.as_str() {
                    "auto" => DedupeKey::Auto,
                    "idempotency_token" => DedupeKey::IdempotencyToken,
                    "message_id" => DedupeKey::MessageId,
                    other => {
                        bail!("dedupe.key: {other:?} must be auto, idempotency_token or message_id")
                    }
                },
                ttl: nonzero_duration("dedupe.ttl", &dedupe_raw.ttl)?,
                capacity: match dedupe_raw.capacity {
                    0 => {
                        bail!("dedupe.capacity: must be at least 1 (or set dedupe.enabled: false)")
                    }
                    n if n > 10_000_000 => {
                        bail!("dedupe.capacity: {n} is above 10,000,000 entries (~1 GiB)")
                    }
                    n => n,
                },
            })
        } else {
            None
        };

        let logging = LoggingConfig {
            level: {
                let level = raw.logging.level.trim().to_string();
                tracing_subscriber::EnvFilter::try_new(&level).map_err(|e| {
                    anyhow!("logging.level: {level:?} is not a log filter ({e}); write e.g. info or warn,access=info")
                })?;
                level
            },
            format: match raw.logging.format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => bail!("logging.format: {other:?} must be text or json"),
            },
            access_log: raw.logging.access_log,
        };

        Ok(Config {
            source: source.to_path_buf(),
            server,
            listeners,
            admin_address,
            limits,
            trusted_proxies,
            keys,
            allowed_accounts,
            upstreams,
            routes,
            buffer,
            dedupe,
            logging,
            warnings,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Load,
    Skip,
}

fn duration(key: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value.trim())
        .map_err(|e| anyhow!("{key}: {value:?} is not a duration ({e}); write e.g. 500ms, 5s, 1m"))
}

fn backoff(key: &str, b: &RawBackoff) -> Result<Backoff> {
    let initial = nonzero_duration(&format!("{key}.initial"), &b.initial)?;
    let max = nonzero_duration(&format!("{key}.max"), &b.max)?;
    Backoff::try_new(initial, max, b.jitter).map_err(|e| anyhow!("{key}: {e}"))
}

fn nonzero_duration(key: &str, value: &str) -> Result<Duration> {
    let d = duration(key, value)?;
    if d.is_zero() {
        bail!("{key}: must be greater than 0");
    }
    Ok(d)
}

fn socket_addr(key: &str, value: &str) -> Result<SocketAddr> {
    value
        .parse()
        .map_err(|_| anyhow!("{key}: {value:?} is not an IP:port address (e.g. 0.0.0.0:8080)"))
}

fn resolve(base: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn existing_file(key: &str, base: &Path, value: &str) -> Result<PathBuf> {
    let path = resolve(base, value);
    if !path.is_file() {
        bail!("{key}: file {} does not exist", path.display());
    }
    Ok(path)
}

fn check_account_sid(key: &str, sid: &str) -> Result<()> {
    let ok =
        sid.len() == 34 && sid.starts_with("AC") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        bail!("{key}: {sid:?} is not an Account SID (AC followed by 32 hex digits)");
    }
    Ok(())
}

/// Reads one secret. The value never appears in an error message; only where it was looked for.
fn read_secret(key: &str, r: &RawSecretRef, base: &Path) -> Result<Vec<u8>> {
    let value = match (&r.env, &r.file) {
        (Some(var), None) => std::env::var(var).map_err(|_| {
            anyhow!(
                "{key}: environment variable {var} is not set (export it, or use file: instead)"
            )
        })?,
        (None, Some(file)) => {
            let path = resolve(base, file);
            std::fs::read_to_string(&path)
                .with_context(|| format!("{key}: cannot read secret file {}", path.display()))?
        }
        _ => bail!("{key}: give exactly one of env: VAR or file: PATH"),
    };
    // Files usually end with a newline that is not part of the token.
    let value = value.trim_end_matches(['\r', '\n']);
    if value.trim().is_empty() {
        bail!("{key}: the secret is empty");
    }
    Ok(value.as_bytes().to_vec())
}

fn load_keys(raw: &raw::RawSecrets, base: &Path) -> Result<KeyRing> {
    let mut keys = KeyRing::default();
    if let Some(r) = &raw.auth_token {
        let secret = read_secret("secrets.auth_token", r, base)?;
        keys.auth_tokens
            .push(SigningKey::new(Algorithm::HmacSha1, &secret));
    }
    if let Some(r) = &raw.secondary_auth_token {
        if raw.auth_token.is_none() {
            bail!("secrets.secondary_auth_token: set secrets.auth_token first (the secondary is for rotation)");
        }
        let secret = read_secret("secrets.secondary_auth_token", r, base)?;
        keys.auth_tokens
            .push(SigningKey::new(Algorithm::HmacSha1, &secret));
    }
    for (sid, r) in &raw.accounts {
        let key = format!("secrets.accounts.{sid}");
        check_account_sid(&key, sid)?;
        let secret = read_secret(&key, r, base)?;
        keys.accounts
            .insert(sid.clone(), SigningKey::new(Algorithm::HmacSha1, &secret));
    }
    for (id, r) in &raw.shared_keys {
        let secret = read_secret(&format!("secrets.shared_keys.{id}"), r, base)?;
        keys.shared_keys
            .insert(id.clone(), SigningKey::new(Algorithm::HmacSha256, &secret));
    }
    if keys.auth_tokens.is_empty() && keys.accounts.is_empty() && keys.shared_keys.is_empty() {
        bail!(
            "secrets: no secret configured; set secrets.auth_token: {{ env: TWILIO_AUTH_TOKEN }}"
        );
    }
    Ok(keys)
}

fn upstream(name: &str, u: &RawUpstream) -> Result<UpstreamConfig> {
    let key = format!("upstreams.{name}");
    if u.peers.is_empty() {
        bail!("{key}.peers: at least one peer (host:port) is required");
    }
    let mut peers = Vec::new();
    for (i, p) in u.peers.iter().enumerate() {
        let addr = p
            .to_socket_addrs()
            .map_err(|e| anyhow!("{key}.peers[{i}]: {p:?} is not a reachable host:port ({e})"))?
            .next()
            .ok_or_else(|| anyhow!("{key}.peers[{i}]: {p:?} resolves to no address"))?;
        peers.push(addr);
    }
    Ok(UpstreamConfig {
        name: name.to_string(),
        peers,
        connect_timeout: nonzero_duration(&format!("{key}.connect_timeout"), &u.connect_timeout)?,
        response_timeout: nonzero_duration(
            &format!("{key}.response_timeout"),
            &u.response_timeout,
        )?,
        idle_timeout: duration(&format!("{key}.idle_timeout"), &u.idle_timeout)?,
        pool_size: NonZeroUsize::new(u.pool_size)
            .ok_or_else(|| anyhow!("{key}.pool_size: must be at least 1"))?,
        health_check_interval: match &u.health_check {
            Some(h) => Some(nonzero_duration(
                &format!("{key}.health_check.interval"),
                &h.interval,
            )?),
            None => None,
        },
        breaker_threshold: std::num::NonZeroU32::new(u.circuit_breaker.failure_threshold)
            .ok_or_else(|| {
                anyhow!("{key}.circuit_breaker.failure_threshold: must be at least 1")
            })?,
        breaker_open_for: nonzero_duration(
            &format!("{key}.circuit_breaker.open_for"),
            &u.circuit_breaker.open_for,
        )?,
    })
}

fn public_url(key: &str, value: &str) -> Result<PublicUrl> {
    let url = crate::signature::SignedUrl::parse(value).map_err(|e| anyhow!("{key}: {e}"))?;
    if !url.query.is_empty() || value.contains('#') {
        bail!("{key}: {value:?} must not contain a query or fragment (each request's own query is what Twilio signs)");
    }
    if url.host.contains('_') {
        // Twilio rejects hostnames with underscores (13807 "invalid hostname").
        bail!(
            "{key}: host {:?} contains an underscore, which Twilio cannot call",
            url.host
        );
    }
    let path = std::str::from_utf8(url.path).expect("parsed from str");
    Ok(PublicUrl {
        scheme: url.scheme.to_ascii_lowercase(),
        host: url.host.to_string(),
        port: url.port.map(str::to_string),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_string()
        },
    })
}

fn route(
    key: &str,
    r: RawRoute,
    upstreams: &[UpstreamConfig],
    base: &Path,
    warnings: &mut Vec<String>,
) -> Result<Route> {
    let public_url = match &r.public_url {
        Some(u) => Some(public_url(&format!("{key}.public_url"), u)?),
        None => None,
    };
    let path = match (&r.path, &public_url) {
        (Some(p), _) => p.clone(),
        (None, Some(u)) => u.path.clone(),
        (None, None) => {
            bail!("{key}: set path (and public_url, the URL Twilio is configured with)")
        }
    };
    if !path.starts_with('/') || path.contains('?') {
        bail!("{key}.path: {path:?} must start with / and hold no query");
    }
    if let Some(u) = &public_url {
        if u.scheme != "https" {
            warnings.push(format!(
                "{key}.public_url: {}://… is not https; Twilio requires https for client notifications in production",
                u.scheme
            ));
        }
    } else {
        warnings.push(format!(
            "{key}: no public_url; the signed URL is rebuilt from Host (or X-Forwarded-* from trusted_proxies)"
        ));
    }
    let upstream = upstreams
        .iter()
        .position(|u| u.name == r.upstream)
        .ok_or_else(|| {
            let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
            anyhow!(
                "{key}.upstream: {:?} is not defined under upstreams (known: {known:?})",
                r.upstream
            )
        })?;
    let body = match r.body.as_str() {
        "json" => BodyKind::Json,
        "form" => BodyKind::Form,
        other => bail!(
            "{key}.body: {other:?} must be json (client notifications) or form (other webhooks)"
        ),
    };
    let schema_mode = match r.schema_mode.as_str() {
        "enforce" => SchemaMode::Enforce,
        "report" => SchemaMode::Report,
        other => bail!("{key}.schema_mode: {other:?} must be enforce or report"),
    };
    let schema = match (&r.schema, body) {
        (Some(_), BodyKind::Form) => {
            bail!("{key}.schema: schemas apply to json routes only; remove it or set body: json")
        }
        (Some(file), BodyKind::Json) => {
            let path = resolve(base, file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{key}.schema: cannot read {}", path.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{key}.schema: {} is not valid JSON", path.display()))?;
            let schema = NotificationSchema::compile(&value).map_err(|e| {
                anyhow!(
                    "{key}.schema: {} is not a valid JSON Schema: {e}",
                    path.display()
                )
            })?;
            Some(Arc::new(schema))
        }
        (None, _) => None,
    };
    let deadline = nonzero_duration(&format!("{key}.retry.deadline"), &r.retry.deadline)?;
    if deadline >= Duration::from_secs(15) {
        bail!("{key}.retry.deadline: {deadline:?} is not below Twilio's 15 s timeout; keep it at 10 s or less");
    }
    if deadline > Duration::from_secs(10) {
        warnings.push(format!(
            "{key}.retry.deadline: {deadline:?} leaves little of Twilio's 15 s for its own connect and the buffer write"
        ));
    }
    for (i, status) in r.retry.on_status.iter().enumerate() {
        if !(500..=599).contains(status) {
            bail!("{key}.retry.on_status[{i}]: {status} is not a 5xx status (4xx answers are never retried)");
        }
    }
    let retry = RetryPolicy {
        max_attempts: std::num::NonZeroU32::new(r.retry.max_attempts)
            .ok_or_else(|| anyhow!("{key}.retry.max_attempts: must be at least 1"))?,
        deadline,
        backoff: backoff(&format!("{key}.retry.backoff"), &r.retry.backoff)?,
        retry_statuses: r.retry.on_status.clone(),
    };
    let on_exhausted = match r.on_exhausted.as_str() {
        "fail" => OnExhausted::Fail,
        "buffer" => {
            if body == BodyKind::Form {
                warnings.push(format!("{key}: buffering a form webhook answers Twilio before the handler has; its TwiML answer is lost"));
            }
            OnExhausted::Buffer {
                ttl: nonzero_duration(&format!("{key}.buffer_ttl"), &r.buffer_ttl)?,
                status: match http::StatusCode::from_u16(r.buffered_status) {
                    Ok(s) if s.is_success() => s,
                    _ => bail!("{key}.buffered_status: {} must be a 2xx status (Twilio treats anything else as 13807)", r.buffered_status),
                },
            }
        }
        other => bail!("{key}.on_exhausted: {other:?} must be fail or buffer"),
    };
    Ok(Route {
        name: r.name.unwrap_or_else(|| path.clone()),
        path,
        public_url,
        upstream,
        body,
        schema,
        schema_mode,
        retry,
        on_exhausted,
    })
}

/// Used by tests and `check` to show a config's shape without secrets.
pub fn summary(config: &Config) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    m.insert(
        "listeners",
        config
            .listeners
            .iter()
            .map(|l| {
                format!(
                    "{}{}",
                    l.address,
                    if l.tls.is_some() { " (tls)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    m.insert("admin", config.admin_address.to_string());
    m.insert(
        "routes",
        config
            .routes
            .iter()
            .map(|r| format!("{} -> {}", r.path, config.upstreams[r.upstream].name))
            .collect::<Vec<_>>()
            .join(", "),
    );
    m.insert(
        "keys",
        format!(
            "{} auth token(s), {} subaccount(s), {} shared key(s)",
            config.keys.auth_tokens.len(),
            config.keys.accounts.len(),
            config.keys.shared_keys.len()
        ),
    );
    m
}

#[cfg(test)]
mod tests;
