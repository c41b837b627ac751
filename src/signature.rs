//! Twilio request signatures: computing and verifying `X-Twilio-Signature`.
//!
//! Owns the signing rules (DESIGN §3): the signed string is the public URL followed, for form
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
/// `query` includes its leading `?` when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedUrl<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: Option<&'a str>,
    pub path: &'a [u8],
    pub query: &'a [u8],
}

impl<'a> SignedUrl<'a> {
    /// Splits an absolute `http(s)://host[:port][/path][?query]` URL.
    pub fn parse(url: &'a str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            format!("{url:?} is not an absolute URL (expected https://host/path)")
        })?;
        if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
            return Err(format!("{url:?}: scheme must be http or https"));
        }
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        let path_and_query = path_and_query.split('#').next().unwrap_or("");
        let (host, port) = split_host_port(authority)?;
        let (path, query) = match path_and_query.find('?') {
            Some(i) => path_and_query.split_at(i),
            None => (path_and_query, ""),
        };
        Ok(SignedUrl {
            scheme,
            host,
            port,
            path: path.as_bytes(),
            query: query.as_bytes(),
        })
    }

    fn default_port(&self) -> &'static str {
        if self.scheme.eq_ignore_ascii_case("https") {
            "443"
        } else {
            "80"
        }
    }

    /// The ports to try: as given first, then the other spelling Twilio may have used
    /// (port removed when given, scheme default added when not).
    fn port_candidates(&self) -> [Option<&'a str>; 2] {
        match self.port {
            Some(p) => [Some(p), None],
            None => [None, Some(self.default_port())],
        }
    }

    /// The signed string as slices, so no URL is assembled per request.
    fn parts<'s>(&'s self, port: Option<&'s str>, params: &'s [u8]) -> [&'s [u8]; 8] {
        let (colon, port): (&[u8], &[u8]) = match port {
            Some(p) => (b":", p.as_bytes()),
            None => (b"", b""),
        };
        [
            self.scheme.as_bytes(),
            b"://",
            self.host.as_bytes(),
            colon,
            port,
            self.path,
            self.query,
            params,
        ]
    }

    /// The URL as one string (for `sign` output and messages).
    pub fn to_url_string(&self) -> String {
        let mut s = format!("{}://{}", self.scheme, self.host);
        if let Some(port) = self.port {
            s.push(':');
            s.push_str(port);
        }
        s.push_str(&String::from_utf8_lossy(self.path));
        s.push_str(&String::from_utf8_lossy(self.query));
        s
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if authority.is_empty() {
        return Err("URL has no host".into());
    }
    // A bracketed IPv6 literal keeps its colons: split only after the closing bracket.
    let search_from = authority.find(']').map_or(0, |i| i + 1);
    match authority[search_from..].rfind(':') {
        Some(i) => {
            let (host, port) = authority.split_at(search_from + i);
            let port = &port[1..];
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
                return Err(format!("URL port {port:?} is not a number"));
            }
            Ok((host, Some(port)))
        }
        None => Ok((authority, None)),
    }
}

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
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Vectors {
        vectors: Vec<Vector>,
    }

    #[derive(Deserialize)]
    struct Vector {
        name: String,
        kind: String,
        secret: String,
        url: String,
        #[serde(default)]
        params: Vec<(String, String)>,
        #[serde(default)]
        body: String,
        headers: HashMap<String, String>,
        signature: String,
        valid: bool,
    }

    fn load_vectors() -> Vec<Vector> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/signature-vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("vectors file");
        serde_json::from_str::<Vectors>(&text)
            .expect("vectors parse")
            .vectors
    }

    /// Runs one vector the way the proxy does: key selection, URL signature, body hash.
    fn check_vector(v: &Vector) -> Result<(), SignatureError> {
        let settings = v.headers.get("X-Twilio-Webhooks-Signature-Settings");
        let mut ring = KeyRing::default();
        match settings {
            Some(s) => {
                let parsed = SignatureSettings::parse(s.as_bytes()).unwrap();
                ring.shared_keys.insert(
                    parsed.key_id.to_string(),
                    SigningKey::new(Algorithm::HmacSha256, v.secret.as_bytes()),
                );
            }
            None => ring
                .auth_tokens
                .push(SigningKey::new(Algorithm::HmacSha1, v.secret.as_bytes())),
        }
        let keys = ring.select(settings.map(|s| s.as_bytes()), None)?;
        let url = SignedUrl::parse(&v.url).unwrap();
        let params = if v.kind == "form" {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(v.params.iter())
                .finish();
            form_signing_suffix(body.as_bytes())
        } else {
            Vec::new()
        };
        verify_signature(&keys, &url, &params, v.signature.as_bytes())?;
        if v.kind == "json" {
            verify_body_hash(url.query, v.body.as_bytes())?;
        }
        Ok(())
    }

    #[test]
    fn all_twilio_sdk_vectors() {
        let vectors = load_vectors();
        assert_eq!(vectors.len(), 20, "the vectors file holds 20 cases");
        for v in &vectors {
            let got = check_vector(v);
            assert_eq!(got.is_ok(), v.valid, "vector {}: got {got:?}", v.name);
        }
    }

    #[test]
    fn invalid_vectors_fail_for_the_documented_reason() {
        let vectors = load_vectors();
        let reason = |name: &str| check_vector(vectors.iter().find(|v| v.name == name).unwrap());
        assert_eq!(
            reason("json_body_tampered"),
            Err(SignatureError::BodyHashMismatch)
        );
        assert_eq!(
            reason("json_missing_body_hash"),
            Err(SignatureError::BodyHashMissing)
        );
        assert_eq!(
            reason("json_uppercase_hex_hash"),
            Err(SignatureError::BodyHashMismatch)
        );
        assert_eq!(reason("form_tampered_param"), Err(SignatureError::Mismatch));
        assert_eq!(
            reason("notification_other_token"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn sign_reproduces_the_sdk_signature() {
        for v in load_vectors()
            .iter()
            .filter(|v| v.valid && v.kind == "json")
        {
            let algorithm = if v.headers.is_empty() {
                Algorithm::HmacSha1
            } else {
                Algorithm::HmacSha256
            };
            let key = SigningKey::new(algorithm, v.secret.as_bytes());
            let url = SignedUrl::parse(&v.url).unwrap();
            let ours = key.sign(&url, b"");
            // Vectors signed with an added port verify but do not sign identically; the rest must.
            if !v.name.contains("443") {
                assert_eq!(ours, v.signature, "vector {}", v.name);
            }
        }
    }

    #[test]
    fn sign_json_appends_body_hash_and_verifies() {
        let key = SigningKey::new(Algorithm::HmacSha1, b"12345");
        let body = br#"{"property": "value", "boolean": true}"#;
        let (url, sig) =
            sign_json(&key, "https://mycompany.com/myapp.php?foo=1&bar=2", body).unwrap();
        assert_eq!(
            url,
            "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        assert_eq!(sig, "a9nBmqA0ju/hNViExpshrM61xv4=");
    }

    /// Found by the `signature` fuzz target: the hash went after the fragment, so the signed
    /// URL carried no bodySHA256 and never verified.
    #[test]
    fn fuzz_sign_json_fragment_hides_body_hash() {
        let key = SigningKey::new(Algorithm::HmacSha1, b"k");
        let err = sign_json(
            &key,
            "https://voice.example.com/#wilio/client-notify",
            b"{}",
        );
        assert!(err.unwrap_err().contains("fragment"));
        let err = sign_json(&key, "https://voice.example.com/n#x?y=1", b"{}");
        assert!(err.is_err());
    }

    #[test]
    fn port_variants_are_accepted_both_ways() {
        let key = SigningKey::new(Algorithm::HmacSha1, b"secret");
        let with_port = SignedUrl::parse("https://h.example/p?x=1").unwrap();
        let signed_with_443 = SignedUrl {
            port: Some("443"),
            ..with_port
        };
        let sig = key.sign(&signed_with_443, b"");
        assert!(verify_signature(&[&key], &with_port, b"", sig.as_bytes()).is_ok());
        // A URL received with an explicit non-default port verifies against the portless signature.
        let custom = SignedUrl::parse("https://h.example:8443/p?x=1").unwrap();
        let portless_sig = key.sign(&with_port, b"");
        assert!(verify_signature(&[&key], &custom, b"", portless_sig.as_bytes()).is_ok());
        // But a different host never does.
        let other = SignedUrl::parse("https://evil.example/p?x=1").unwrap();
        assert_eq!(
            verify_signature(&[&key], &other, b"", sig.as_bytes()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rotation_accepts_primary_and_secondary() {
        let ring = KeyRing {
            auth_tokens: vec![
                SigningKey::new(Algorithm::HmacSha1, b"new-token"),
                SigningKey::new(Algorithm::HmacSha1, b"old-token"),
            ],
            ..Default::default()
        };
        let url = SignedUrl::parse("https://h.example/n?bodySHA256=ab").unwrap();
        for token in [&b"new-token"[..], b"old-token"] {
            let sig = SigningKey::new(Algorithm::HmacSha1, token).sign(&url, b"");
            let keys = ring.select(None, None).unwrap();
            assert!(verify_signature(&keys, &url, b"", sig.as_bytes()).is_ok());
        }
        let stranger = SigningKey::new(Algorithm::HmacSha1, b"third").sign(&url, b"");
        let keys = ring.select(None, None).unwrap();
        assert!(verify_signature(&keys, &url, b"", stranger.as_bytes()).is_err());
    }

    #[test]
    fn subaccount_token_is_chosen_by_account_sid() {
        let sub = "AC00000000000000000000000000000001";
        let mut ring = KeyRing {
            auth_tokens: vec![SigningKey::new(Algorithm::HmacSha1, b"main")],
            ..Default::default()
        };
        ring.accounts.insert(
            sub.into(),
            SigningKey::new(Algorithm::HmacSha1, b"sub-token"),
        );
        let url = SignedUrl::parse("https://h.example/n").unwrap();
        let sub_sig = SigningKey::new(Algorithm::HmacSha1, b"sub-token").sign(&url, b"");
        let main_sig = SigningKey::new(Algorithm::HmacSha1, b"main").sign(&url, b"");
        let sub_keys = ring.select(None, Some(sub)).unwrap();
        assert!(verify_signature(&sub_keys, &url, b"", sub_sig.as_bytes()).is_ok());
        // The subaccount's requests must be signed with its own token, not the main one.
        assert!(verify_signature(&sub_keys, &url, b"", main_sig.as_bytes()).is_err());
        let main_keys = ring
            .select(None, Some("AC0000000000000000000000000000000f"))
            .unwrap();
        assert!(verify_signature(&main_keys, &url, b"", main_sig.as_bytes()).is_ok());
    }

    #[test]
    fn shared_key_selection() {
        let mut ring = KeyRing::default();
        ring.shared_keys
            .insert("k1".into(), SigningKey::new(Algorithm::HmacSha256, b"s"));
        assert_eq!(
            ring.select(Some(b"key=k1,algorithm=HMAC_SHA256"), None)
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            ring.select(Some(b"key=k2,algorithm=HMAC_SHA256"), None),
            Err(SignatureError::UnknownKey(_))
        ));
        assert!(matches!(
            ring.select(Some(b"key=k1,algorithm=MD5"), None),
            Err(SignatureError::UnknownKey(_))
        ));
        assert!(matches!(
            ring.select(Some(b"garbage"), None),
            Err(SignatureError::UnknownKey(_))
        ));
    }

    #[test]
    fn malformed_signatures_are_mismatches_not_panics() {
        let key = SigningKey::new(Algorithm::HmacSha1, b"k");
        let url = SignedUrl::parse("https://h.example/n").unwrap();
        for sig in [&b""[..], b"!!!", b"AAAA", &[0xff; 200][..]] {
            assert_eq!(
                verify_signature(&[&key], &url, b"", sig),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn duplicate_body_hash_is_rejected() {
        let body = b"{}";
        let hex = body_sha256_hex(body);
        let hex = std::str::from_utf8(&hex).unwrap();
        let q = format!("?bodySHA256={hex}&bodySHA256={hex}");
        assert_eq!(
            verify_body_hash(q.as_bytes(), body),
            Err(SignatureError::BodyHashMismatch)
        );
    }

    #[test]
    fn url_parsing() {
        let u = SignedUrl::parse("https://[::1]:8443/a/b?c=d").unwrap();
        assert_eq!((u.host, u.port), ("[::1]", Some("8443")));
        assert_eq!((u.path, u.query), (&b"/a/b"[..], &b"?c=d"[..]));
        assert!(SignedUrl::parse("ftp://x/").is_err());
        assert!(SignedUrl::parse("https://x:abc/").is_err());
        assert!(SignedUrl::parse("no-scheme").is_err());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What `sign` produces, `verify_signature` accepts; a different secret never matches.
        #[test]
        fn sign_then_verify_round_trips(
            host in "[a-z]{1,12}(\\.[a-z]{2,6}){1,2}",
            port in proptest::option::of(1u16..),
            path in "(/[A-Za-z0-9._~%-]{0,10}){0,4}",
            query in proptest::option::of("[A-Za-z0-9=&%._-]{0,40}"),
            body in proptest::collection::vec(any::<u8>(), 0..200),
            secret in proptest::collection::vec(any::<u8>(), 1..40),
        ) {
            let mut url = format!("https://{host}");
            if let Some(port) = port {
                url.push_str(&format!(":{port}"));
            }
            url.push_str(&path);
            if let Some(q) = &query {
                url.push('?');
                url.push_str(q);
            }
            let key = SigningKey::new(Algorithm::HmacSha1, &secret);
            let (signed_url, signature) = sign_json(&key, &url, &body).unwrap();
            let parsed = SignedUrl::parse(&signed_url).unwrap();
            prop_assert!(verify_signature(&[&key], &parsed, b"", signature.as_bytes()).is_ok());
            prop_assert!(verify_body_hash(parsed.query, &body).is_ok());
            // (Appending a zero byte would not do: HMAC pads short keys with zeros.)
            let mut other = secret.clone();
            other[0] ^= 1;
            let wrong = SigningKey::new(Algorithm::HmacSha1, &other);
            prop_assert!(verify_signature(&[&wrong], &parsed, b"", signature.as_bytes()).is_err());
        }

        /// Arbitrary header values and URLs are answered, never panicked on.
        #[test]
        fn hostile_inputs_never_panic(
            url in ".{0,80}",
            signature in proptest::collection::vec(any::<u8>(), 0..120),
            settings in proptest::collection::vec(any::<u8>(), 0..80),
            form in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let key = SigningKey::new(Algorithm::HmacSha1, b"k");
            if let Ok(parsed) = SignedUrl::parse(&url) {
                let _ = verify_signature(&[&key], &parsed, &form_signing_suffix(&form), &signature);
                let _ = verify_body_hash(parsed.query, &form);
            }
            let _ = SignatureSettings::parse(&settings);
        }
    }
}
