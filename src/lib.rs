//! twilio-notify-proxy: a Pingora edge proxy that verifies Twilio Client Call Notifications
//! (signature, body hash, JSON Schema) before they reach the customer's notification handler,
//! and keeps them from being lost when that handler fails (retries, durable buffer, redelivery).
//!
//! Layout, from the outside in:
//! - [`cli`]: command line, one file per command family (`run`/`demo`/`demo-handler`, `check`,
//!   `sign`, `buffer ...`, `healthcheck`).
//! - [`config`]: the YAML file, validated into a typed [`config::Config`] before any port opens:
//!   raw serde layer, one validator per section, file/env reads behind a `SecretSource`, the
//!   `check` summary.
//! - [`app`]: wiring of Pingora services (public listeners, admin, health checks, redelivery).
//! - [`proxy`]: the per-request flow on the public listeners (thin Pingora glue).
//! - [`pipeline`]: the ordered request checks (pure).
//! - [`signature`]: Twilio's signing rules (pure).
//! - [`schema`]: JSON parsing and JSON Schema validation of the body (pure).
//! - [`delivery`]: attempts against handler peers: retry policy and circuit breaker (pure),
//!   wire framing, idle pool, and the one `deliver_once` everything shares.
//! - [`dedupe`]: recently seen notifications.
//! - [`buffer`], [`redelivery`]: the durable store and the worker that drains it.
//! - [`outcome`]: the names and status codes of every way a request can end.
//! - [`metrics`], [`admin`], [`logging`]: Prometheus metrics, the admin listener, log setup.
//! - [`demo`]: a sample notification handler for trying the proxy.

pub mod admin;
pub mod app;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod dedupe;
pub mod delivery;
pub mod demo;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod pipeline;
pub mod proxy;
pub mod redelivery;
pub mod schema;
pub mod signature;
