//! The `secrets:` section: which signing keys the proxy verifies with.
//!
//! Owns the rules between secrets (a secondary token needs a primary, subaccounts are keyed by
//! a valid Account SID, at least one secret overall) and the algorithm each kind of key uses.
//! Values are read only through a [`SecretSource`]; none ever reaches an error or a log line.

use std::path::Path;

use anyhow::{bail, Result};

use super::raw::RawSecrets;
use super::source::{read_secret, SecretSource};
use super::values::check_account_sid;
use crate::signature::{Algorithm, KeyRing, SigningKey};

pub(super) fn keys(raw: &RawSecrets, base: &Path, source: &dyn SecretSource) -> Result<KeyRing> {
    let mut keys = KeyRing::default();
    if let Some(r) = &raw.auth_token {
        let secret = read_secret("secrets.auth_token", r, base, source)?;
        keys.auth_tokens
            .push(SigningKey::new(Algorithm::HmacSha1, &secret));
    }
    if let Some(r) = &raw.secondary_auth_token {
        if raw.auth_token.is_none() {
            bail!("secrets.secondary_auth_token: set secrets.auth_token first (the secondary is for rotation)");
        }
        let secret = read_secret("secrets.secondary_auth_token", r, base, source)?;
        keys.auth_tokens
            .push(SigningKey::new(Algorithm::HmacSha1, &secret));
    }
    for (sid, r) in &raw.accounts {
        let key = format!("secrets.accounts.{sid}");
        check_account_sid(&key, sid)?;
        let secret = read_secret(&key, r, base, source)?;
        keys.accounts
            .insert(sid.clone(), SigningKey::new(Algorithm::HmacSha1, &secret));
    }
    for (id, r) in &raw.shared_keys {
        let secret = read_secret(&format!("secrets.shared_keys.{id}"), r, base, source)?;
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
