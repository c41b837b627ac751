//! twilio-notify-proxy: a Pingora edge proxy that verifies Twilio Client Call Notifications
//! (signature, body hash, JSON Schema) before they reach the customer's notification handler,
//! and keeps them from being lost when that handler fails (retries, durable buffer, redelivery).
//!
//! Layout, from the outside in (each module opens with what it owns and must not touch):
//! - [`cli`]: command line, one file per command family (`run`/`demo`/`demo-handler`, `check`,
//!   `sign`, `buffer ...`, `healthcheck`).
//! - [`config`]: the YAML file, validated into a typed [`config::Config`] before any port opens:
//!   raw serde layer, one validator per section, file/env reads behind a `SecretSource`, the
//!   `check` summary.
//! - [`app`]: wiring of Pingora services (public listeners, admin, health checks, redelivery).
//! - [`lifecycle`]: signals and the grace period (keep serving, then drain).
//! - [`edge`]: the HTTP/1 edge of the public listeners: connections, heads, bodies, keep-alive,
//!   answers (over Pingora's raw streams).
//! - [`reload`]: SIGHUP: validate the file again, refuse restart-only changes, swap the snapshot.
//! - [`public_probe`]: the proxy's own probe of its public URL, every interval (a service).
//! - [`runtime`]: the reloadable snapshot (routes, keys, limits...) the edge loads per request.
//! - [`route`]: the routes by path, each with its metrics and upstream.
//! - [`checks`]: the ordered request checks, before the flow (pure).
//! - [`probe`]: the marker of `probe`'s synthetic notifications and what the edge does (pure);
//!   the client that sends one (dns, connect, tls, answer), for `probe` and `public_probe`.
//! - [`signature`]: Twilio's signing rules and the signed public URL (pure).
//! - [`schema`]: JSON parsing and JSON Schema validation of the body (pure).
//! - [`flow`]: after the checks: dedupe, delivery, fail-or-buffer, the ending (no sockets).
//! - [`policy`]: retry, circuit breaker and the one settlement rule (pure).
//! - [`delivery`]: one exchange with a handler peer (wire framing, idle pool, peer choice).
//! - [`chunked`]: the chunked transfer coding, decoded for both sides (pure).
//! - [`dedupe`]: claims that keep a notification from being delivered twice.
//! - [`buffer`], [`redelivery`]: the durable store (with its hand-off file across `run --upgrade`)
//!   and the worker that drains it.
//! - [`outcome`]: the names and status codes of every ending and every result label.
//! - [`metrics`], [`admin`], [`logging`]: Prometheus metrics, the admin listener, log setup
//!   (byte-bounded queue, bounded echo of request values, rate limits, request ids).
//! - [`demo`]: a sample notification handler for trying the proxy.
//!
//! Dependencies point down this list (the pure modules at the bottom depend on nothing of
//! the crate but each other); no module imports one that imports it back.

pub mod admin;
pub mod app;
pub mod buffer;
pub mod checks;
pub mod chunked;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod demo;
pub mod edge;
pub mod flow;
pub mod framing;
pub mod jitter;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod outcome;

pub mod policy;
pub mod probe;
pub mod public_probe;
pub mod redelivery;
pub mod reload;
pub mod route;
pub mod schema;
pub mod signature;
pub mod snapshot;
