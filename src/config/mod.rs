//! Configuration: load the YAML file, resolve secrets and schemas, validate everything.
//!
//! Owns the typed [`Config`] the rest of the proxy runs on, and the only ways to get one
//! ([`Config::load`] and friends). Loading happens once, before any port is bound; every error
//! names the file, the key and, where there is one, the fix. The work is split by job:
//! - `model`: the typed sections (enums, `Duration`s, `NonZero*`), re-exported here;
//! - `raw`: the serde mirror of the file (`deny_unknown_fields`, serde enums);
//! - `validate` (top-level sections and cross-section rules), `route`, `upstream`, `secrets`,
//!   `probe`: one validator per section; `values`: the scalar parsers they share;
//! - `source`: all file and environment reads, secrets behind [`SecretSource`];
//! - `summary`: what `check` prints ([`summary()`]);
//! - `restart`: which changes a live reload may apply ([`restart_required`]).
//!
//! This module never opens sockets and never logs a secret. Code outside it uses the
//! re-exports below, never the raw layer.

mod model;
mod probe;
mod raw;
mod restart;
mod route;
mod secrets;
mod source;
mod summary;
mod upstream;
mod validate;
mod values;

use std::path::Path;

use anyhow::{anyhow, Result};

pub use model::{
    flatten_peers, BodyKind, BufferBackend, BufferConfig, Config, DedupeConfig, DedupeKey,
    ErrorRoute, Limits, Listener, LogFormat, LoggingConfig, OnExhausted, PeerSpec, PostgresBuffer,
    ProbeConfig, PublicUrl, ResolvedPeer, Route, SchemaMode, ServerSettings, TlsFiles,
    TwilioErrorsConfig, UpstreamConfig,
};
pub use probe::PublicProbe;
pub use restart::restart_required;
pub use source::{ProcessEnv, SecretSource};
pub use summary::summary;
pub use values::plain_identifier;

/// Whether loading reads the signing keys (`secrets:`), or leaves the key ring empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    Read,
    Skip,
}

impl Config {
    /// Reads, parses and validates `path`, including the secrets (from the process environment
    /// and files) and schema files it names.
    pub fn load(path: &Path) -> Result<Config> {
        Self::load_with(path, &ProcessEnv)
    }

    /// Like [`Config::load`], with secrets read from `secrets` (tests pass a map).
    pub fn load_with(path: &Path, secrets: &dyn SecretSource) -> Result<Config> {
        Self::parse(&source::read_config(path)?, path, secrets, Keys::Read)
    }

    /// Like [`Config::load`], also returning the file's text (what a reload compares).
    pub fn load_with_text(path: &Path, secrets: &dyn SecretSource) -> Result<(Config, String)> {
        let text = source::read_config(path)?;
        Ok((Self::parse(&text, path, secrets, Keys::Read)?, text))
    }

    /// Like [`Config::load`] but without the signing keys: for commands that never verify a
    /// signature (`buffer ...`), so operators need not export tokens to inspect the buffer.
    /// `buffer.url` is still read (from the process environment or its file): it is how such a
    /// command reaches a PostgreSQL store.
    pub fn load_without_keys(path: &Path) -> Result<Config> {
        Self::parse(&source::read_config(path)?, path, &ProcessEnv, Keys::Skip)
    }

    /// Parses `text` as if it were the file at `path` (relative paths resolve against its folder).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config> {
        Self::from_yaml_with(text, path, &ProcessEnv)
    }

    /// Like [`Config::from_yaml`], with secrets read from `secrets`.
    pub fn from_yaml_with(text: &str, path: &Path, secrets: &dyn SecretSource) -> Result<Config> {
        Self::parse(text, path, secrets, Keys::Read)
    }

    fn parse(text: &str, path: &Path, secrets: &dyn SecretSource, keys: Keys) -> Result<Config> {
        let raw: raw::RawConfig =
            serde_yaml::from_str(text).map_err(|e| anyhow!("config {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate::config(raw, path, base, secrets, keys)
            .map_err(|e| anyhow!("config {}: {e:#}", path.display()))
    }
}

#[cfg(test)]
mod tests;
