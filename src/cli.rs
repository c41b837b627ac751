//! Command line: `run`, `demo`, `check`, `sign`.
//!
//! Owns argument parsing, logging setup and exit codes (0 ok, 1 invalid input or config, 2 usage,
//! which clap reports itself). Each command loads what it needs and delegates; none of them holds
//! request logic.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::app::{build_server, DemoOptions, ProcessFlags};
use crate::config::Config;
use crate::signature::{form_signing_suffix, sign_json, Algorithm, SignedUrl, SigningKey};

#[derive(Debug, Parser)]
#[command(
    name = "twilio-notify-proxy",
    version,
    about = "Verifies Twilio client call notifications at the edge, then forwards them to your handler"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The YAML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Run in the background (Pingora daemon mode; set server.pid_file).
    #[arg(long, short = 'd')]
    pub daemon: bool,
    /// Take over the listening sockets of a running instance (Pingora graceful upgrade).
    #[arg(long, short = 'u')]
    pub upgrade: bool,
    /// Build everything, then exit without serving (Pingora's test mode).
    #[arg(long, short = 't')]
    pub test: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: verify and forward notifications as the config says.
    Run(RunArgs),
    /// Serve, with a sample notification handler on the first peer of the first route's upstream
    /// (200 for known identities, 404 otherwise). For trying the proxy on a fresh machine.
    Demo {
        #[command(flatten)]
        run: RunArgs,
        /// Identities the sample handler has push bindings for.
        #[arg(long = "identity", value_name = "NAME", default_values_t = ["alice".to_string(), "bob".to_string()])]
        identities: Vec<String>,
    },
    /// Load and validate the configuration (and the secrets and schema it names), then exit 0/1.
    Check {
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
    },
    /// Inspect and manage the durable buffer of a stopped proxy (the store is locked while the
    /// proxy runs). Secrets are not needed.
    Buffer {
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        #[command(subcommand)]
        command: BufferCommand,
    },
    /// Compute what Twilio would send: the URL (with bodySHA256 for JSON) and X-Twilio-Signature.
    /// The secret is read from the environment variable named by --secret-env.
    Sign {
        /// The public URL Twilio posts to.
        #[arg(long)]
        url: String,
        /// A JSON body file (client notification).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "params",
            required_unless_present = "params"
        )]
        json: Option<PathBuf>,
        /// A form parameter (other Twilio webhooks); repeat for several.
        #[arg(long = "param", value_name = "KEY=VALUE", id = "params")]
        params: Vec<String>,
        #[arg(long, value_enum, default_value_t = SignAlgorithm::HmacSha1)]
        algorithm: SignAlgorithm,
        /// SharedKey id, printed as X-Twilio-Webhooks-Signature-Settings (with hmac-sha256).
        #[arg(long, value_name = "ID")]
        key_id: Option<String>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
        /// The environment variable holding the secret.
        #[arg(long, value_name = "VAR", default_value = "TWILIO_AUTH_TOKEN")]
        secret_env: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BufferCommand {
    /// List buffered notifications (pending, or the dead-letter table with --dead).
    List {
        #[arg(long)]
        dead: bool,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        format: OutputFormat,
    },
    /// Show one message: its metadata and the exact request that will be (re)delivered.
    Show { id: u64 },
    /// Deliver now, once: one message, every pending one (--all) or every dead-letter one
    /// (--dead). Delivered (or finally answered) messages are removed; failures stay.
    Replay {
        #[arg(required_unless_present_any = ["all", "dead"], conflicts_with_all = ["all", "dead"])]
        id: Option<u64>,
        #[arg(long, conflicts_with = "dead")]
        all: bool,
        #[arg(long)]
        dead: bool,
    },
    /// Delete one message, pending or dead-letter (e.g. one whose record cannot be read).
    Remove { id: u64 },
    /// Delete dead-letter messages (all, or those received longer ago than --older-than).
    Purge {
        /// Required, so a purge of pending messages can never happen by accident.
        #[arg(long, required = true)]
        dead: bool,
        /// e.g. 1h, 7d.
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignAlgorithm {
    HmacSha1,
    HmacSha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_command(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => serve(args, None),
        Command::Demo { run, identities } => {
            let config = Config::load(&run.config)?;
            let route = config.routes.first().ok_or_else(|| anyhow!("no routes"))?;
            let address = config.upstreams[route.upstream].peers[0].to_string();
            serve(
                run,
                Some(DemoOptions {
                    address,
                    identities,
                }),
            )
        }
        Command::Check { config } => {
            let config = Config::load(&config)?;
            for w in &config.warnings {
                println!("warning: {w}");
            }
            println!("ok: {}", config.source.display());
            for (k, v) in crate::config::summary(&config) {
                println!("  {k}: {v}");
            }
            Ok(())
        }
        Command::Buffer { config, command } => crate::buffer_cli::run(&config, command),
        Command::Sign {
            url,
            json,
            params,
            algorithm,
            key_id,
            format,
            secret_env,
        } => {
            let out = sign(
                &url,
                json.as_deref(),
                &params,
                algorithm,
                key_id.as_deref(),
                &secret_env,
            )?;
            match format {
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
    }
}

fn serve(args: RunArgs, demo: Option<DemoOptions>) -> Result<()> {
    let config = Config::load(&args.config)?;
    crate::logging::init(&config.logging, args.daemon);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let flags = ProcessFlags {
        daemon: args.daemon,
        upgrade: args.upgrade,
        test: args.test,
    };
    tracing::info!(
        config = %config.source.display(),
        listeners = ?config.listeners.iter().map(|l| l.address).collect::<Vec<_>>(),
        admin = %config.admin_address,
        "starting"
    );
    let server = build_server(config, &flags, demo)?;
    server.run_forever()
}

/// What `sign` prints, as JSON (the text format shows the same fields).
pub fn sign(
    url: &str,
    json: Option<&std::path::Path>,
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
