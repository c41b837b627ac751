//! Process lifecycle end to end: what a client sees while the proxy is being stopped.
//!
//! The real binary, a real handler, real signals. Kubernetes and load balancers keep sending for
//! a few seconds after SIGTERM, so the proxy must keep serving through `server.grace_period`.

mod harness;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use harness::*;

/// A proxy with a real grace period (the harness's default is none).
fn start_with_grace(upstream: SocketAddr, grace: &'static str) -> Proxy {
    let mut spec = ProxySpec::new(upstream);
    spec.grace_period = grace;
    Proxy::start(spec)
}

/// What one request of the background sender saw, and when it was sent.
struct Sent {
    at: Instant,
    status: Option<u16>,
}

#[test]
fn sigterm_keeps_serving_through_the_grace_period_then_exits() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let mut proxy = start_with_grace(upstream.addr, "2s");
    let (addr, admin) = (proxy.addr, proxy.admin);
    let grace = Duration::from_secs(2);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                // A new connection each time: a refused connect is what a client would see.
                let status = send_raw(addr, &twilio_request(&notification())).map(|r| r.status);
                sent.lock().unwrap().push(Sent { at, status });
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // SIGTERM once the sender is under way.
    let count = || sent.lock().unwrap().len();
    eventually("requests before SIGTERM", || count() >= 5);
    let term_at = Instant::now();
    proxy.signal("TERM");

    // Draining: /readyz tells the load balancer to move on, while the proxy still answers.
    let mut saw_draining = false;
    while term_at.elapsed() < grace / 2 {
        if let Some(r) = http_get(admin, "/readyz") {
            if r.status == 503 && r.json()["draining"] == true {
                saw_draining = true;
                break;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        saw_draining,
        "/readyz did not report draining after SIGTERM"
    );

    let exit = proxy.wait_exit(Duration::from_secs(30));
    let exited_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    assert!(exit.success(), "graceful exit: {exit:?}");
    assert!(
        exited_at.duration_since(term_at) >= grace,
        "the process left before its grace period ended"
    );

    // Every request sent after SIGTERM and well inside the grace period was answered 200.
    let margin = Duration::from_millis(500);
    let sent = sent.lock().unwrap();
    let during: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.at >= term_at && s.at + margin < term_at + grace)
        .collect();
    assert!(
        during.len() >= 10,
        "too few requests during the grace period to judge: {}",
        during.len()
    );
    let failed = during.iter().filter(|s| s.status != Some(200)).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests during the grace period were not answered 200",
        during.len()
    );
}
