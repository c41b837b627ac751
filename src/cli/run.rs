//! `run`, `demo` and `demo-handler`: the commands that serve until the process is stopped.
//!
//! Owns loading the config for them, logging setup and the hand-over to [`crate::app`] (or,
//! for `demo-handler`, to [`crate::demo`]). No request logic and no Pingora wiring lives here.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, Result};

use crate::app::{build_server, DemoOptions, ProcessFlags};
use crate::config::{Config, LogFormat, LoggingConfig, ProcessEnv};

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

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Identities the sample handler has push bindings for.
    #[arg(long = "identity", value_name = "NAME", default_values_t = default_identities())]
    pub identities: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct DemoHandlerArgs {
    /// The address the sample handler listens on (IP:port).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Identities the sample handler has push bindings for.
    #[arg(long = "identity", value_name = "NAME", default_values_t = default_identities())]
    pub identities: Vec<String>,
}

fn default_identities() -> Vec<String> {
    vec!["alice".to_string(), "bob".to_string()]
}

pub fn run(args: RunArgs) -> Result<()> {
    let (config, text) = Config::load_with_text(&args.config, &ProcessEnv)?;
    serve(config, text, &args, None)
}

/// `run`, plus the sample handler on the first peer of the first route's upstream.
pub fn demo(args: DemoArgs) -> Result<()> {
    let (config, text) = Config::load_with_text(&args.run.config, &ProcessEnv)?;
    let address = config
        .routes
        .first()
        .and_then(|route| config.upstreams.get(route.upstream))
        .and_then(|upstream| upstream.peers.first())
        .ok_or_else(|| anyhow!("demo: the config has no route with an upstream peer"))?
        .to_string();
    let demo = DemoOptions {
        address,
        identities: args.identities,
    };
    serve(config, text, &args.run, Some(demo))
}

/// Only the sample handler, for setups where it runs apart from the proxy (its own container).
pub fn demo_handler(args: DemoHandlerArgs) -> Result<()> {
    let logging = LoggingConfig {
        level: "info".into(),
        format: LogFormat::Text,
        access_log: false,
    };
    crate::logging::init(&logging, false);
    tracing::info!(listen = %args.listen, identities = ?args.identities, "demo handler starting");
    crate::demo::standalone_server(args.listen, args.identities).run_forever()
}

fn serve(config: Config, text: String, args: &RunArgs, demo: Option<DemoOptions>) -> Result<()> {
    let dropped_lines = crate::logging::init(&config.logging, args.daemon);
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
    let server = build_server(config, text, &flags, demo, dropped_lines)?;
    server.run_forever()
}
