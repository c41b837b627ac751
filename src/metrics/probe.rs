//! The families of the proxy's own probe of its public URL (`probe.public`): runs by result,
//! failures by step, the last run's success and step durations, and the served certificate's
//! expiry.
//!
//! Owns their names, help texts and the fixed label sets (`result`: passed, failed; `step`: the
//! probe's [`Step`]s), every series registered at 0. Nothing from an answer is a label. The
//! durations are gauges of the last run, not histograms: one run per interval (30 s by default)
//! is one sample per scrape or two, too few for quantiles to mean anything, and a gauge shows
//! each run as it was.

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::probe::Step;

/// Handles of the public probe's series, resolved at start.
#[derive(Clone)]
pub struct PublicProbeMetrics {
    passed: IntCounter,
    failed: IntCounter,
    /// By [`Step`] discriminant.
    failures: Vec<IntCounter>,
    success: IntGauge,
    /// By [`Step`] discriminant.
    step_seconds: Vec<Gauge>,
    certificate_expiry: IntGauge,
}

impl PublicProbeMetrics {
    /// Registers the families in `registry`, every series at 0.
    pub(super) fn register(registry: &Registry) -> Self {
        let register = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("registered once");
        };
        let runs = IntCounterVec::new(
            Opts::new(
                "notify_proxy_public_probe_runs_total",
                "Runs of the proxy's own probe of probe.public.url, by result (passed, failed).",
            ),
            &["result"],
        )
        .expect("valid metric");
        register(Box::new(runs.clone()));
        let failures = IntCounterVec::new(
            Opts::new(
                "notify_proxy_public_probe_failures_total",
                "Failed runs of the public probe, by the step that failed (dns, connect, tls, answer).",
            ),
            &["step"],
        )
        .expect("valid metric");
        register(Box::new(failures.clone()));
        let success = IntGauge::new(
            "notify_proxy_public_probe_success",
            "1 if the last run of the public probe passed, else 0 (also while none is configured).",
        )
        .expect("valid metric");
        register(Box::new(success.clone()));
        let step_seconds = GaugeVec::new(
            Opts::new(
                "notify_proxy_public_probe_step_duration_seconds",
                "Duration of each step in the public probe's last run (0: skipped or not reached).",
            ),
            &["step"],
        )
        .expect("valid metric");
        register(Box::new(step_seconds.clone()));
        let certificate_expiry = IntGauge::new(
            "notify_proxy_public_probe_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate served at probe.public.url, as unix seconds (0 until seen, or for plain http).",
        )
        .expect("valid metric");
        register(Box::new(certificate_expiry.clone()));
        PublicProbeMetrics {
            passed: runs.with_label_values(&["passed"]),
            failed: runs.with_label_values(&["failed"]),
            failures: Step::ALL
                .iter()
                .map(|s| failures.with_label_values(&[s.as_str()]))
                .collect(),
            success,
            step_seconds: Step::ALL
                .iter()
                .map(|s| step_seconds.with_label_values(&[s.as_str()]))
                .collect(),
            certificate_expiry,
        }
    }

    /// Counts one run: passed when `failed_at` is `None`; `seconds` by [`Step::ALL`] order.
    pub fn run(&self, failed_at: Option<Step>, seconds: [f64; 4]) {
        match failed_at {
            None => self.passed.inc(),
            Some(step) => {
                self.failed.inc();
                self.failures[step as usize].inc();
            }
        }
        self.success.set(i64::from(failed_at.is_none()));
        for (gauge, s) in self.step_seconds.iter().zip(seconds) {
            gauge.set(s);
        }
    }

    /// The served certificate's notAfter (unix seconds); 0 when unknown.
    pub fn certificate_expiry(&self, unix_seconds: i64) {
        self.certificate_expiry.set(unix_seconds);
    }

    /// No probe configured (any more): the last run's gauges go back to 0; counters stay.
    pub fn clear(&self) {
        self.success.set(0);
        self.certificate_expiry.set(0);
        for gauge in &self.step_seconds {
            gauge.set(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_series_starts_at_zero_and_a_run_sets_the_last_values() {
        for (i, step) in Step::ALL.iter().enumerate() {
            assert_eq!(*step as usize, i, "discriminants index the handles");
        }
        let registry = Registry::new();
        let m = PublicProbeMetrics::register(&registry);
        let text = render(&registry);
        for step in Step::ALL {
            let s = step.as_str();
            assert!(
                text.contains(&format!(
                    "notify_proxy_public_probe_failures_total{{step=\"{s}\"}} 0"
                )),
                "{text}"
            );
            assert!(text.contains(&format!(
                "notify_proxy_public_probe_step_duration_seconds{{step=\"{s}\"}} 0"
            )));
        }
        m.run(Some(Step::Connect), [0.0, 0.5, 0.0, 0.0]);
        m.run(None, [0.001, 0.002, 0.003, 0.004]);
        let text = render(&registry);
        for sample in [
            r#"notify_proxy_public_probe_runs_total{result="passed"} 1"#,
            r#"notify_proxy_public_probe_runs_total{result="failed"} 1"#,
            r#"notify_proxy_public_probe_failures_total{step="connect"} 1"#,
            "notify_proxy_public_probe_success 1",
            r#"notify_proxy_public_probe_step_duration_seconds{step="answer"} 0.004"#,
        ] {
            assert!(text.contains(sample), "{sample} in {text}");
        }
        m.certificate_expiry(4_102_444_800);
        assert!(render(&registry)
            .contains("notify_proxy_public_probe_certificate_expiry_timestamp_seconds 4102444800"));
        m.clear();
        let text = render(&registry);
        assert!(text.contains("notify_proxy_public_probe_success 0"));
        assert!(text.contains("notify_proxy_public_probe_certificate_expiry_timestamp_seconds 0"));
    }
}
