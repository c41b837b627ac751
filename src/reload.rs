//! Live reload on SIGHUP: load and validate the config file again, as `check` does, and swap
//! the request path's [`Snapshot`] if nothing in it needs a restart.
//!
//! Owns the reload sequence and its outcome (log line and `notify_proxy_config_reloads_total`):
//! a file that does not validate, or that changes a key bound at start (see
//! [`restart_required`]), is refused with a line naming the error or the keys, and the running
//! config keeps serving. Otherwise upstream groups get their new peers (keeping pools and
//! circuit breakers) and the new snapshot serves from the next request on; requests in flight
//! finish on the one they loaded. Also owns `notify_proxy_config_info`, the SHA-256 of the file
//! serving now (the file holds no secret: those come from the environment or secret files).
//! It never touches a request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{restart_required, Config, ProcessEnv};
use crate::delivery::{Deliver, UpstreamGroup};
use crate::metrics::Metrics;
use crate::outcome::ReloadResult;
use crate::route::Routes;
use crate::snapshot::{LiveConfig, Snapshot};

/// The first 16 hex digits of the SHA-256 of a config file's text.
pub fn config_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Everything a reload replaces or keeps.
pub struct Reloader {
    path: PathBuf,
    /// The text of the config serving now (what the next file is compared with).
    text: Mutex<String>,
    live: Arc<LiveConfig>,
    /// In `config.upstreams` order (by name): they stay, only their peers change.
    groups: Vec<Arc<UpstreamGroup>>,
    metrics: Arc<Metrics>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        text: String,
        live: Arc<LiveConfig>,
        groups: Vec<Arc<UpstreamGroup>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloader {
            path,
            text: Mutex::new(text),
            live,
            groups,
            metrics,
        }
    }

    fn current_text(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One reload: validate, compare, apply. The result is logged and counted.
    pub async fn reload(&self) -> ReloadResult {
        let result = self.try_reload().await;
        self.metrics.reloaded(result);
        result
    }

    async fn try_reload(&self) -> ReloadResult {
        let path = self.path.clone();
        // File reads and host-name lookups block: keep them off the runtime's threads.
        let loaded =
            tokio::task::spawn_blocking(move || Config::load_with_text(&path, &ProcessEnv)).await;
        let (config, text) = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => {
                tracing::error!("reload refused, the running config keeps serving: {e:#}");
                return ReloadResult::Invalid;
            }
            Err(e) => {
                tracing::error!("reload refused, the running config keeps serving: {e}");
                return ReloadResult::Invalid;
            }
        };
        let keys = restart_required(&self.current_text(), &text);
        if !keys.is_empty() {
            tracing::error!(
                config = %self.path.display(),
                keys = %keys.join(", "),
                "reload refused: these keys changed and need a restart; the running config keeps \
                 serving (revert them, or restart the proxy to apply them)"
            );
            return ReloadResult::RestartRequired;
        }
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let mut delivering: Vec<Arc<dyn Deliver>> = Vec::new();
        for upstream in &config.upstreams {
            // restart_required refuses a change of the group set, so every name is found.
            let Some(group) = self.groups.iter().find(|g| g.config.name == upstream.name) else {
                tracing::error!(upstream = %upstream.name, "reload refused: unknown upstream group");
                return ReloadResult::RestartRequired;
            };
            if group.set_peers(upstream.resolved.clone()).await {
                tracing::info!(upstream = %upstream.name, peers = ?upstream.peers, "upstream peers replaced");
            }
            delivering.push(group.clone() as Arc<dyn Deliver>);
        }
        let routes = Routes::new(&config, &delivering, &self.metrics);
        self.live.swap(Snapshot::new(&config, routes));
        let hash = config_hash(&text);
        self.metrics.set_config_hash(&hash);
        *self.text.lock().unwrap_or_else(|e| e.into_inner()) = text;
        tracing::info!(config = %self.path.display(), hash = %hash, "config reloaded");
        ReloadResult::Success
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP: live reload is off");
                return;
            }
        };
        // Exported only once SIGHUP is handled: before that, a SIGHUP would end the process
        // (its default action), so tools may wait for this series before reloading.
        self.metrics
            .set_config_hash(&config_hash(&self.current_text()));
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    tracing::info!(config = %self.path.display(), "SIGHUP: reloading the config");
                    self.reload().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
