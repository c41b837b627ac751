//! The HTTP/1 edge of the public listeners: Pingora hands over each accepted connection (TCP or
//! TLS, as a raw stream) and this module serves it, request after request, until it closes.
//!
//! Owns the downstream exchange: the connection cap, reading heads ([`head`]) and bodies (with
//! [`body`] for chunked ones) into one small per-connection buffer, keep-alive and pipelining by
//! RFC 9112, `100 Continue`, answers in one write within the write timeout, and closing
//! ([`respond`]). The checks live in [`crate::pipeline`], the signed URL in [`crate::signature`],
//! everything after the checks in [`crate::flow`]. It never forwards a request that failed a
//! check and never logs a signature, token or body.
//!
//! Why not Pingora's downstream session: it keeps a 64 KiB buffered stream and a header map per
//! connection, drops pipelined bytes when its stream is taken, and has no connection cap
//! (DESIGN §9). Pingora keeps the listeners, TLS, upgrades, services and the upstream connectors.

mod body;
mod conn;
pub mod head;
mod respond;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;
use pingora::apps::ServerApp;
use pingora::listeners::L4BufferSettings;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::config::{Config, Limits};
use crate::flow::Flow;
use crate::lifecycle::Draining;
use crate::metrics::EdgeMetrics;
use crate::route::Routes;
use crate::signature::KeyRing;

pub use body::{ChunkError, Dechunker};

/// What Pingora's listener buffers for each connection: nothing on plain TCP (the edge reads
/// into its own buffer, sized to what arrives), a little under TLS (OpenSSL reads a 5-byte
/// record header, then the record).
pub fn l4_buffers(tls: bool) -> L4BufferSettings {
    L4BufferSettings::new(if tls { 4096 } else { 0 }, 0)
}

/// Everything the public listeners need, built once at start and shared by all connections.
pub struct Edge {
    routes: Routes,
    flow: Flow,
    keys: KeyRing,
    allowed_accounts: HashSet<String>,
    trusted_proxies: Vec<IpNet>,
    limits: Limits,
    access_log: bool,
    /// In the grace period after SIGTERM: answer, but close each connection after its answer,
    /// so clients and load balancers move to another instance.
    draining: Draining,
    open: AtomicUsize,
    metrics: EdgeMetrics,
}

impl Edge {
    pub fn new(
        config: &Config,
        routes: Routes,
        flow: Flow,
        draining: Draining,
        metrics: EdgeMetrics,
    ) -> Self {
        Edge {
            routes,
            flow,
            keys: config.keys.clone(),
            allowed_accounts: config.allowed_accounts.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            limits: config.limits,
            access_log: config.logging.access_log,
            draining,
            open: AtomicUsize::new(0),
            metrics,
        }
    }

    fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.trusted_proxies.iter().any(|net| net.contains(&ip)))
    }
}

/// One slot of `limits.max_connections`, given back when the connection ends.
struct Slot<'a>(&'a Edge);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.open.dec();
    }
}

#[async_trait]
impl ServerApp for Edge {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics.open.inc();
        let _slot = Slot(self);
        if open > self.limits.max_connections.get() {
            // Closed before a byte is read: the connections already open keep being served, and
            // a client (or load balancer) that is refused can go to another instance.
            self.metrics.refused.inc();
            tracing::debug!(open, "limits.max_connections reached; connection closed");
            return None;
        }
        conn::serve(self, stream, shutdown).await;
        // Every connection is served to its end here: nothing goes back to Pingora's loop.
        None
    }
}
