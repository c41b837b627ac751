//! Parsers for the scalar values the file holds as text: durations, addresses, backoffs,
//! Account SIDs, SQL identifiers.
//!
//! Each takes the dotted key it is parsing, so its error names the key and shows a valid
//! example. Pure: no I/O, no knowledge of which section a value belongs to.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use super::raw::RawBackoff;
use crate::policy::Backoff;

pub(super) fn duration(key: &str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value.trim())
        .map_err(|e| anyhow!("{key}: {value:?} is not a duration ({e}); write e.g. 500ms, 5s, 1m"))
}

pub(super) fn nonzero_duration(key: &str, value: &str) -> Result<Duration> {
    let d = duration(key, value)?;
    if d.is_zero() {
        bail!("{key}: must be greater than 0");
    }
    Ok(d)
}

pub(super) fn backoff(key: &str, b: &RawBackoff) -> Result<Backoff> {
    let initial = nonzero_duration(&format!("{key}.initial"), &b.initial)?;
    let max = nonzero_duration(&format!("{key}.max"), &b.max)?;
    Backoff::try_new(initial, max, b.jitter).map_err(|e| anyhow!("{key}: {e}"))
}

pub(super) fn socket_addr(key: &str, value: &str) -> Result<SocketAddr> {
    value
        .parse()
        .map_err(|_| anyhow!("{key}: {value:?} is not an IP:port address (e.g. 0.0.0.0:8080)"))
}

pub(super) fn check_account_sid(key: &str, sid: &str) -> Result<()> {
    let ok =
        sid.len() == 34 && sid.starts_with("AC") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        bail!("{key}: {sid:?} is not an Account SID (AC followed by 32 hex digits)");
    }
    Ok(())
}

/// Whether `name` is a plain lower-case SQL identifier (a PostgreSQL schema name such as
/// `buffer.schema`): it is spliced into SQL text, so nothing that would need quoting passes.
pub fn plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}
