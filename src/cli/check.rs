//! `check`: load and validate a config (with its secrets and schemas), print warnings and a
//! summary, exit 0 or 1.
//!
//! Owns only what `check` prints, and `--url`: the lint of the URL a user is about to give
//! Twilio against the config (https, no underscore in the host, a path a route serves, the
//! same URL as that route's `public_url`). The validation itself is [`crate::config`]'s, and
//! the summary's wording is [`crate::config::summary`]'s. Never prints a secret.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::config::{summary, Config};
use crate::signature::SignedUrl;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Also lint the notification URL you are about to configure in Twilio.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// What is wrong with giving Twilio `url` for this config (empty: nothing).
pub fn lint_url(config: &Config, url: &str) -> Vec<String> {
    let parsed = match SignedUrl::parse(url) {
        Ok(u) => u,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let https = parsed.scheme.eq_ignore_ascii_case("https");
    if !https {
        problems.push(format!(
            "{url}: not https; Twilio requires https for client notifications"
        ));
    }
    if parsed.host.contains('_') {
        problems.push(format!(
            "host {:?} contains an underscore: Twilio rejects it as an invalid hostname (13807)",
            parsed.host
        ));
    }
    if !parsed.query.is_empty() || url.contains('#') {
        problems.push(format!(
            "{url}: remove the query or fragment (Twilio appends bodySHA256 and signs what it sends)"
        ));
    }
    let path = String::from_utf8_lossy(parsed.path);
    let path = if path.is_empty() { "/".into() } else { path };
    let Some((i, route)) = config
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| r.path == path)
    else {
        let served: Vec<&str> = config.routes.iter().map(|r| r.path.as_str()).collect();
        problems.push(format!(
            "no route serves the path {path} (routes serve {served:?}): Twilio would get 404"
        ));
        return problems;
    };
    if let Some(public) = &route.public_url {
        let default_port = if https { "443" } else { "80" };
        let port = |p: Option<&str>| p.filter(|p| *p != default_port).map(str::to_string);
        let same = public.scheme.eq_ignore_ascii_case(parsed.scheme)
            && public.host.eq_ignore_ascii_case(parsed.host)
            && port(public.port.as_deref()) == port(parsed.port)
            && public.path == path;
        if !same {
            problems.push(format!(
                "routes[{i}].public_url is {}, not {url}: signatures for this URL would not verify                  (configure one of them to match the other)",
                public.as_signed_url().to_url_string()
            ));
        }
    }
    problems
}

pub fn run(args: &CheckArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    for w in &config.warnings {
        println!("warning: {w}");
    }
    println!("ok: {}", config.source.display());
    for (k, v) in summary(&config) {
        println!("  {k}: {v}");
    }
    if let Some(url) = &args.url {
        let problems = lint_url(&config, url);
        for p in &problems {
            println!("url problem: {p}");
        }
        if !problems.is_empty() {
            bail!(
                "--url {url}: {} problem(s); Twilio would log 13807",
                problems.len()
            );
        }
        println!("url ok: {url} is served by this config");
    }
    Ok(())
}
