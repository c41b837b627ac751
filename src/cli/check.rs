//! `check`: load and validate a config (with its secrets and schemas), print warnings and a
//! summary, exit 0 or 1.
//!
//! Owns only what `check` prints; the validation itself is [`crate::config`]'s, and the
//! summary's wording is [`crate::config::summary`]'s. Never prints a secret.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::{summary, Config};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
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
    Ok(())
}
