//! Turns the raw file into a [`Config`]: one validator per section, then the rules that span
//! sections (admin vs. listeners, routes vs. upstreams, buffering routes vs. `buffer:`).
//!
//! Owns the order of checks and the cross-section rules. Each error starts with the dotted key
//! it is about and says the fix; [`super`] prefixes the file name. I/O goes through
//! [`super::source`]; nothing here binds a port or logs.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;

use super::model::{
    BufferBackend, BufferConfig, Config, DedupeConfig, Limits, Listener, LoggingConfig,
    OnExhausted, PostgresBuffer, Route, ServerSettings, TlsFiles, UpstreamConfig,
};
use super::probe::probe;
use super::raw::{
    BufferBackendKind, RawBuffer, RawConfig, RawDedupe, RawLimits, RawListener, RawLogging,
    RawServer, RawUpstream,
};
use super::route::{routes, twilio_errors};
use super::secrets::keys;
use super::source::{existing_file, read_secret, resolve, SecretSource};
use super::upstream::upstream;
use super::values::{
    backoff, check_account_sid, duration, nonzero_duration, plain_identifier, socket_addr,
};
use super::Keys;
use crate::policy::CLAIM_TAKE_OVER_WITHIN;
use crate::signature::KeyRing;

/// Validates `raw`, read from `source` (relative paths resolve against `base`). With
/// [`Keys::Skip`] no signing key is read and the key ring stays empty.
pub(super) fn config(
    raw: RawConfig,
    source: &Path,
    base: &Path,
    secrets: &dyn SecretSource,
    read_keys: Keys,
) -> Result<Config> {
    let mut warnings = Vec::new();
    let server = server(raw.server)?;
    let listeners = listeners(raw.listeners, base)?;
    let admin_address = admin(&raw.admin.address, &listeners, &mut warnings)?;
    let limits = limits(&raw.limits)?;
    let trusted_proxies = trusted_proxies(&raw.trusted_proxies)?;
    let keys = match read_keys {
        Keys::Read => keys(&raw.secrets, base, secrets)?,
        Keys::Skip => KeyRing::default(),
    };
    let allowed_accounts = allowed_accounts(&raw.allowed_accounts)?;
    let upstreams = upstreams(&raw.upstreams)?;
    let (routes, error_routes) = routes(raw.routes, &upstreams, base, &mut warnings)?;
    let twilio_errors = twilio_errors(&raw.twilio_errors)?;
    let buffer = match &raw.buffer {
        Some(b) => Some(buffer(b, base, secrets)?),
        None => None,
    };
    let dedupe = dedupe(raw.dedupe.unwrap_or_default())?;
    match &buffer {
        None => require_no_buffering(&routes)?,
        Some(b) => {
            require_answer_in_time(b, dedupe.is_some(), &routes)?;
            require_lease_over_an_attempt(b, &upstreams)?;
        }
    }
    let logging = logging(raw.logging)?;
    let keys_read = (read_keys == Keys::Read).then_some(&keys);
    let probe = probe(raw.probe, base, keys_read, &allowed_accounts, &mut warnings)?;
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
        error_routes,
        twilio_errors,
        buffer,
        dedupe,
        logging,
        probe,
        warnings,
    })
}

fn server(raw: RawServer) -> Result<ServerSettings> {
    Ok(ServerSettings {
        threads: NonZeroUsize::new(raw.threads)
            .ok_or_else(|| anyhow!("server.threads: must be at least 1"))?,
        work_stealing: raw.work_stealing,
        grace_period: duration("server.grace_period", &raw.grace_period)?,
        graceful_shutdown_timeout: duration(
            "server.graceful_shutdown_timeout",
            &raw.graceful_shutdown_timeout,
        )?,
        pid_file: raw.pid_file,
        upgrade_sock: raw.upgrade_sock,
        error_log: raw.error_log,
    })
}

fn listeners(raw: Vec<RawListener>, base: &Path) -> Result<Vec<Listener>> {
    if raw.is_empty() {
        bail!("listeners: at least one listener is required (e.g. - address: 0.0.0.0:8080)");
    }
    let mut listeners = Vec::new();
    for (i, l) in raw.into_iter().enumerate() {
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
    Ok(listeners)
}

fn admin(address: &str, listeners: &[Listener], warnings: &mut Vec<String>) -> Result<SocketAddr> {
    let admin_address = socket_addr("admin.address", address)?;
    if listeners.iter().any(|l| l.address == admin_address) {
        bail!("admin.address: {admin_address} is also a public listener; use a separate port");
    }
    if !admin_address.ip().is_loopback() {
        warnings.push(format!(
            "admin.address: {admin_address} is not loopback; /metrics will be reachable from the network"
        ));
    }
    Ok(admin_address)
}

fn limits(raw: &RawLimits) -> Result<Limits> {
    Ok(Limits {
        max_body_bytes: match raw.max_body_bytes {
            0 => bail!("limits.max_body_bytes: must be greater than 0"),
            n if n > 1024 * 1024 => {
                bail!(
                    "limits.max_body_bytes: {n} is above the 1 MiB ceiling (Twilio sends < 2 KiB)"
                )
            }
            n => n,
        },
        body_timeout: nonzero_duration("limits.body_timeout", &raw.body_timeout)?,
        header_timeout: nonzero_duration("limits.header_timeout", &raw.header_timeout)?,
        write_timeout: nonzero_duration("limits.write_timeout", &raw.write_timeout)?,
        max_connections: NonZeroUsize::new(raw.max_connections)
            .ok_or_else(|| anyhow!("limits.max_connections: must be greater than 0"))?,
    })
}

fn trusted_proxies(raw: &[String]) -> Result<Vec<IpNet>> {
    raw.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    anyhow!("trusted_proxies[{i}]: {s:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)")
                })
        })
        .collect()
}

fn allowed_accounts(raw: &[String]) -> Result<HashSet<String>> {
    let mut allowed = HashSet::new();
    for (i, sid) in raw.iter().enumerate() {
        check_account_sid(&format!("allowed_accounts[{i}]"), sid)?;
        allowed.insert(sid.clone());
    }
    Ok(allowed)
}

fn upstreams(raw: &std::collections::BTreeMap<String, RawUpstream>) -> Result<Vec<UpstreamConfig>> {
    if raw.is_empty() {
        bail!("upstreams: at least one upstream group is required");
    }
    raw.iter().map(|(name, u)| upstream(name, u)).collect()
}

fn buffer(raw: &RawBuffer, base: &Path, secrets: &dyn SecretSource) -> Result<BufferConfig> {
    Ok(BufferConfig {
        backend: buffer_backend(raw, base, secrets)?,
        max_messages: match raw.max_messages {
            0 => bail!("buffer.max_messages: must be at least 1"),
            n => n,
        },
        max_dead_letters: match raw.max_dead_letters {
            0 => bail!(
                "buffer.max_dead_letters: must be at least 1 (dead letters are what operators \
                 inspect; the oldest are evicted beyond it)"
            ),
            n => n,
        },
        redelivery_interval: nonzero_duration(
            "buffer.redelivery_interval",
            &raw.redelivery_interval,
        )?,
        redelivery_concurrency: NonZeroUsize::new(raw.redelivery_concurrency)
            .ok_or_else(|| anyhow!("buffer.redelivery_concurrency: must be at least 1"))?,
        redelivery_backoff: backoff("buffer.redelivery_backoff", &raw.redelivery_backoff)?,
        ring_window: nonzero_duration("buffer.ring_window", &raw.ring_window)?,
    })
}

/// The keys of one backend, refusing the other's (a `path` beside `backend: postgres` is a
/// config that does not do what its author thinks).
fn buffer_backend(
    raw: &RawBuffer,
    base: &Path,
    secrets: &dyn SecretSource,
) -> Result<BufferBackend> {
    let postgres_keys = [
        ("url", raw.url.is_some()),
        ("schema", raw.schema.is_some()),
        ("pool_size", raw.pool_size.is_some()),
        ("lease", raw.lease.is_some()),
        ("store_timeout", raw.store_timeout.is_some()),
    ];
    match raw.backend {
        BufferBackendKind::Redb => {
            if let Some((key, _)) = postgres_keys.iter().find(|(_, set)| *set) {
                bail!(
                    "buffer.{key}: only for backend: postgres; the redb buffer takes buffer.path \
                     (or set buffer.backend: postgres)"
                );
            }
            let Some(path) = &raw.path else {
                bail!(
                    "buffer.path: required for the redb buffer (e.g. \
                     /var/lib/twilio-notify-proxy/buffer.redb), or set buffer.backend: postgres"
                );
            };
            Ok(BufferBackend::Redb {
                path: resolve(base, path),
            })
        }
        BufferBackendKind::Postgres => {
            if raw.path.is_some() {
                bail!(
                    "buffer.path: only for backend: redb; the postgres buffer is reached by \
                     buffer.url"
                );
            }
            let Some(url) = &raw.url else {
                bail!(
                    "buffer.url: required for backend: postgres (e.g. url: {{ env: DATABASE_URL }} \
                     holding postgres://user:password@host:5432/database)"
                );
            };
            let url = String::from_utf8(read_secret("buffer.url", url, base, secrets)?)
                .map_err(|_| anyhow!("buffer.url: the URL is not UTF-8"))?;
            let schema = raw
                .schema
                .clone()
                .unwrap_or_else(|| "notify_proxy".to_owned());
            if !plain_identifier(&schema) {
                bail!(
                    "buffer.schema: {schema:?} is not a plain identifier: use lower-case letters, \
                     digits and '_', starting with a letter or '_', at most 63 characters"
                );
            }
            let pool_size = NonZeroUsize::new(raw.pool_size.unwrap_or(8))
                .ok_or_else(|| anyhow!("buffer.pool_size: must be at least 1"))?;
            let lease = nonzero_duration("buffer.lease", raw.lease.as_deref().unwrap_or("30s"))?;
            let store_timeout = nonzero_duration(
                "buffer.store_timeout",
                raw.store_timeout.as_deref().unwrap_or("2s"),
            )?;
            Ok(BufferBackend::Postgres(PostgresBuffer {
                url,
                schema,
                pool_size,
                lease,
                store_timeout,
            }))
        }
    }
}

/// Twilio waits 15 s for an answer. With PostgreSQL the answer can wait for the dedupe claim
/// and the live attempts (together the longer of `retry.deadline` and one store call, plus a
/// quarter second for a take-over), then, on a buffering route, the insert, then the dedupe
/// settle, each bounded by `buffer.store_timeout`: together they must fit, with a second to
/// spare.
fn require_answer_in_time(buffer: &BufferConfig, dedupe: bool, routes: &[Route]) -> Result<()> {
    let BufferBackend::Postgres(pg) = &buffer.backend else {
        return Ok(());
    };
    let budget = Duration::from_secs(14);
    for r in routes {
        let buffers = matches!(r.on_exhausted, OnExhausted::Buffer { .. });
        let (claim, settle) = if dedupe {
            (CLAIM_TAKE_OVER_WITHIN, pg.store_timeout)
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        let insert = if buffers {
            pg.store_timeout
        } else {
            Duration::ZERO
        };
        let live = if dedupe {
            r.retry.deadline.max(pg.store_timeout)
        } else {
            r.retry.deadline
        };
        let worst = live + claim + insert + settle;
        if worst > budget {
            bail!(
                "buffer.store_timeout: route {:?} could answer after {worst:?} (retry.deadline \
                 {:?}, then {} store call(s) of up to {:?}), past the 14 s that leave a margin \
                 under Twilio's 15 s; lower the route's retry.deadline or buffer.store_timeout",
                r.name,
                r.retry.deadline,
                u32::from(buffers) + u32::from(dedupe),
                pg.store_timeout
            );
        }
    }
    Ok(())
}

/// A message claimed for redelivery must stay claimed for its whole attempt and the store call
/// that records it, or another instance could claim and deliver it meanwhile.
fn require_lease_over_an_attempt(
    buffer: &BufferConfig,
    upstreams: &[UpstreamConfig],
) -> Result<()> {
    let BufferBackend::Postgres(pg) = &buffer.backend else {
        return Ok(());
    };
    for u in upstreams {
        let needed = u.response_timeout + pg.store_timeout * 2;
        if pg.lease <= needed {
            bail!(
                "buffer.lease: {:?} does not outlast one redelivery to upstreams.{} \
                 (response_timeout {:?} + 2 × store_timeout {:?}); set buffer.lease above {needed:?} \
                 (e.g. 30s), or lower that response_timeout",
                pg.lease,
                u.name,
                u.response_timeout,
                pg.store_timeout
            );
        }
    }
    Ok(())
}

/// A route that buffers needs somewhere to buffer to.
fn require_no_buffering(routes: &[Route]) -> Result<()> {
    match routes
        .iter()
        .find(|r| matches!(r.on_exhausted, OnExhausted::Buffer { .. }))
    {
        Some(r) => bail!(
            "route {:?} has on_exhausted: buffer, but there is no buffer section (add buffer: {{ path: /var/lib/twilio-notify-proxy/buffer.redb }})",
            r.name
        ),
        None => Ok(()),
    }
}

fn dedupe(raw: RawDedupe) -> Result<Option<DedupeConfig>> {
    if !raw.enabled {
        return Ok(None);
    }
    Ok(Some(DedupeConfig {
        key: raw.key,
        ttl: nonzero_duration("dedupe.ttl", &raw.ttl)?,
        capacity: match raw.capacity {
            0 => bail!("dedupe.capacity: must be at least 1 (or set dedupe.enabled: false)"),
            n if n > 10_000_000 => {
                bail!("dedupe.capacity: {n} is above 10,000,000 entries (~1 GiB)")
            }
            n => n,
        },
    }))
}

fn logging(raw: RawLogging) -> Result<LoggingConfig> {
    let level = raw.level.trim().to_string();
    tracing_subscriber::EnvFilter::try_new(&level).map_err(|e| {
        anyhow!("logging.level: {level:?} is not a log filter ({e}); write e.g. info or warn,access=info")
    })?;
    Ok(LoggingConfig {
        level,
        format: raw.format,
        access_log: raw.access_log,
    })
}
