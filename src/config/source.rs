//! Everything configuration reads from outside the YAML text: the config file itself, secrets
//! from environment variables or files, JSON Schema files, TLS files, the probe's extra CA file.
//!
//! Owns all file and environment access of [`super`], so validators stay free of I/O except
//! through here. Secrets go through the [`SecretSource`] trait, so tests inject a map instead of
//! changing the process environment. No function here logs, and no error carries a secret's
//! value: only where it was looked for.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::raw::RawSecretRef;

/// Where secret values come from. [`ProcessEnv`] is the real one; tests pass their own.
pub trait SecretSource {
    /// The value of environment variable `name`, or `None` when it is not set.
    fn env(&self, name: &str) -> Option<String>;
    /// The contents of the secret file at `path` (already resolved against the config folder).
    fn file(&self, path: &Path) -> std::io::Result<String>;
}

/// The process environment and the file system: what `run` and `check` use.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl SecretSource for ProcessEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Reads the config file itself.
pub(super) fn read_config(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("config: cannot read {}", path.display()))
}

/// `value` as written in the file, relative paths taken from the config file's folder.
pub(super) fn resolve(base: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The path of a file that must exist when the proxy starts (TLS certificate and key).
pub(super) fn existing_file(key: &str, base: &Path, value: &str) -> Result<PathBuf> {
    let path = resolve(base, value);
    if !path.is_file() {
        bail!("{key}: file {} does not exist", path.display());
    }
    Ok(path)
}

/// Reads and parses a JSON file (a route's schema).
pub(super) fn read_json(
    key: &str,
    base: &Path,
    value: &str,
) -> Result<(PathBuf, serde_json::Value)> {
    let path = resolve(base, value);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{key}: cannot read {}", path.display()))?;
    let json = serde_json::from_str(&text)
        .with_context(|| format!("{key}: {} is not valid JSON", path.display()))?;
    Ok((path, json))
}

/// Reads a file the config names that is not a secret (`probe.public.ca_file`).
pub(super) fn read_bytes(key: &str, base: &Path, value: &str) -> Result<(PathBuf, Vec<u8>)> {
    let path = resolve(base, value);
    let bytes =
        std::fs::read(&path).with_context(|| format!("{key}: cannot read {}", path.display()))?;
    Ok((path, bytes))
}

/// Reads one secret. The value never appears in an error message; only where it was looked for.
pub(super) fn read_secret(
    key: &str,
    r: &RawSecretRef,
    base: &Path,
    source: &dyn SecretSource,
) -> Result<Vec<u8>> {
    let value = match (&r.env, &r.file) {
        (Some(var), None) => source.env(var).ok_or_else(|| {
            anyhow!(
                "{key}: environment variable {var} is not set (export it, or use file: instead)"
            )
        })?,
        (None, Some(file)) => {
            let path = resolve(base, file);
            source
                .file(&path)
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
