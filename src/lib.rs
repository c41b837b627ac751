//! twilio-notify-proxy: a Pingora edge proxy that verifies Twilio Client Call Notifications
//! (signature, body hash, JSON Schema) before they reach the customer's notification handler.
//!
//! Layout, from the outside in:
//! - [`cli`]: command line (`run`, `demo`, `check`, `sign`).
//! - [`config`]: the YAML file, validated into a typed [`config::Config`] before any port opens.
//! - [`app`]: wiring of Pingora services (public listeners, admin, health checks).
//! - [`proxy`]: the per-request flow on the public listeners (thin Pingora glue).
//! - [`pipeline`]: the ordered request checks (pure).
//! - [`signature`]: Twilio's signing rules (pure).
//! - [`schema`]: JSON Schema validation of the body (pure).
//! - [`delivery`]: one exchange with one handler peer through Pingora's connector.
//! - [`outcome`]: the names and status codes of every way a request can end.
//! - [`metrics`], [`admin`]: Prometheus metrics and the admin listener.
//! - [`demo`]: a sample notification handler for trying the proxy.

pub mod admin;
pub mod app;
pub mod buffer;
pub mod buffer_cli;
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
