//! `probe`: send a correctly signed synthetic notification through the real public path and
//! report each step (URL, connect and TLS, the proxy's verdict) with its latency; exit 0 or 1.
//!
//! Owns the command's arguments and output only: the probe itself (signing, DNS, TCP, TLS, the
//! exchange, the diagnosis) is [`crate::probe::client`]'s, the same steps the proxy's own
//! `probe.public` runs. The token is read from the environment variable `--secret-env`, as
//! `sign` does, and never printed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::probe::client::{self, Ending, Signer, Target};
use crate::probe::{Mode, Step};
use crate::signature::{Algorithm, SignedUrl, SigningKey};

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The URL configured in Twilio (e.g. https://voice.example.com/twilio/client-notify).
    #[arg(long)]
    pub url: String,
    /// Forward the probe to the handler (for probe.identity only) instead of the proxy
    /// answering it.
    #[arg(long)]
    pub through: bool,
    /// The identity in `twi_to` (must be the proxy's probe.identity with --through).
    #[arg(long, default_value = "notify-proxy-probe")]
    pub identity: String,
    /// The Account SID in the body (one of allowed_accounts, if the proxy has that list).
    #[arg(long, default_value = "AC00000000000000000000000000000000")]
    pub account: String,
    /// The environment variable holding the Auth Token.
    #[arg(long, value_name = "VAR", default_value = "TWILIO_AUTH_TOKEN")]
    pub secret_env: String,
    /// Connect to this address instead of resolving the URL's host (like curl --resolve).
    #[arg(long, value_name = "IP:PORT")]
    pub connect: Option<SocketAddr>,
    /// Also trust the certificates of this PEM file (an internal CA, a test certificate).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// The whole exchange must end within this.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// One reported step. `warn` marks a URL Twilio would refuse that may still be right to probe
/// (plain http to an internal Service): reported, but not a failure.
struct Line {
    ok: bool,
    warn: bool,
    name: &'static str,
    detail: String,
}

pub fn run(args: &ProbeArgs) -> Result<()> {
    let lines = probe(args)?;
    let mut ok = true;
    for s in &lines {
        let verdict = match (s.ok, s.warn) {
            (true, _) => "PASS",
            (false, true) => "WARN",
            (false, false) => "FAIL",
        };
        println!("{verdict} {}: {}", s.name, s.detail);
        ok &= s.ok || s.warn;
    }
    if !ok {
        bail!("probe of {} failed", args.url);
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn probe(args: &ProbeArgs) -> Result<Vec<Line>> {
    let token = std::env::var(&args.secret_env).map_err(|_| {
        anyhow!(
            "the Auth Token is read from ${}, which is not set",
            args.secret_env
        )
    })?;
    if token.is_empty() {
        bail!("${} is empty", args.secret_env);
    }
    let roots = match &args.ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("--ca-file: cannot read {}", path.display()))?;
            openssl::x509::X509::stack_from_pem(&pem)
                .map_err(|e| anyhow!("--ca-file {}: not PEM certificates: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let url = SignedUrl::parse(&args.url).map_err(|e| anyhow!("--url: {e}"))?;
    let mut lines = vec![Line {
        ok: url.scheme.eq_ignore_ascii_case("https") && !url.host.contains('_'),
        warn: !url.host.contains('_'),
        name: "url",
        detail: if url.host.contains('_') {
            format!(
                "host {:?} has an underscore: Twilio cannot call it",
                url.host
            )
        } else if !url.scheme.eq_ignore_ascii_case("https") {
            "not https: Twilio requires https for client notifications".into()
        } else {
            args.url.clone()
        },
    }];
    let key = SigningKey::new(Algorithm::HmacSha1, token.trim_end().as_bytes());
    let token_name = format!("${}", args.secret_env);
    let signer = Signer {
        key: &key,
        token: &token_name,
        mode: if args.through {
            Mode::Through
        } else {
            Mode::Answer
        },
        account: &args.account,
        identity: &args.identity,
    };
    let request = client::request(&args.url, &signer).map_err(|e| anyhow!("--url: {e}"))?;
    let target = Target {
        url: &args.url,
        connect: args.connect,
        extra_roots: &roots,
        timeout: args.timeout,
    };
    let report = client::run(&request, &signer, &target);

    let before_answer = [Step::Dns, Step::Connect, Step::Tls];
    match &report.ending {
        Ending::Failed { step, detail, .. } if before_answer.contains(step) => {
            lines.push(Line {
                ok: false,
                warn: false,
                name: "connect",
                detail: detail.clone(),
            });
            return Ok(lines);
        }
        _ => {}
    }
    let reached: Duration = before_answer.iter().map(|s| report.duration(*s)).sum();
    let mut steps = format!(
        "dns {}, connect {}",
        ms(report.duration(Step::Dns)),
        ms(report.duration(Step::Connect))
    );
    if report.tls {
        steps.push_str(&format!(", tls {}", ms(report.duration(Step::Tls))));
    }
    if let Some(not_after) = report
        .certificate_not_after
        .and_then(|s| u64::try_from(s).ok())
    {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(not_after);
        steps.push_str(&format!(
            "; certificate valid until {}",
            humantime::format_rfc3339_seconds(at)
        ));
    }
    lines.push(Line {
        ok: true,
        warn: false,
        name: "connect",
        detail: format!(
            "{}{} ({}: {steps})",
            report.addr.map_or(String::new(), |a| a.to_string()),
            if report.tls { " with TLS" } else { "" },
            ms(reached)
        ),
    });
    let latency = ms(report.duration(Step::Answer));
    lines.push(match &report.ending {
        Ending::Answered { status, verdict } => Line {
            ok: verdict.passed,
            warn: false,
            name: verdict.name,
            detail: if verdict.passed {
                format!("{} ({latency})", verdict.diagnosis)
            } else {
                format!("{status} {} ({latency})", verdict.diagnosis)
            },
        },
        Ending::Failed { detail, .. } => Line {
            ok: false,
            warn: false,
            name: "answer",
            detail: format!("{detail} ({latency})"),
        },
    });
    Ok(lines)
}
