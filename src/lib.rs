//! twilio-notify-proxy: a Pingora edge proxy that verifies Twilio Client Call Notifications
//! (signature, body hash, JSON Schema) before they reach the customer's notification handler,
//! and keeps them from being lost when that handler fails (retries, durable buffer, redelivery).
//!
//! Layout, from the outside in (each module opens with what it owns and must not touch):
//! - [`cli`]: command line, one file per command family (`run`/`demo`/`demo-handler`, `check`,
//!   `sign`, `probe`, `buffer ...`, `healthcheck`).
//! - [`app`]: wiring of Pingora services (public listeners, admin, health checks, redelivery,
//!   the reconciler, the public probe) and the stores they share.
//! - [`demo`], [`admin`]: a sample notification handler; `/metrics`, `/healthz`, `/readyz`.
//! - [`reload`]: SIGHUP: validate the file again, refuse restart-only changes, swap the snapshot.
//! - [`public_probe`]: the proxy's own probe of its public URL, every interval (a service).
//! - [`edge`]: the HTTP/1 edge of the public listeners: connections, heads, bodies, keep-alive,
//!   answers (over Pingora's raw streams).
//! - [`reconcile`]: Twilio's error events at run time: the answer ledger and the worker that
//!   counts each event once and reconciles each 13807 with the proxy's answer.
//! - [`redelivery`]: the worker that drains the buffer.
//! - [`flow`]: after the checks: dedupe, delivery, fail-or-buffer, the ending (no sockets).
//! - [`snapshot`], [`route`]: the reloadable configuration serving now; the routes by path.
//! - [`dedupe`]: claims that keep a notification from being delivered twice.
//! - [`delivery`]: one exchange with a handler peer (wire framing, idle pool, peer choice).
//! - [`buffer`]: the durable store (redb, with its hand-off file across `run --upgrade`, or
//!   PostgreSQL for a fleet).
//! - [`metrics`]: Prometheus families and the handles the rest counts through.
//! - [`probe`]: the marker of `probe`'s synthetic notifications and what the edge does (pure);
//!   the client that sends one (dns, connect, tls, answer), for `probe` and `public_probe`.
//! - [`checks`]: the ordered request checks, before the flow (pure).
//! - [`twilio_errors`]: Twilio's error events read strictly, and the verdict on a 13807 (pure).
//! - [`outcome`]: the names and status codes of every ending and every result label.
//! - [`logging`]: log setup (byte-bounded queue, bounded echo of request values, rate limits,
//!   request ids).
//! - [`config`]: the YAML file, validated into a typed [`config::Config`] before any port opens:
//!   raw serde layer, one validator per section, file/env reads behind a `SecretSource`, the
//!   `check` summary.
//! - [`signature`]: Twilio's signing rules and the signed public URL (pure).
//! - [`schema`]: JSON parsing and JSON Schema validation of the body (pure).
//! - [`policy`]: retry, circuit breaker and the one settlement rule (pure).
//! - [`framing`], [`chunked`]: how a body is delimited, and the chunked coding, for both sides
//!   (pure).
//! - [`jitter`], [`lifecycle`], [`clock`]: the injected sources (randomness, signals and the
//!   grace period, time).
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
pub mod reconcile;
pub mod redelivery;
pub mod reload;
pub mod route;
pub mod schema;
pub mod signature;
pub mod snapshot;
pub mod twilio_errors;
