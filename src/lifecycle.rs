//! Process lifecycle: how SIGTERM, SIGQUIT and SIGINT become Pingora's shutdown.
//!
//! Owns the grace period. Pingora stops accepting the moment it is told to shut down; a load
//! balancer or Kubernetes still sends traffic for a few seconds after it sent SIGTERM, and
//! those connections would be refused. So on SIGTERM this watcher first marks the process
//! *draining* (`/readyz` answers 503, new keep-alive turns are closed) and keeps every listener
//! serving for `server.grace_period`; only then does it hand Pingora the shutdown, and Pingora
//! gives in-flight requests `server.graceful_shutdown_timeout` to finish. A second SIGTERM or a
//! SIGINT during the grace period cuts it short. SIGQUIT (graceful upgrade) is Pingora's own:
//! the listening sockets go to the new process at once, so nothing is refused either way.
//!
//! It never touches a request: the edge and the admin listener only read [`Draining`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

/// Whether the process is in its grace period: still serving, but going away.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The shutdown watcher handed to Pingora's `Server::run`.
pub struct GraceWatch {
    grace_period: Duration,
    draining: Draining,
}

impl GraceWatch {
    pub fn new(grace_period: Duration, draining: Draining) -> Self {
        GraceWatch {
            grace_period,
            draining,
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for GraceWatch {
    async fn recv(&self) -> ShutdownSignal {
        // Installing a handler fails only when the OS refuses signals at all; then the
        // process could not be stopped gracefully anyway, and Pingora's default is the same.
        let mut upgrade = signal(SignalKind::quit()).expect("SIGQUIT handler");
        let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = upgrade.recv() => return ShutdownSignal::GracefulUpgrade,
            _ = interrupt.recv() => return ShutdownSignal::FastShutdown,
            _ = terminate.recv() => {}
        }
        self.draining.start();
        tracing::info!(
            grace_period = ?self.grace_period,
            "SIGTERM: draining; still serving until the grace period ends (/readyz answers 503)"
        );
        tokio::select! {
            _ = tokio::time::sleep(self.grace_period) => {}
            _ = terminate.recv() => tracing::info!("second SIGTERM: grace period cut short"),
            _ = interrupt.recv() => return ShutdownSignal::FastShutdown,
        }
        tracing::info!("grace period over: no new connections; finishing in-flight requests");
        ShutdownSignal::GracefulTerminate
    }
}
