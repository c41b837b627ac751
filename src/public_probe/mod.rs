//! The proxy's own probe of its public URL (`probe.public`): a background service that runs,
//! every `interval`, the same probe as `twilio-notify-proxy probe` (DNS, TCP, TLS, the load
//! balancer, back to a proxy instance that answers it with outcome `probe`), and exports what
//! it finds. This catches the 13807s that never reach the proxy: a certificate that expired,
//! DNS or the load balancer failing, a `public_url` that is not the URL Twilio calls.
//!
//! Owns the schedule and the reporting: it reads the live snapshot before each run (so a reload
//! changes the URL, the interval or switches the probe on or off from the next run), signs with
//! the key [`crate::config::PublicProbe::signing_key`] picks from the live key ring, runs the
//! blocking [`crate::probe::client`] off the runtime's threads, counts the run, and logs
//! once per change ([`change`]), each line bounded. The first run is [`FIRST_RUN_AFTER`] after
//! start, when the listeners are up. It never touches a request.

mod change;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::PublicProbe;
use crate::logging::bounded;
use crate::metrics::PublicProbeMetrics;
use crate::probe::client::{self, Report, Signer, Target};
use crate::probe::{Mode, Step};
use crate::signature::SigningKey;
use crate::snapshot::LiveConfig;
use change::{Change, Watch};

/// How long after start the first run waits: the public listeners are bound by then.
pub const FIRST_RUN_AFTER: Duration = Duration::from_secs(1);
/// How often a proxy without `probe.public` looks whether a reload added one.
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// The identity in the probe's `twi_to` (answered by the proxy: no device is notified).
const IDENTITY: &str = "notify-proxy-probe";

/// One run, as the metrics and the log need it.
struct Run {
    /// The failed step, the fixed cause word and the detail; `None` when it passed.
    failure: Option<(Step, &'static str, String)>,
    seconds: [f64; 4],
    tls: bool,
    certificate_not_after: Option<i64>,
}

impl Run {
    fn from_report(report: &Report) -> Run {
        Run {
            failure: report.failure(),
            seconds: Step::ALL.map(|s| report.duration(s).as_secs_f64()),
            tls: report.tls,
            certificate_not_after: report.certificate_not_after,
        }
    }

    /// A run that could not even be sent (no key, a task that died): failed at `answer`.
    fn not_sent(detail: String) -> Run {
        Run {
            failure: Some((Step::Answer, "not_sent", detail)),
            seconds: [0.0; 4],
            tls: false,
            certificate_not_after: None,
        }
    }
}

/// The background service.
pub struct PublicProbeService {
    live: Arc<LiveConfig>,
    metrics: PublicProbeMetrics,
}

impl PublicProbeService {
    pub fn new(live: Arc<LiveConfig>, metrics: PublicProbeMetrics) -> Self {
        PublicProbeService { live, metrics }
    }

    /// Runs until the process ends.
    async fn probe_forever(&self) {
        tokio::time::sleep(FIRST_RUN_AFTER).await;
        let mut watch = Watch::default();
        let mut probing: Option<String> = None;
        loop {
            let snapshot = self.live.load();
            let Some(probe) = snapshot.public_probe.clone() else {
                if probing.take().is_some() {
                    self.metrics.clear();
                    watch.reset();
                    tracing::info!("public probe off: probe.public is no longer configured");
                }
                drop(snapshot);
                tokio::time::sleep(IDLE_LOOK).await;
                continue;
            };
            if probing.as_deref() != Some(probe.url.as_str()) {
                // Another URL: the last one's state and certificate say nothing about it.
                self.metrics.clear();
                watch.reset();
                probing = Some(probe.url.clone());
            }
            let key = probe
                .signing_key(&snapshot.keys)
                .map(|(key, name)| (key.clone(), name));
            drop(snapshot);
            let started = Instant::now();
            let run = run_once(probe.clone(), key).await;
            self.report(&probe, &run, &mut watch);
            tokio::time::sleep_until((started + probe.interval).into()).await;
        }
    }

    fn report(&self, probe: &PublicProbe, run: &Run, watch: &mut Watch) {
        let failed_at = run.failure.as_ref().map(|(step, _, _)| *step);
        self.metrics.run(failed_at, run.seconds);
        match (run.tls, run.certificate_not_after) {
            (false, _) => self.metrics.certificate_expiry(0),
            (true, Some(not_after)) => self.metrics.certificate_expiry(not_after),
            // TLS not reached this time: the last certificate seen is still the best answer.
            (true, None) => {}
        }
        let change = watch.observe(run.failure.as_ref().map(|(s, c, _)| (*s, *c)));
        let url = probe.url.as_str();
        match (change, &run.failure) {
            (None, _) => {}
            (Some(Change::Passing), _) => {
                tracing::info!(url, "public probe passing: answered by the proxy")
            }
            (Some(Change::Recovered), _) => {
                tracing::info!(url, "public probe passing again: answered by the proxy")
            }
            (Some(Change::Failing), Some((step, cause, detail))) => tracing::error!(
                url,
                step = step.as_str(),
                cause,
                "public probe failing at {}: {}",
                step.as_str(),
                bounded(detail)
            ),
            (
                Some(Change::FailingOtherwise {
                    was_step,
                    was_cause,
                }),
                Some((step, cause, detail)),
            ) => tracing::error!(
                url,
                step = step.as_str(),
                cause,
                "public probe now failing at {} (was {}, {was_cause}): {}",
                step.as_str(),
                was_step.as_str(),
                bounded(detail)
            ),
            (Some(_), None) => {}
        }
    }
}

/// One probe, on a blocking thread (it does blocking DNS and socket calls, all within
/// `probe.timeout`).
async fn run_once(probe: Arc<PublicProbe>, key: Option<(SigningKey, String)>) -> Run {
    let Some((key, token)) = key else {
        return Run::not_sent(format!(
            "no key signs the probe for account {} (secrets.auth_token or secrets.accounts)",
            probe.account
        ));
    };
    let task = tokio::task::spawn_blocking(move || {
        let signer = Signer {
            key: &key,
            token: &token,
            mode: Mode::Answer,
            account: &probe.account,
            identity: IDENTITY,
        };
        let request =
            client::request(&probe.url, &signer).map_err(|e| format!("probe.public.url: {e}"))?;
        let target = Target {
            url: &probe.url,
            connect: probe.connect,
            extra_roots: &probe.extra_roots,
            timeout: probe.timeout,
        };
        Ok::<_, String>(Run::from_report(&client::run(&request, &signer, &target)))
    });
    match task.await {
        Ok(Ok(run)) => run,
        Ok(Err(e)) => Run::not_sent(e),
        Err(e) => Run::not_sent(format!("the probe's task ended: {e}")),
    }
}

#[async_trait]
impl BackgroundService for PublicProbeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = self.probe_forever() => {}
            _ = shutdown.changed() => {}
        }
    }
}
