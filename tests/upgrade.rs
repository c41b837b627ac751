//! `run --upgrade` with the redb buffer, end to end: the real binary twice (old and new), a
//! real SIGQUIT, Pingora's socket hand-over, and a sender running throughout.
//!
//! The old process holds the buffer's file lock while it drains, so the new one buffers into a
//! hand-off file and adopts it once the old one exited. The bar: no failed request, and every
//! acknowledged notification reaches the handler exactly once, whether the handler comes back
//! before the hand-off file is adopted (the new process redelivers from it) or after.

mod harness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use harness::*;

/// Hand-off ids start here (see `buffer::handoff::HANDOFF_ID_BASE`).
const HANDOFF_ID_BASE: u64 = 1 << 52;

/// The config of both processes: one attempt, then buffer; the worker looks every 50 ms. The
/// breaker never opens, so the worker retries as soon as the handler is back.
fn config(ports: &Ports, handler: SocketAddr, store: &Path, upgrade_sock: &Path) -> String {
    format!(
        r#"server:
  threads: 1
  grace_period: 0s
  graceful_shutdown_timeout: 1s
  upgrade_sock: {sock}
listeners:
  - address: 127.0.0.1:{port}
admin:
  address: 127.0.0.1:{admin_port}
secrets:
  auth_token: {{ env: TNP_TOKEN }}
buffer:
  path: {store}
  redelivery_interval: 50ms
  redelivery_backoff: {{ initial: 50ms, max: 200ms }}
upstreams:
  handler:
    peers: [{handler}]
    connect_timeout: 1s
    response_timeout: 2s
    circuit_breaker: {{ failure_threshold: 1000000 }}
routes:
  - name: notify
    path: {PATH}
    public_url: {PUBLIC_URL}
    upstream: handler
    body: json
    schema: {SCHEMA}
    on_exhausted: buffer
    retry: {{ max_attempts: 1 }}
"#,
        port = ports.public,
        admin_port = ports.admin,
        sock = upgrade_sock.display(),
        store = store.display(),
    )
}

/// The new process: `run --upgrade` on the running one's config. It binds no port (it is
/// handed the old one's listening sockets), so there is no port to lose and no retry.
fn spawn_upgrade(old: &Proxy) -> ChildGuard {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--upgrade", "--config"])
        .arg(&old.config_path)
        .env("TNP_TOKEN", TOKEN)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null());
    ChildGuard::spawn(&mut cmd)
}

fn handoff_files(store: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}.handoff-", store.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(store.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".redb")
        })
        .collect()
}

/// What the sender saw for one notification.
#[derive(Debug, Clone)]
struct Sent {
    message_id: String,
    status: Option<u16>,
    /// The buffer id when the answer said "buffered".
    buffered_as: Option<u64>,
}

/// Sends a fresh notification on a new connection every 10 ms until stopped.
fn start_sender(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> (thread::JoinHandle<()>, Arc<Mutex<Vec<Sent>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    let handle = thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let body = notification();
            let answer = send_raw(addr, &twilio_request(&body));
            let buffered_as = answer.as_ref().and_then(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
                (v["buffered"] == true).then(|| v["id"].as_u64()).flatten()
            });
            log.lock().unwrap().push(Sent {
                message_id: message_id(&body),
                status: answer.map(|r| r.status),
                buffered_as,
            });
            thread::sleep(Duration::from_millis(10));
        }
    });
    (handle, sent)
}

#[derive(Clone, Copy, PartialEq)]
enum HandlerBack {
    /// While the old process still drains: the new one redelivers from its hand-off file.
    BeforeAdoption,
    /// After the new process adopted the hand-off file into the main one.
    AfterAdoption,
}

fn upgrade_under_load(back: HandlerBack) {
    // The handler is down (its port refuses) until it "comes back" on the same address.
    let (refusing, handler_addr) = refusing_address();
    let mut refusing = Some(refusing);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("buffer.redb");
    let upgrade_sock = dir.path().join("upgrade.sock");
    let mut old = Proxy::launch(&Launch::run(), |ports| {
        config(ports, handler_addr, &store, &upgrade_sock)
    });
    let admin = old.admin;

    let stop = Arc::new(AtomicBool::new(false));
    let (sender, sent) = start_sender(old.addr, stop.clone());
    let buffered = |sent: &Mutex<Vec<Sent>>, handoff: bool| {
        sent.lock()
            .unwrap()
            .iter()
            .filter(|s| {
                s.buffered_as
                    .is_some_and(|id| (id >= HANDOFF_ID_BASE) == handoff)
            })
            .count()
    };
    eventually_within("the old process to buffer", Duration::from_secs(10), || {
        buffered(&sent, false) >= 5
    });

    // The new process finds the main file locked: it buffers into a hand-off file, then waits
    // on the upgrade socket for the old one's listeners.
    let _new = spawn_upgrade(&old);
    eventually_within(
        "a hand-off file and the upgrade socket",
        Duration::from_secs(10),
        || !handoff_files(&store).is_empty() && upgrade_sock.exists(),
    );
    old.signal("QUIT");

    // The new process is serving (Pingora lets both accept for 5 s, then the old one drains).
    eventually_within(
        "the new process to buffer into its hand-off file",
        Duration::from_secs(15),
        || buffered(&sent, true) >= 3,
    );
    let mut handler = None;
    if back == HandlerBack::BeforeAdoption {
        drop(refusing.take());
        handler = Some(MockUpstream::start_on(
            handler_addr,
            Behaviour::status(200, "ok"),
        ));
        let upstream = handler.as_ref().unwrap();
        let handoff_ids: Vec<String> = sent
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.buffered_as.is_some_and(|id| id >= HANDOFF_ID_BASE))
            .map(|s| s.message_id.clone())
            .collect();
        eventually_within(
            "redelivery from the hand-off file",
            Duration::from_secs(10),
            || {
                let got: Vec<String> = upstream.requests().iter().map(message_id).collect();
                handoff_ids.iter().all(|id| got.contains(id))
            },
        );
        assert!(
            !old.exited(),
            "the old process exited before the check: the test no longer shows redelivery \
             before adoption"
        );
    }
    old.wait_exit(Duration::from_secs(20));
    eventually_within(
        "the hand-off file to be adopted",
        Duration::from_secs(10),
        || handoff_files(&store).is_empty(),
    );
    // A little more traffic on the new process alone, into the main file.
    let total = sent.lock().unwrap().len();
    eventually_within("more requests", Duration::from_secs(10), || {
        sent.lock().unwrap().len() >= total + 20
    });
    let handler = handler.unwrap_or_else(|| {
        drop(refusing.take());
        MockUpstream::start_on(handler_addr, Behaviour::status(200, "ok"))
    });
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let sent = sent.lock().unwrap().clone();

    let failed: Vec<&Sent> = sent.iter().filter(|s| s.status != Some(200)).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        sent.len()
    );
    eventually_within(
        "every notification at the handler",
        Duration::from_secs(30),
        || handler.request_count() >= sent.len(),
    );
    // Nothing left to redeliver, so no later copy can arrive.
    eventually_within("the buffer to drain", Duration::from_secs(10), || {
        http_get(admin, "/metrics").is_some_and(|m| {
            m.text()
                .contains("notify_proxy_buffer_messages{table=\"pending\"} 0\n")
        })
    });
    let seen = handler.deliveries();
    let wrong: Vec<(&str, usize)> = sent
        .iter()
        .map(|s| {
            (
                s.message_id.as_str(),
                seen.get(&s.message_id).copied().unwrap_or(0),
            )
        })
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(wrong.is_empty(), "not delivered exactly once: {wrong:?}");
    assert_eq!(
        seen.len(),
        sent.len(),
        "the handler got notifications nobody sent"
    );
    let (old_buffered, new_buffered) = (
        sent.iter()
            .filter(|s| s.buffered_as.is_some_and(|id| id < HANDOFF_ID_BASE))
            .count(),
        sent.iter()
            .filter(|s| s.buffered_as.is_some_and(|id| id >= HANDOFF_ID_BASE))
            .count(),
    );
    eprintln!(
        "{} requests: {old_buffered} buffered in the main file, {new_buffered} in the hand-off file",
        sent.len()
    );
}

#[test]
fn upgrade_with_redb_buffer_handler_back_after_adoption() {
    upgrade_under_load(HandlerBack::AfterAdoption);
}

#[test]
fn upgrade_with_redb_buffer_handler_back_before_adoption() {
    upgrade_under_load(HandlerBack::BeforeAdoption);
}
