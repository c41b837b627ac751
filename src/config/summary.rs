//! The short description of a loaded config that `check` prints: listeners, admin address,
//! routes (and those taking Twilio's error events), the buffer and how many keys of each kind
//! were loaded.
//!
//! Owns that wording only. It must never print a secret, a token or a key id's value: counts
//! only.

use std::collections::BTreeMap;

use super::model::{BufferBackend, Config};

/// A config's shape as `key: value` lines, without secrets.
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
            .map(|r| {
                let upstream = config
                    .upstreams
                    .get(r.upstream)
                    .map_or("?", |u| u.name.as_str());
                format!("{} -> {upstream}", r.path)
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    if !config.error_routes.is_empty() {
        m.insert(
            "twilio errors",
            format!(
                "{} (remembered {:?}, at most {} calls)",
                config
                    .error_routes
                    .iter()
                    .map(|r| r.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                config.twilio_errors.remember,
                config.twilio_errors.max_calls
            ),
        );
    }
    m.insert(
        "keys",
        format!(
            "{} auth token(s), {} subaccount(s), {} shared key(s)",
            config.keys.auth_tokens.len(),
            config.keys.accounts.len(),
            config.keys.shared_keys.len()
        ),
    );
    if let Some(p) = &config.probe.public {
        m.insert(
            "public probe",
            format!("{} every {:?} (timeout {:?})", p.url, p.interval, p.timeout),
        );
    }
    if let Some(b) = &config.buffer {
        let backend = match &b.backend {
            BufferBackend::Redb { path } => format!("redb {}", path.display()),
            // The URL may hold a password: never shown.
            BufferBackend::Postgres(pg) => format!(
                "postgres (URL not shown), schema {}, {} connection(s), lease {:?}, store timeout {:?}",
                pg.schema, pg.pool_size, pg.lease, pg.store_timeout
            ),
        };
        m.insert(
            "buffer",
            format!("{backend}, at most {} pending", b.max_messages),
        );
    }
    m
}
