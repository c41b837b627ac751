//! Log setup: level, format (text or JSON), and where lines go.
//!
//! Owns the global subscriber. Lines are written by a background thread so a request never
//! waits on stderr (a synchronous line per request measured −13 % throughput, DESIGN §7),
//! except in daemon mode, where a thread started before Pingora forks would be lost. Never
//! decides what is logged: the request path does, and it never logs secrets or bodies.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

/// Installs the subscriber. `RUST_LOG`, when set, overrides `config.level`.
pub fn init(config: &LoggingConfig, daemon: bool) {
    if daemon {
        install(config, std::io::stderr);
    } else {
        let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
        // The writer thread lives as long as the process; Pingora ends the process itself.
        std::mem::forget(guard);
        install(config, writer);
    }
}

fn install<W>(config: &LoggingConfig, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // An already installed subscriber (tests, embedding) is kept.
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
