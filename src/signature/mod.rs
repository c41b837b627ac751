//! Twilio request signatures: computing and verifying `X-Twilio-Signature`.
//!
//! Owns the signing rules (docs/design.md §3): the signed string is the public URL followed, for form
//! bodies, by the sorted parameters; JSON bodies are covered through `bodySHA256` in the query.
//! Keys are pre-keyed HMAC states, cloned per request, so the secret is hashed once at start.
//!
//! Pure logic: no I/O, no config parsing, no HTTP types. Callers hand in byte slices and get a
//! verdict ([`SignatureError`] says why not). Secrets never leave a [`SigningKey`]: it has no
//! accessor for them and its `Debug` output is redacted.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

mod url;

pub use url::{public_url, split_host_port, RequestOrigin, SignedUrl};

/// Why a request's signature does not hold. Each maps to one rejection reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Twilio-Signature header is missing")]
    Missing,
    #[error("the request carries more than one X-Twilio-Signature header")]
    Duplicate,
    #[error("X-Twilio-Signature does not match the public URL and body for any configured key")]
    Mismatch,
    #[error("the URL has no bodySHA256 query parameter, so the JSON body is not covered by the signature")]
    BodyHashMissing,
    #[error("bodySHA256 in the URL does not match the SHA-256 of the body")]
    BodyHashMismatch,
    #[error("{0}")]
    UnknownKey(String),
    #[error("cannot rebuild the signed URL: no Host header and no public_url for this route")]
    NoPublicUrl,
    /// The host the URL was rebuilt from is not one the route allows (the value, for the log).
    #[error("the host {0:?} the signed URL was rebuilt from is not in the route's allowed_hosts")]
    HostNotAllowed(String),
}

/// The HMAC flavour a key signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Account or subaccount Auth Token (Twilio's default).
    HmacSha1,
    /// Webhooks SharedKey, announced by `X-Twilio-Webhooks-Signature-Settings`.
    HmacSha256,
}

/// A secret, already keyed into an HMAC state. Cloning the state per request costs ~0.3 µs
/// instead of re-hashing the key.
#[derive(Clone)]
pub enum SigningKey {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?}, <redacted>)", self.algorithm())
    }
}

impl SigningKey {
    pub fn new(algorithm: Algorithm, secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so these constructors cannot fail.
        match algorithm {
            Algorithm::HmacSha1 => {
                SigningKey::Sha1(Hmac::new_from_slice(secret).expect("HMAC takes any key length"))
            }
            Algorithm::HmacSha256 => {
                SigningKey::Sha256(Hmac::new_from_slice(secret).expect("HMAC takes any key length"))
            }
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Sha1(_) => Algorithm::HmacSha1,
            SigningKey::Sha256(_) => Algorithm::HmacSha256,
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            SigningKey::Sha1(k) => finish(k.clone(), parts),
            SigningKey::Sha256(k) => finish(k.clone(), parts),
        }
    }

    /// Constant-time check of `expected` against the MAC of the concatenated `parts`.
    fn matches(&self, parts: &[&[u8]], expected: &[u8]) -> bool {
        match self {
            SigningKey::Sha1(k) => matches_mac(k.clone(), parts, expected),
            SigningKey::Sha256(k) => matches_mac(k.clone(), parts, expected),
        }
    }

    /// The base64 signature Twilio would send for `url` (+ form `params`, if any).
    pub fn sign(&self, url: &SignedUrl<'_>, params: &[u8]) -> String {
        let parts = url.parts(url.port, params);
        BASE64.encode(self.mac(&parts))
    }
}

fn finish<M: Mac>(mut mac: M, parts: &[&[u8]]) -> Vec<u8> {
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn matches_mac<M: Mac>(mut mac: M, parts: &[&[u8]], expected: &[u8]) -> bool {
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(expected).is_ok()
}

/// The URL Twilio signed, split so the port can be varied without allocating.
///
/// `path` and `query` are the raw bytes as received (never re-encoded or re-sorted);
/// Verifies `signature_b64` against `url` (+ sorted form `params`) for any of `keys`, trying the
/// URL as given, without its port and with the default port added.
pub fn verify_signature(
    keys: &[&SigningKey],
    url: &SignedUrl<'_>,
    params: &[u8],
    signature_b64: &[u8],
) -> Result<(), SignatureError> {
    // SHA-256 MACs are 32 bytes; anything that decodes longer cannot match.
    let mut decoded = [0u8; 64];
    let Ok(len) = BASE64.decode_slice(signature_b64.trim_ascii(), &mut decoded) else {
        return Err(SignatureError::Mismatch);
    };
    let expected = &decoded[..len];
    // Each MAC comparison is constant-time. Stopping at the first match reveals only which URL
    // spelling or key slot matched, which a sender of a valid signature knows already; a forger
    // learns nothing, because a mismatch always tries every candidate.
    for key in keys {
        for port in url.port_candidates() {
            if key.matches(&url.parts(port, params), expected) {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

/// Lowercase hex SHA-256 of `body`, as Twilio writes it into `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(body);
    let mut out = [0u8; 64];
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = HEX[(byte >> 4) as usize];
        out[2 * i + 1] = HEX[(byte & 0x0f) as usize];
    }
    out
}

/// Finds the single `bodySHA256` value in a raw query (with or without its leading `?`) and
/// compares it with the body's hash. Like Twilio's SDKs, only the lowercase hex form matches.
pub fn verify_body_hash(query: &[u8], body: &[u8]) -> Result<(), SignatureError> {
    let query = query.strip_prefix(b"?").unwrap_or(query);
    let mut found: Option<std::borrow::Cow<'_, str>> = None;
    for (key, value) in form_urlencoded::parse(query) {
        if key == "bodySHA256" {
            if found.is_some() {
                // Two hashes: which one did Twilio sign? Neither is trustworthy.
                return Err(SignatureError::BodyHashMismatch);
            }
            found = Some(value);
        }
    }
    let expected = found.ok_or(SignatureError::BodyHashMissing)?;
    let actual = body_sha256_hex(body);
    if bool::from(actual.as_slice().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::BodyHashMismatch)
    }
}

/// The form-parameter part of the signed string: keys sorted bytewise, values of a repeated key
/// sorted, each pair appended as key + value (percent-decoded).
pub fn form_signing_suffix(body: &[u8]) -> Vec<u8> {
    let mut pairs: Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> =
        form_urlencoded::parse(body).collect();
    pairs.sort_unstable_by(|a, b| {
        a.0.as_bytes()
            .cmp(b.0.as_bytes())
            .then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()))
    });
    let mut out = Vec::with_capacity(body.len());
    for (k, v) in &pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The value of `X-Twilio-Webhooks-Signature-Settings`: `key=<id>,algorithm=HMAC_SHA256`.
#[derive(Debug, PartialEq, Eq)]
pub struct SignatureSettings<'a> {
    pub key_id: &'a str,
    pub algorithm: Algorithm,
}

impl<'a> SignatureSettings<'a> {
    pub fn parse(value: &'a [u8]) -> Result<Self, SignatureError> {
        let bad = |why: &str| {
            SignatureError::UnknownKey(format!("X-Twilio-Webhooks-Signature-Settings: {why}"))
        };
        let value = std::str::from_utf8(value).map_err(|_| bad("not UTF-8"))?;
        let mut key_id = None;
        let mut algorithm = None;
        for item in value.split(',') {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| bad("expected key=<id>,algorithm=<name>"))?;
            match k.trim() {
                "key" => key_id = Some(v.trim()),
                "algorithm" => {
                    algorithm = Some(match v.trim() {
                        "HMAC_SHA256" => Algorithm::HmacSha256,
                        "HMAC_SHA1" => Algorithm::HmacSha1,
                        other => return Err(bad(&format!("unsupported algorithm {other:?}"))),
                    })
                }
                _ => {}
            }
        }
        Ok(SignatureSettings {
            key_id: key_id
                .filter(|k| !k.is_empty())
                .ok_or_else(|| bad("no key id"))?,
            algorithm: algorithm.unwrap_or(Algorithm::HmacSha256),
        })
    }
}

/// Every secret the proxy may verify with, chosen per request by [`KeyRing::select`].
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    /// Primary and (during rotation) secondary account Auth Token.
    pub auth_tokens: Vec<SigningKey>,
    /// Subaccount Auth Tokens by Account SID.
    pub accounts: HashMap<String, SigningKey>,
    /// Webhooks SharedKeys by key id.
    pub shared_keys: HashMap<String, SigningKey>,
}

impl KeyRing {
    /// The keys that may have signed a request, given its settings header and the account SID
    /// its body names (if any).
    pub fn select(
        &self,
        settings_header: Option<&[u8]>,
        account_sid: Option<&str>,
    ) -> Result<Vec<&SigningKey>, SignatureError> {
        if let Some(raw) = settings_header {
            let settings = SignatureSettings::parse(raw)?;
            if settings.algorithm == Algorithm::HmacSha256 {
                let key = self.shared_keys.get(settings.key_id).ok_or_else(|| {
                    SignatureError::UnknownKey(format!(
                        "SharedKey {:?} is not configured (secrets.shared_keys)",
                        settings.key_id
                    ))
                })?;
                return Ok(vec![key]);
            }
        }
        if let Some(key) = account_sid.and_then(|sid| self.accounts.get(sid)) {
            return Ok(vec![key]);
        }
        if self.auth_tokens.is_empty() {
            return Err(SignatureError::UnknownKey(format!(
                "no Auth Token is configured for account {:?}",
                account_sid.unwrap_or("<none>")
            )));
        }
        Ok(self.auth_tokens.iter().collect())
    }
}

/// What Twilio would send for a JSON body posted to `public_url`: the URL with `bodySHA256`
/// appended and the signature. Used by `sign` and by tests.
pub fn sign_json(
    key: &SigningKey,
    public_url: &str,
    body: &[u8],
) -> Result<(String, String), String> {
    // The hash is appended to the query; after a fragment it would not be part of the URL.
    if public_url.contains('#') {
        return Err(format!(
            "{public_url:?}: a URL with a #fragment cannot carry bodySHA256"
        ));
    }
    let hash = body_sha256_hex(body);
    let sep = if public_url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{public_url}{sep}bodySHA256={}",
        std::str::from_utf8(&hash).expect("hex is ASCII")
    );
    let signature = key.sign(&SignedUrl::parse(&url)?, b"");
    Ok((url, signature))
}

#[cfg(test)]
mod tests;
