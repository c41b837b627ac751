//! `sign`: print what Twilio would send for a body and a URL (the URL with `bodySHA256` for
//! JSON, `X-Twilio-Signature`, and the SharedKey settings header for HMAC-SHA256).
//!
//! Owns reading the secret from the environment variable the operator names and the output
//! formats. The signing itself is [`crate::signature`]'s. The secret is never printed.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;

use super::output::OutputFormat;
use crate::signature::{form_signing_suffix, sign_json, Algorithm, SignedUrl, SigningKey};

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The public URL Twilio posts to.
    #[arg(long)]
    pub url: String,
    /// A JSON body file (client notification).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "params",
        required_unless_present = "params"
    )]
    pub json: Option<PathBuf>,
    /// A form parameter (other Twilio webhooks); repeat for several.
    #[arg(long = "param", value_name = "KEY=VALUE", id = "params")]
    pub params: Vec<String>,
    #[arg(long, value_enum, default_value_t = SignAlgorithm::HmacSha1)]
    pub algorithm: SignAlgorithm,
    /// SharedKey id, printed as X-Twilio-Webhooks-Signature-Settings (with hmac-sha256).
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// The environment variable holding the secret.
    #[arg(long, value_name = "VAR", default_value = "TWILIO_AUTH_TOKEN")]
    pub secret_env: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignAlgorithm {
    HmacSha1,
    HmacSha256,
}

pub fn run(args: SignArgs) -> Result<()> {
    let out = sign(
        &args.url,
        args.json.as_deref(),
        &args.params,
        args.algorithm,
        args.key_id.as_deref(),
        &args.secret_env,
    )?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string(&out)?),
        OutputFormat::Text => {
            println!("url: {}", out["url"].as_str().unwrap_or_default());
            println!(
                "X-Twilio-Signature: {}",
                out["signature"].as_str().unwrap_or_default()
            );
            if let Some(s) = out.get("signature_settings").and_then(|v| v.as_str()) {
                println!("X-Twilio-Webhooks-Signature-Settings: {s}");
            }
            if let Some(b) = out.get("form_body").and_then(|v| v.as_str()) {
                println!("body: {b}");
            }
        }
    }
    Ok(())
}

/// What `sign` prints, as JSON (the text format shows the same fields).
pub fn sign(
    url: &str,
    json: Option<&Path>,
    params: &[String],
    algorithm: SignAlgorithm,
    key_id: Option<&str>,
    secret_env: &str,
) -> Result<serde_json::Value> {
    let secret = std::env::var(secret_env)
        .map_err(|_| anyhow!("the secret is read from ${secret_env}, which is not set"))?;
    if secret.is_empty() {
        bail!("${secret_env} is empty");
    }
    let algorithm = match algorithm {
        SignAlgorithm::HmacSha1 => Algorithm::HmacSha1,
        SignAlgorithm::HmacSha256 => Algorithm::HmacSha256,
    };
    let key = SigningKey::new(algorithm, secret.as_bytes());
    let mut out = serde_json::Map::new();
    match json {
        Some(path) => {
            let body = std::fs::read(path)
                .with_context(|| format!("--json: cannot read {}", path.display()))?;
            let (signed_url, signature) =
                sign_json(&key, url, &body).map_err(|e| anyhow!("--url: {e}"))?;
            out.insert("url".into(), signed_url.into());
            out.insert("signature".into(), signature.into());
        }
        None => {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for p in params {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--param {p:?}: expected KEY=VALUE"))?;
                form.append_pair(k, v);
            }
            let body = form.finish();
            let parsed = SignedUrl::parse(url).map_err(|e| anyhow!("--url: {e}"))?;
            let signature = key.sign(&parsed, &form_signing_suffix(body.as_bytes()));
            out.insert("url".into(), url.into());
            out.insert("signature".into(), signature.into());
            out.insert("form_body".into(), body.into());
        }
    }
    if algorithm == Algorithm::HmacSha256 {
        let id = key_id
            .ok_or_else(|| anyhow!("--algorithm hmac-sha256 needs --key-id (the SharedKey id)"))?;
        out.insert(
            "signature_settings".into(),
            format!("key={id},algorithm=HMAC_SHA256").into(),
        );
    }
    Ok(serde_json::Value::Object(out))
}
