//! The `probe:` section: what `probe`'s synthetic notifications may do (`identity`), and the
//! proxy's own continuous probe of its public URL (`public`).
//!
//! Owns the rules of both: an identity is a plain token; `probe.public` names an http(s) URL
//! Twilio could call, a `timeout` shorter than its `interval`, an account the proxy accepts
//! (`allowed_accounts`), and a key of the proxy's own ring to sign with
//! ([`PublicProbe::signing_key`], the one choice of that key). Reads `ca_file` through
//! [`super::source`]; never logs, never shows a secret.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use openssl::x509::X509;
use serde::Deserialize;

use super::model::ProbeConfig;
use super::raw::RawProbe;
use super::source::read_bytes;
use super::values::{check_account_sid, nonzero_duration, socket_addr};
use crate::signature::{KeyRing, SignedUrl, SigningKey};

/// The Account SID a probe carries when `allowed_accounts` leaves the choice open (the one
/// `probe --account` defaults to).
pub const DEFAULT_ACCOUNT: &str = "AC00000000000000000000000000000000";

/// `probe.public:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublicProbe {
    pub url: String,
    #[serde(default = "default_interval")]
    pub interval: String,
    #[serde(default = "default_timeout")]
    pub timeout: String,
    pub account: Option<String>,
    pub connect: Option<String>,
    pub ca_file: Option<String>,
}

fn default_interval() -> String {
    "30s".into()
}
fn default_timeout() -> String {
    // Twilio waits ~15 s in all; a public path slower than 10 s is failing already.
    "10s".into()
}

/// The proxy's own probe of its public URL (`probe.public`), validated.
#[derive(Debug)]
pub struct PublicProbe {
    /// The URL configured in Twilio.
    pub url: String,
    pub interval: Duration,
    /// Shorter than `interval`.
    pub timeout: Duration,
    /// The Account SID in the probe's body.
    pub account: String,
    /// Connect here instead of resolving the URL's host.
    pub connect: Option<SocketAddr>,
    /// Certificates trusted besides the system's (`ca_file`).
    pub extra_roots: Vec<X509>,
}

impl PublicProbe {
    /// The key the probe is signed with and the config key it comes from: the account's own
    /// token when `secrets.accounts` lists it, else the primary Auth Token. That is the first
    /// key the edge tries for this account, so a probe that fails is not a key-choice artefact.
    pub fn signing_key<'a>(&self, keys: &'a KeyRing) -> Option<(&'a SigningKey, String)> {
        if let Some(key) = keys.accounts.get(&self.account) {
            return Some((key, format!("secrets.accounts.{}", self.account)));
        }
        keys.auth_tokens
            .first()
            .map(|key| (key, "secrets.auth_token".to_string()))
    }
}

/// Validates `probe:`. `keys` is the ring `secrets:` built; `None` when the keys were not read
/// (then no signing key is required).
pub(super) fn probe(
    raw: RawProbe,
    base: &Path,
    keys: Option<&KeyRing>,
    allowed_accounts: &HashSet<String>,
    warnings: &mut Vec<String>,
) -> Result<ProbeConfig> {
    if let Some(id) = &raw.identity {
        // It becomes `client:<identity>` in a notification body: keep it a plain token.
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        {
            bail!("probe.identity: {id:?} must be a non-empty identity of letters, digits, - _ . @ (e.g. notify-proxy-probe)");
        }
    }
    let public = match raw.public {
        Some(p) => Some(Arc::new(public(p, base, keys, allowed_accounts, warnings)?)),
        None => None,
    };
    Ok(ProbeConfig {
        identity: raw.identity,
        public,
    })
}

fn public(
    raw: RawPublicProbe,
    base: &Path,
    keys: Option<&KeyRing>,
    allowed_accounts: &HashSet<String>,
    warnings: &mut Vec<String>,
) -> Result<PublicProbe> {
    let url = raw.url.trim().to_string();
    check_url(&url, warnings)?;
    let interval = nonzero_duration("probe.public.interval", &raw.interval)?;
    let timeout = nonzero_duration("probe.public.timeout", &raw.timeout)?;
    if timeout >= interval {
        bail!(
            "probe.public.timeout: {} must be shorter than probe.public.interval ({}), so one \
             probe ends before the next starts",
            raw.timeout,
            raw.interval
        );
    }
    let account = account(raw.account, allowed_accounts)?;
    let connect = match &raw.connect {
        Some(c) => Some(socket_addr("probe.public.connect", c)?),
        None => None,
    };
    let extra_roots = match &raw.ca_file {
        Some(file) => roots(base, file)?,
        None => Vec::new(),
    };
    let probe = PublicProbe {
        url,
        interval,
        timeout,
        account,
        connect,
        extra_roots,
    };
    if keys.is_some_and(|k| probe.signing_key(k).is_none()) {
        bail!(
            "probe.public: no key to sign the probe for account {0}: set secrets.auth_token, or \
             secrets.accounts.{0} (the probe is signed as Twilio signs, with the account's Auth \
             Token)",
            probe.account
        );
    }
    Ok(probe)
}

fn check_url(url: &str, warnings: &mut Vec<String>) -> Result<()> {
    let example =
        "e.g. https://voice.example.com/twilio/client-notify, the URL configured in Twilio";
    let parsed = SignedUrl::parse(url).map_err(|e| anyhow!("probe.public.url: {e} ({example})"))?;
    let https = parsed.scheme.eq_ignore_ascii_case("https");
    if !https && !parsed.scheme.eq_ignore_ascii_case("http") {
        bail!("probe.public.url: {url:?} is not an http(s) URL ({example})");
    }
    if parsed.host.contains('_') {
        bail!("probe.public.url: host {:?} has an underscore: Twilio cannot call it; fix the host name", parsed.host);
    }
    if url.contains('#') {
        bail!("probe.public.url: {url:?} has a #fragment, which Twilio does not send ({example})");
    }
    if !https {
        warnings.push(format!(
            "probe.public.url {url} is plain http: Twilio requires https, so this probes the path \
             behind TLS termination only, and no certificate expiry is exported"
        ));
    }
    Ok(())
}

/// The account given, or the one a probe can use without being told: the only allowed account,
/// or [`DEFAULT_ACCOUNT`] when every account is allowed.
fn account(given: Option<String>, allowed: &HashSet<String>) -> Result<String> {
    let Some(sid) = given else {
        return match allowed.len() {
            0 => Ok(DEFAULT_ACCOUNT.to_string()),
            1 => Ok(allowed.iter().next().cloned().unwrap_or_default()),
            n => bail!(
                "probe.public.account: allowed_accounts lists {n} accounts; set \
                 probe.public.account to the one the probe should carry"
            ),
        };
    };
    check_account_sid("probe.public.account", &sid)?;
    if !allowed.is_empty() && !allowed.contains(&sid) {
        bail!(
            "probe.public.account: {sid} is not in allowed_accounts, so the proxy would refuse \
             the probe; use one of allowed_accounts"
        );
    }
    Ok(sid)
}

fn roots(base: &Path, file: &str) -> Result<Vec<X509>> {
    let (path, pem): (PathBuf, Vec<u8>) = read_bytes("probe.public.ca_file", base, file)?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| {
        anyhow!(
            "probe.public.ca_file: {} is not PEM certificates: {e}",
            path.display()
        )
    })?;
    if certs.is_empty() {
        bail!(
            "probe.public.ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}
