//! Wiring: turns a validated [`Config`] into a Pingora [`Server`] with its services.
//!
//! Owns which services exist (public listeners, admin listener, health checks, peer
//! re-resolution, live reload, redelivery, the reconciler of Twilio's error events, the public
//! probe, the optional demo handler) and the Pingora server
//! settings; [`stores`] opens the buffer and dedupe. No request logic lives here.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::clock::{Clock, SteadyClock};
use crate::config::Config;
use crate::delivery::resolve::{PeerRefresher, SystemResolver};
use crate::delivery::{new_balancer, Deliver, RecoveryWatch, UpstreamGroup};
use crate::demo::DemoHandler;
use crate::edge::{l4_buffers, Edge};
use crate::flow::Flow;
use crate::lifecycle::{Draining, GraceWatch};
use crate::logging::DroppedLines;
use crate::metrics::Metrics;
use crate::public_probe::PublicProbeService;
use crate::reconcile::Reconciler;
use crate::redelivery::Redeliverer;
use crate::reload::Reloader;
use crate::route::Routes;
use crate::snapshot::{LiveConfig, Snapshot};

mod stores;
use stores::Stores;

/// Pingora's own process flags, passed through from the command line.
#[derive(Debug, Default, Clone)]
pub struct ProcessFlags {
    pub daemon: bool,
    pub upgrade: bool,
    pub test: bool,
}

/// Where the sample handler listens and which identities it knows (for `demo`).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub address: String,
    pub identities: Vec<String>,
}

fn whole_seconds(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// How long a redelivery attempt under way at shutdown may still take: what is left of
/// `server.graceful_shutdown_timeout` once the store calls after it (recording the result,
/// giving leases back: each up to `buffer.store_timeout` with PostgreSQL) are counted, so an
/// accepted redelivery is removed before the process ends.
fn attempt_budget(config: &Config) -> std::time::Duration {
    let after = match config.buffer.as_ref().map(|b| &b.backend) {
        Some(crate::config::BufferBackend::Postgres(pg)) => pg.store_timeout * 2,
        _ => std::time::Duration::ZERO,
    };
    config
        .server
        .graceful_shutdown_timeout
        .saturating_sub(after)
        .max(std::time::Duration::from_millis(100))
}

/// The built server and the watcher that turns signals into its shutdown.
pub struct ProxyServer {
    server: Server,
    watch: GraceWatch,
}

impl ProxyServer {
    /// Serves until a signal ends the process (see [`crate::lifecycle`]), then exits.
    pub fn run_forever(self) -> ! {
        self.server.run(RunArgs {
            shutdown_signal: Box::new(self.watch),
        });
        // Lines logged while draining ("leases given back") are written before the process goes.
        crate::logging::flush(std::time::Duration::from_secs(2));
        std::process::exit(0)
    }
}

/// Builds the server; the caller runs it (`run_forever`). `text` is the config file as it was
/// loaded (what a live reload compares the next file with); `dropped_lines` is what the log
/// queue counts (exported with the metrics).
pub fn build_server(
    config: Config,
    text: String,
    flags: &ProcessFlags,
    demo: Option<DemoOptions>,
    dropped_lines: DroppedLines,
) -> Result<ProxyServer> {
    let mut conf = ServerConf {
        threads: config.server.threads.get(),
        work_stealing: config.server.work_stealing,
        // Pingora's "grace period" starts after the listeners closed: it is the time in-flight
        // requests get to finish. Our grace period (still accepting) runs before that, in
        // GraceWatch. What is left for the runtimes is blocking work such as an fsync.
        grace_period_seconds: Some(whole_seconds(config.server.graceful_shutdown_timeout)),
        graceful_shutdown_timeout_seconds: Some(1),
        error_log: config.server.error_log.clone(),
        ..ServerConf::default()
    };
    if let Some(pid) = &config.server.pid_file {
        conf.pid_file = pid.clone();
    }
    if let Some(sock) = &config.server.upgrade_sock {
        conf.upgrade_sock = sock.clone();
    }
    let opt = Opt {
        daemon: flags.daemon,
        upgrade: flags.upgrade,
        test: flags.test,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);

    let metrics = Arc::new(Metrics::new().with_dropped_lines(dropped_lines));
    let mut upstreams = Vec::new();
    for u in &config.upstreams {
        let (lb, membership) = new_balancer(u).with_context(|| format!("upstreams.{}", u.name))?;
        let lb = if u.health_check_interval.is_some() {
            let service = background_service(&format!("health check {}", u.name), lb);
            let task = service.task();
            server.add_service(service);
            task
        } else {
            Arc::new(lb)
        };
        upstreams.push(Arc::new(UpstreamGroup::new(
            u.clone(),
            lb,
            membership,
            metrics.upstream(&u.name),
        )));
    }

    let store_writable = Arc::new(AtomicBool::new(true));
    // One clock for arrival, expiry and schedules, immune to system clock steps while running.
    let clock: Arc<dyn Clock> = Arc::new(SteadyClock::new());
    let Stores {
        store,
        dedupe,
        ledger,
    } = stores::open(&config, flags.upgrade, &mut server, &metrics, &clock)?;
    let delivering: Vec<Arc<dyn Deliver>> = upstreams
        .iter()
        .map(|u| u.clone() as Arc<dyn Deliver>)
        .collect();
    let routes = Routes::new(&config, &delivering, &metrics);
    let live = Arc::new(LiveConfig::new(Snapshot::new(&config, routes)));
    if let (Some(b), Some(store)) = (&config.buffer, &store) {
        let groups = upstreams
            .iter()
            .map(|u| (u.config.name.clone(), u.clone()))
            .collect();
        // Policies and metrics come from the snapshot serving now: a reload applies to the
        // worker at the same moment as to the live path.
        let worker = Redeliverer::new(
            store.clone(),
            groups,
            live.clone(),
            b.redelivery_backoff,
            b.redelivery_interval,
            b.redelivery_concurrency.get(),
            metrics.store(),
        )
        .with_clock(clock.clone())
        .with_ring_window(b.ring_window)
        .with_shutdown_budget(attempt_budget(&config));
        server.add_service(background_service("redelivery", worker));
    }
    let dedupe_claims = dedupe.as_ref().map(|d| d.claims.clone());
    let flow = Flow::new(dedupe, store.clone(), store_writable.clone()).with_clock(clock);
    let draining = Draining::default();
    // Twilio's error events, reconciled with the answers the edge remembers.
    let serving = live.clone();
    let (reconciler, worker) = Reconciler::new(
        ledger,
        metrics.twilio_errors(),
        Arc::new(move || serving.load().routes.served_urls()),
    );
    server.add_service(background_service("twilio errors", worker));
    let edge = Edge::new(
        live.clone(),
        flow,
        Arc::new(reconciler),
        draining.clone(),
        metrics.edge(),
    );
    let mut public = Service::new("twilio-notify-proxy".to_string(), edge);
    public.threads = Some(config.server.threads.get());
    for l in &config.listeners {
        let addr = l.address.to_string();
        match &l.tls {
            None => public.add_listener(ListenerConfig::tcp(&addr).l4_buffer(l4_buffers(false))),
            Some(tls) => {
                let cert = tls.cert_file.to_string_lossy();
                let key = tls.key_file.to_string_lossy();
                // HTTP/1.1 only: Twilio speaks it, and the edge forwards HTTP/1 heads verbatim.
                let settings = TlsSettings::intermediate(&cert, &key)
                    .map_err(|e| anyhow::anyhow!("listener {addr}: TLS cert/key: {e}"))?;
                public.add_listener(
                    ListenerConfig::tcp(&addr)
                        .tls(settings)
                        .l4_buffer(l4_buffers(true)),
                );
            }
        }
    }
    server.add_service(public);

    let mut admin = Service::new(
        "admin".to_string(),
        AdminApp::new(
            metrics.clone(),
            upstreams.clone(),
            store,
            config.buffer.as_ref().map_or(0, |b| b.max_messages),
            store_writable,
            dedupe_claims,
            draining.clone(),
        ),
    );
    admin.threads = Some(1);
    admin.add_tcp(&config.admin_address.to_string());
    server.add_service(admin);

    let refresher = PeerRefresher::new(
        upstreams
            .iter()
            .map(|u| (u.clone(), metrics.resolve(&u.config.name)))
            .collect(),
        Arc::new(SystemResolver),
    );
    server.add_service(background_service("peer re-resolution", refresher));
    server.add_service(background_service(
        "circuit recovery",
        RecoveryWatch::new(upstreams.clone()),
    ));
    server.add_service(background_service(
        "public probe",
        PublicProbeService::new(live.clone(), metrics.public_probe()),
    ));
    let reloader = Reloader::new(
        config.source.clone(),
        text,
        live,
        upstreams.clone(),
        metrics.clone(),
    );
    server.add_service(background_service("config reload", reloader));

    if let Some(demo) = demo {
        let mut handler = Service::new(
            "demo handler".to_string(),
            DemoHandler::new(demo.identities),
        );
        handler.threads = Some(1);
        handler.add_tcp(&demo.address);
        server.add_service(handler);
    }
    // Last: with --upgrade this takes the listening sockets over from the running instance, and
    // with --test it exits here. Either way everything that could fail (store, TLS files,
    // upstreams) has been built and checked by now.
    if flags.test {
        // Pingora ends the process inside bootstrap() under --test: what was logged while
        // building (a hand-off file opened, a store unreachable) must be out first.
        crate::logging::flush(std::time::Duration::from_secs(2));
    }
    server.bootstrap();
    Ok(ProxyServer {
        server,
        watch: GraceWatch::new(config.server.grace_period, draining),
    })
}
