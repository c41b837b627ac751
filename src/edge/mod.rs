//! The HTTP/1 edge of the public listeners: Pingora hands over each accepted connection (TCP or
//! TLS, as a raw stream) and this module serves it, request after request, until it closes.
//!
//! Owns the downstream exchange: the connection cap, reading heads ([`head`]) and bodies (with
//! [`crate::chunked`] for chunked ones) into one small per-connection buffer, keep-alive and
//! pipelining by RFC 9112, `100 Continue`, answers in one write within the write timeout, and
//! closing ([`respond`]). The checks live in [`crate::checks`], the signed URL in
//! [`crate::signature`], everything after the checks in [`crate::flow`]; a `twilio_errors`
//! route's events go to [`crate::reconcile`] ([`events`]), which also hears every
//! notification's answer while such a route exists. It never forwards a
//! request that failed a check and never logs a signature, token or body.
//!
//! Why not Pingora's downstream session: it keeps a 64 KiB buffered stream and a header map per
//! connection, drops pipelined bytes when its stream is taken, and has no connection cap
//! (docs/design.md §9). Pingora keeps the listeners, TLS, upgrades, services and the upstream connectors.

mod conn;
mod events;
pub mod head;
mod read;
mod request;
mod respond;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::L4BufferSettings;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::flow::Flow;
use crate::lifecycle::Draining;
use crate::logging::{RateLimit, REJECTION_DETAILS_PER_SECOND};
use crate::metrics::EdgeMetrics;
use crate::reconcile::Reconciler;
use crate::snapshot::LiveConfig;

/// What Pingora's listener buffers for each connection: nothing on plain TCP (the edge reads
/// into its own buffer, sized to what arrives), a little under TLS (OpenSSL reads a 5-byte
/// record header, then the record).
pub fn l4_buffers(tls: bool) -> L4BufferSettings {
    L4BufferSettings::new(if tls { 4096 } else { 0 }, 0)
}

/// Everything the public listeners need, shared by all connections. What a reload may change
/// (routes, keys, limits...) lives in the [`LiveConfig`] snapshot, loaded once per request.
pub struct Edge {
    live: Arc<LiveConfig>,
    flow: Flow,
    /// Remembers answers for reconciling, and takes Twilio's error events.
    reconciler: Arc<Reconciler>,
    /// In the grace period after SIGTERM: answer, but close each connection after its answer,
    /// so clients and load balancers move to another instance.
    draining: Draining,
    open: AtomicUsize,
    metrics: EdgeMetrics,
    /// Bounds the rejection lines that carry their detail (a flood of bad requests must not
    /// flood the log); owned here, not a process-wide static, so each edge counts its own.
    rejection_details: RateLimit,
}

impl Edge {
    pub fn new(
        live: Arc<LiveConfig>,
        flow: Flow,
        reconciler: Arc<Reconciler>,
        draining: Draining,
        metrics: EdgeMetrics,
    ) -> Self {
        Edge {
            live,
            flow,
            reconciler,
            draining,
            open: AtomicUsize::new(0),
            metrics,
            rejection_details: RateLimit::new(REJECTION_DETAILS_PER_SECOND),
        }
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
        if open > self.live.load().limits.max_connections.get() {
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
