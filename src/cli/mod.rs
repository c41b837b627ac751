//! Command line: `run`, `demo`, `demo-handler`, `check`, `sign`, `probe`, `buffer ...`,
//! `healthcheck`.
//!
//! This file owns the clap definition of the command set, the dispatch and the exit codes (0
//! ok, 1 invalid input, config or unhealthy, 2 usage, which clap reports itself). Each command
//! family lives in its own file with its arguments: `run` (`run`, `demo`, `demo-handler`),
//! `check`, `sign`, `probe`, `buffer`, `healthcheck`; `output` holds the shared `--format`. Those files
//! never import this one, so there is no cycle. None of them holds request logic.

mod buffer;
mod check;
mod healthcheck;
mod output;
mod probe;
mod run;
mod sign;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use buffer::{BufferArgs, BufferCommand};
pub use check::CheckArgs;
pub use healthcheck::HealthcheckArgs;
pub use output::OutputFormat;
pub use probe::ProbeArgs;
pub use run::{DemoArgs, DemoHandlerArgs, RunArgs};
pub use sign::{sign, SignAlgorithm, SignArgs};

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: verify and forward notifications as the config says.
    Run(RunArgs),
    /// Serve, with a sample notification handler on the first peer of the first route's upstream
    /// (200 for known identities, 404 otherwise). For trying the proxy on a fresh machine.
    Demo(DemoArgs),
    /// Run only the sample notification handler on --listen until SIGTERM/SIGINT (for setups
    /// where the proxy and the handler run apart, e.g. two containers).
    DemoHandler(DemoHandlerArgs),
    /// Load and validate the configuration (and the secrets and schema it names), then exit 0/1.
    Check(CheckArgs),
    /// Inspect and manage the durable buffer of a stopped proxy (the store is locked while the
    /// proxy runs). Secrets are not needed.
    Buffer(BufferArgs),
    /// Compute what Twilio would send: the URL (with bodySHA256 for JSON) and X-Twilio-Signature.
    /// The secret is read from the environment variable named by --secret-env.
    Sign(SignArgs),
    /// Send a correctly signed synthetic notification to --url through the real public path
    /// (DNS, TLS, load balancer, proxy); report each step and exit 0 or 1. The proxy answers it
    /// itself (outcome probe); --through forwards it to the handler for probe.identity.
    Probe(ProbeArgs),
    /// GET --url (default: the admin listener's /healthz) and exit 0 on a 200, else 1 saying
    /// why. For container HEALTHCHECKs on images without curl.
    Healthcheck(HealthcheckArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_command(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Lines logged before the failure come first, then the reason.
            crate::logging::flush(std::time::Duration::from_secs(2));
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Demo(args) => run::demo(args),
        Command::DemoHandler(args) => run::demo_handler(args),
        Command::Check(args) => check::run(&args),
        Command::Buffer(args) => buffer::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Probe(args) => probe::run(&args),
        Command::Healthcheck(args) => healthcheck::run(&args),
    }
}
