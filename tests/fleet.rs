//! Several proxies, one PostgreSQL buffer, end to end: real proxy processes, a real PostgreSQL
//! (each test in its own schema), a real handler.
//!
//! - Failover: what one instance acknowledged is delivered by another after the first is
//!   killed with SIGKILL, each notification exactly once.
//! - Shared dedupe: one notification sent to two instances, at once or one after the other,
//!   is delivered once.
//! - Store outage: with PostgreSQL unreachable the proxy still forwards (dedupe degraded,
//!   counted, shown in `/readyz`); with the handler down too it answers `503 buffer_failed`;
//!   once PostgreSQL is back, buffering resumes.
//! - A hanging PostgreSQL never holds an answer past the time Twilio waits.
//! - The `buffer` command works on the running fleet's store.
//!
//! Without PostgreSQL these tests skip with a note, except under CI (`CI` set), where they fail.

mod harness;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use harness::*;

fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// How long the fleet's waits may take: 500 notifications through PostgreSQL on a busy CI
/// machine take longer than the harness's usual bound.
const FLEET_WAIT: Duration = Duration::from_secs(60);

#[track_caller]
fn eventually_fleet(what: &str, f: impl FnMut() -> bool) {
    eventually_within(what, FLEET_WAIT, f)
}

/// One statement on the test database, on a runtime of its own.
fn sql<T>(
    run: impl FnOnce(
        tokio_postgres::Client,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = postgres_url();
        let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
        let (client, connection) = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| "no answer within 5s".to_owned())?
            .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))?;
        tokio::spawn(connection);
        Ok(run(client).await)
    })
}

/// A schema of its own for one test, dropped afterwards.
struct Schema(String);

impl Schema {
    fn new(test: &str) -> Option<Schema> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        if let Err(why) = sql(|_| Box::pin(async {})) {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: PostgreSQL at 127.0.0.1:5432 is required under CI: {why}");
            }
            eprintln!("{test}: skipped, PostgreSQL is not reachable ({why})");
            return None;
        }
        Some(Schema(format!(
            "fleet_{test}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )))
    }

    /// Rows in one of the buffer's tables.
    fn count(&self, table: &str) -> i64 {
        let query = format!("SELECT count(*) FROM {}.{table}", self.0);
        sql(move |client| {
            Box::pin(async move {
                client
                    .query_one(&query, &[])
                    .await
                    .map(|row| row.get::<_, i64>(0))
            })
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("count {table}: {e}"))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let drop_schema = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0);
        let _ =
            sql(move |client| Box::pin(async move { client.batch_execute(&drop_schema).await }));
    }
}

/// A proxy whose route buffers after one failed attempt (the harness's buffering spec), on the
/// shared buffer in `schema` reached through `url`; its redelivery worker looks every 100 ms
/// and holds a lease for 9 s (the shortest the config allows over a 2 s `response_timeout` and
/// 3 s store calls).
fn fleet_spec(upstream: SocketAddr, schema: &Schema, url: &str) -> ProxySpec {
    let mut spec = buffering_spec_on(
        upstream,
        &format!(
            "  backend: postgres\n  url: {{ env: TNP_DATABASE_URL }}\n  schema: {}\n  \
             pool_size: 4\n  lease: 9s\n  store_timeout: 3s\n  redelivery_interval: 100ms\n  \
             redelivery_concurrency: 16\n  redelivery_backoff: {{ initial: 100ms, max: 300ms }}\n",
            schema.0
        ),
    );
    spec.route_extra =
        "    on_exhausted: buffer\n    retry: { max_attempts: 1, deadline: 2s }".into();
    spec.env.push(("TNP_DATABASE_URL".into(), url.into()));
    spec
}

#[test]
fn what_a_killed_instance_acknowledged_another_delivers_exactly_once() {
    let Some(schema) = Schema::new("failover") else {
        return;
    };
    // The handler is down: its port refuses connections until it comes back.
    let (held, handler_addr) = refusing_address();
    let a = Proxy::start(fleet_spec(handler_addr, &schema, &postgres_url()));
    let mut b = Proxy::start(fleet_spec(handler_addr, &schema, &postgres_url()));

    // 500 notifications through A, 8 senders at once: each acknowledged only once stored.
    let bodies: Vec<String> = (0..500).map(|_| notification()).collect();
    let acknowledged = Mutex::new(Vec::new());
    thread::scope(|s| {
        for chunk in bodies.chunks(500 / 8 + 1) {
            let (a, acknowledged) = (&a, &acknowledged);
            s.spawn(move || {
                for body in chunk {
                    let answer = a.send(&twilio_request(body));
                    assert_eq!(answer.status, 200, "{}", answer.text());
                    assert_eq!(answer.json()["buffered"], true, "{}", answer.text());
                    acknowledged.lock().unwrap().push(message_id(body));
                }
            });
        }
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    assert_eq!(acknowledged.len(), 500);
    assert_eq!(
        schema.count("pending"),
        500,
        "every acknowledged message is stored"
    );

    // The buffer command reads the running fleet's store (no file lock to wait for).
    let listed = Command::new(BIN)
        .args(["buffer", "--config"])
        .arg(&a.config_path)
        .args(["list", "--format", "json"])
        .env("TNP_DATABASE_URL", postgres_url())
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(500));

    // A dies mid-redelivery (its worker keeps claiming while the handler is down), then the
    // handler comes back: B delivers what A acknowledged, taking over A's leases.
    let mut a = a;
    a.kill();
    drop(held);
    let handler = MockUpstream::start_on(handler_addr, Behaviour::status(200, "ok"));
    eventually_fleet("B to deliver every acknowledged notification", || {
        handler.deliveries().len() == 500 && schema.count("pending") == 0
    });
    // The table is empty, so no lease running out can bring a message back; what could still
    // deliver one twice is an attempt in flight when it emptied, or a pass that claimed a
    // message already delivered. Let B's worker run a few more passes: nothing comes twice.
    b.wait_passes(5);
    let delivered = handler.deliveries();
    for id in &acknowledged {
        assert_eq!(delivered.get(id), Some(&1), "{id} delivered once");
    }
    assert_eq!(handler.request_count(), 500);
    assert_eq!(schema.count("dead_letter"), 0);
    let redelivered =
        b.metric(r#"notify_proxy_redeliveries_total{result="delivered",route="notify"}"#);
    assert_eq!(redelivered, 500.0, "B delivered them all");
    b.kill();
}

#[test]
fn one_notification_sent_to_two_instances_is_delivered_once() {
    let Some(schema) = Schema::new("dedupe") else {
        return;
    };
    let handler = MockUpstream::start(Behaviour::Slow {
        status: 200,
        delay: Duration::from_millis(500),
    });
    let a = Proxy::start(fleet_spec(handler.addr, &schema, &postgres_url()));
    let b = Proxy::start(fleet_spec(handler.addr, &schema, &postgres_url()));

    // At once: the copy that loses the claim waits for the other's answer.
    let body = notification();
    let request = twilio_request(&body);
    let (first, second) = thread::scope(|s| {
        let on_a = s.spawn(|| a.send(&request));
        let on_b = s.spawn(|| b.send(&request));
        (on_a.join().unwrap(), on_b.join().unwrap())
    });
    assert_eq!((first.status, second.status), (200, 200));
    let duplicates = [&first, &second]
        .iter()
        .filter(|r| r.text().contains(r#""duplicate":true"#))
        .count();
    assert_eq!(duplicates, 1, "{} / {}", first.text(), second.text());
    assert_eq!(handler.request_count(), 1);

    // One after the other, with a fresh idempotency token (the signed message id matches).
    for proxy in [&a, &b] {
        let answer = proxy.send(&twilio_request(&body));
        assert_eq!(answer.status, 200);
        assert!(
            answer.text().contains(r#""original":"delivered""#),
            "{}",
            answer.text()
        );
    }
    assert_eq!(handler.request_count(), 1);
    let counted = a
        .metric(r#"notify_proxy_deduplicated_total{original="delivered",route="notify"}"#)
        + b.metric(r#"notify_proxy_deduplicated_total{original="delivered",route="notify"}"#);
    assert_eq!(counted, 3.0);
}

/// A TCP relay to PostgreSQL that a test can cut (new connections refused, open ones reset)
/// and restore: from the proxy's side, PostgreSQL stopped and came back.
struct Relay {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Connections are accepted and then never answered (a PostgreSQL that hangs).
    stalled: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    listener: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Relay {
    fn start() -> Relay {
        // A port can be taken between probing and binding: try others, as the harness does.
        let listener = (0..20)
            .find_map(|_| TcpListener::bind(("127.0.0.1", free_port())).ok())
            .expect("a port for the relay");
        let addr = listener.local_addr().unwrap();
        let relay = Relay {
            addr,
            open: Arc::new(AtomicBool::new(false)),
            stalled: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
            listener: Mutex::new(None),
        };
        relay.serve(listener);
        relay
    }

    fn url(&self) -> String {
        format!("postgres://postgres@{}/test", self.addr)
    }

    fn restore(&self) {
        self.serve(TcpListener::bind(self.addr).expect("relay port"));
    }

    fn serve(&self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        self.open.store(true, Ordering::SeqCst);
        let (open, conns, stalled) = (self.open.clone(), self.conns.clone(), self.stalled.clone());
        let upstream: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        *self.listener.lock().unwrap() = Some(thread::spawn(move || {
            while open.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) if stalled.load(Ordering::SeqCst) => {
                        // Held open, never answered: the proxy's connect hangs.
                        conns.lock().unwrap().push(client);
                    }
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        let mut all = conns.lock().unwrap();
                        all.push(client.try_clone().unwrap());
                        all.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener drops here: new connections are refused.
        }));
    }

    /// PostgreSQL hangs: open connections are cut, new ones accepted and never answered.
    fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        if let Some(t) = self.listener.lock().unwrap().take() {
            t.join().unwrap();
        }
        for conn in self.conns.lock().unwrap().drain(..) {
            let _ = conn.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[test]
fn with_postgres_unreachable_the_proxy_forwards_refuses_to_buffer_and_recovers() {
    let Some(schema) = Schema::new("outage") else {
        return;
    };
    let relay = Relay::start();
    let handler = MockUpstream::start(Behaviour::status(200, "ok"));
    let proxy = Proxy::start(fleet_spec(handler.addr, &schema, &relay.url()));
    let answer = proxy.send(&twilio_request(&notification()));
    assert_eq!(answer.status, 200, "{}", answer.text());

    relay.cut();
    // Handler up: every notification is forwarded, none is refused.
    for _ in 0..20 {
        let answer = proxy.send(&twilio_request(&notification()));
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.header("X-Handler"), Some("mock"));
    }
    assert_eq!(handler.request_count(), 21);
    assert!(proxy.metric("notify_proxy_dedupe_unavailable_total") >= 1.0);
    let ready = http_get(proxy.admin, "/readyz").unwrap();
    assert_eq!(ready.status, 200, "the handler still takes notifications");
    assert_eq!(ready.json()["dedupe"], "degraded", "{}", ready.text());

    // Handler down too: nothing can be stored, so nothing is acknowledged.
    handler.set_behaviour(Behaviour::status(503, "down"));
    for _ in 0..5 {
        let answer = proxy.send(&twilio_request(&notification()));
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert_eq!(answer.reason(), "buffer_failed");
    }
    assert!(proxy.metric(r#"notify_proxy_buffer_store_errors_total{operation="insert"}"#) >= 5.0);

    // PostgreSQL is back: buffering resumes, and the handler gets the message once it is up.
    relay.restore();
    let mut buffered = None;
    eventually_fleet("buffering to resume", || {
        let body = notification();
        let answer = proxy.send(&twilio_request(&body));
        let stored = answer.status == 200 && answer.json()["buffered"] == true;
        if stored {
            buffered = Some(body);
        }
        stored
    });
    let body = buffered.unwrap();
    assert_eq!(schema.count("pending"), 1);
    handler.set_behaviour(Behaviour::status(200, "ok"));
    eventually_fleet("the buffered message to be delivered", || {
        schema.count("pending") == 0
    });
    // The live attempt and any redelivery while the handler answered 503, then one 200.
    assert!(
        handler
            .deliveries()
            .get(&message_id(&body))
            .copied()
            .unwrap_or(0)
            >= 2,
        "the live attempt and the redelivery"
    );
    assert_eq!(
        handler
            .requests()
            .last()
            .map(|r| String::from_utf8_lossy(r).contains(&message_id(&body))),
        Some(true),
        "the last request the handler took (answered 200) is that message"
    );
    eventually_fleet("dedupe to recover", || {
        proxy.send(&twilio_request(&notification()));
        http_get(proxy.admin, "/readyz").unwrap().json()["dedupe"] == "ok"
    });
}

/// Twilio waits 15 s. With the handler down and PostgreSQL hanging (connections accepted, never
/// answered), every store call ends at `buffer.store_timeout`, so the answer (503, nothing
/// claimed) comes within the route's deadline plus two store calls, as the config check promises.
#[test]
fn a_hanging_postgres_never_holds_the_answer_past_the_budget() {
    let Some(schema) = Schema::new("hang") else {
        return;
    };
    let relay = Relay::start();
    let (_held, refusing) = refusing_address();
    let mut spec = fleet_spec(refusing, &schema, &relay.url());
    spec.top_extra = spec
        .top_extra
        .replace("store_timeout: 3s", "store_timeout: 1s");
    spec.route_extra =
        "    on_exhausted: buffer\n    retry: { max_attempts: 2, deadline: 2s }".into();
    let proxy = Proxy::start(spec);
    let answer = proxy.send(&twilio_request(&notification()));
    assert_eq!(answer.json()["buffered"], true, "{}", answer.text());

    relay.stall();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let answer = proxy.send(&twilio_request(&notification()));
        let took = started.elapsed();
        assert_eq!(
            (answer.status, answer.reason().as_str()),
            (503, "buffer_failed"),
            "{}",
            answer.text()
        );
        // deadline 2 s + a quarter second + 2 × store_timeout 1 s = 4.25 s, as the config check
        // adds it up; a store call left unbounded would blow well past this.
        assert!(took < Duration::from_secs(8), "answered after {took:?}");
    }
    assert_eq!(schema.count("pending"), 1, "nothing stored while it hung");
}

/// The `buffer` commands on a running fleet's store: show a message, replay it to the handler
/// (removed once delivered), and say so when an id is not there.
#[test]
fn buffer_commands_work_on_a_running_fleet() {
    let Some(schema) = Schema::new("cli") else {
        return;
    };
    let (held, handler_addr) = refusing_address();
    let mut spec = fleet_spec(handler_addr, &schema, &postgres_url());
    // The proxy's own worker must not deliver it first: it looks once an hour here.
    spec.top_extra = spec
        .top_extra
        .replace("redelivery_interval: 100ms", "redelivery_interval: 1h");
    let proxy = Proxy::start(spec);
    let body = notification();
    let answer = proxy.send(&twilio_request(&body));
    let id = answer.json()["id"].as_u64().expect("a buffered id");
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["buffer", "--config"])
            .arg(&proxy.config_path)
            .args(args)
            .env("TNP_DATABASE_URL", postgres_url())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, shown, err) = cli(&["show", &id.to_string()]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["table"], "pending");
    assert!(shown["request"].as_str().unwrap().ends_with(&body));

    drop(held);
    let handler = MockUpstream::start_on(handler_addr, Behaviour::status(200, "ok"));
    let (ok, out, err) = cli(&["replay", &id.to_string()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("delivered"), "{out}");
    assert_eq!(handler.deliveries().get(&message_id(&body)), Some(&1));
    assert_eq!(schema.count("pending"), 0, "removed once delivered");
    let (ok, _, err) = cli(&["remove", &id.to_string()]);
    assert!(
        !ok && err.contains(&format!("no buffered message with id {id}")),
        "{err}"
    );
}

/// At start, a database that refuses the configured role is a configuration to fix (the start
/// stops and says which key), while one that is not there is an outage to ride out (the proxy
/// starts and forwards).
#[test]
fn a_refusing_database_stops_the_start_and_an_absent_one_does_not() {
    let Some(schema) = Schema::new("start") else {
        return;
    };
    let (_held, refusing) = refusing_address();
    let spec = fleet_spec(refusing, &schema, &postgres_url());
    let proxy = Proxy::start(spec);
    let check = |url: &str| {
        Command::new(BIN)
            .args(["run", "--test", "--config"])
            .arg(&proxy.config_path)
            .env("TNP_TOKEN", TOKEN)
            .env("TNP_DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let no_role = postgres_url().replace("postgres@", "no_such_role_tnp@");
    let out = check(&no_role);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("buffer.url: the PostgreSQL server refused"),
        "{err}"
    );
    let nobody = format!("postgres://postgres@{refusing}/test");
    let out = check(&nobody);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("PostgreSQL is unreachable at start"), "{err}");
}

/// Sends `n` notifications to `proxy` at once, each answered `buffered`; their message ids.
fn buffer_at_once(proxy: &Proxy, n: usize) -> Vec<String> {
    let bodies: Vec<String> = (0..n).map(|_| notification()).collect();
    thread::scope(|s| {
        for body in &bodies {
            s.spawn(move || {
                let answer = proxy.send(&twilio_request(body));
                assert_eq!(answer.json()["buffered"], true, "{}", answer.text());
            });
        }
    });
    bodies.iter().map(message_id).collect()
}

/// How an instance holding claims stops answering for itself.
#[derive(Clone, Copy, PartialEq)]
enum Loss {
    Killed,
    Frozen,
}

/// An instance holding claims mid-redelivery (its attempts hang at the handler) is SIGKILLed
/// or SIGSTOPped; the handler answers again at that moment. Another instance delivers every
/// message within seconds, although the lease is 30 s: the claims died with their owner's
/// heartbeat (3 s), not with the lease. Each message reaches the handler once, and the frozen
/// instance, once resumed, neither delivers nor removes what it lost.
fn claims_are_taken_over_in_seconds(loss: Loss) {
    let Some(schema) = Schema::new(if loss == Loss::Killed {
        "takeover_kill"
    } else {
        "takeover_stop"
    }) else {
        return;
    };
    let handler = MockUpstream::start(Behaviour::Hang);
    let spec = || {
        let mut spec = fleet_spec(handler.addr, &schema, &postgres_url());
        spec.top_extra = spec.top_extra.replace("lease: 9s", "lease: 30s");
        spec.response_timeout = "20s";
        spec
    };
    let mut a = Proxy::start(spec());
    let acknowledged = buffer_at_once(&a, 20);
    // A's worker claims 16 (its concurrency) and waits on the handler for up to 20 s.
    eventually("A holds claims", || {
        schema.count("pending WHERE claimed_by IS NOT NULL") == 16
    });
    // The 20 live attempts and A's 16 claimed redeliveries all reached the handler (and hang):
    // one still on its way when the handler turns healthy would be answered, and A, killed
    // before removing it, would have delivered it once already (at-least-once, not this test).
    eventually("A's claimed redeliveries at the handler", || {
        handler.request_count() >= 36
    });
    handler.set_behaviour(Behaviour::status(200, "ok"));
    // What reached the handler so far was never answered (the live attempts, A's claims).
    let hung = handler.request_count();
    let answered = || {
        let mut seen = std::collections::HashMap::new();
        for request in handler.requests().iter().skip(hung) {
            *seen.entry(message_id(request)).or_insert(0) += 1;
        }
        seen
    };
    let lost_at = std::time::Instant::now();
    match loss {
        Loss::Killed => a.kill(),
        Loss::Frozen => a.signal("STOP"),
    }
    let b = Proxy::start(spec());
    eventually_within("B to deliver all 20", Duration::from_secs(28), || {
        answered().len() == 20 && schema.count("pending") == 0
    });
    let took = lost_at.elapsed();
    eprintln!(
        "claims of a lost instance: all 20 delivered {took:?} after the loss (B started after it)"
    );
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}: the lease (30 s), not the heartbeat, freed the claims"
    );
    assert_eq!(
        b.metric("notify_proxy_buffer_lease_takeovers_total"),
        16.0,
        "A's claims, taken over"
    );
    if loss == Loss::Frozen {
        a.signal("CONT");
        // A's hung attempts end with its 20 s timeout at the latest; then it records nothing.
        thread::sleep(Duration::from_secs(1));
    }
    let delivered = answered();
    for id in &acknowledged {
        assert_eq!(delivered.get(id), Some(&1), "{id} delivered once");
    }
    assert_eq!(schema.count("dead_letter"), 0);
}

#[test]
fn a_killed_instances_claims_are_taken_over_in_seconds_not_a_lease() {
    claims_are_taken_over_in_seconds(Loss::Killed);
}

#[test]
fn a_frozen_instances_claims_are_taken_over_in_seconds_not_a_lease() {
    claims_are_taken_over_in_seconds(Loss::Frozen);
}

/// Twilio's 13807 for a call can land on another instance than the call's notification did:
/// the answer is found through the shared record, and an event sent to two instances is
/// counted once by the fleet.
#[test]
fn a_13807_landing_on_another_instance_is_reconciled_with_the_first_ones_answer() {
    use harness::events::*;
    let Some(schema) = Schema::new("errors") else {
        return;
    };
    let handler = MockUpstream::start(Behaviour::status(500, "{}"));
    let start = || {
        let mut spec = fleet_spec(handler.addr, &schema, &postgres_url());
        // Policy fail: the notification is answered 502, not buffered.
        spec.route_extra = format!(
            "    retry: {{ max_attempts: 1, deadline: 2s }}{}",
            errors_route()
        );
        spec.capture_stderr = true;
        spec.env.push(("RUST_LOG".into(), "warn".into()));
        Proxy::start(spec)
    };
    let (a, b) = (start(), start());
    let seen = |proxy: &Proxy, seen: &str| {
        proxy.metric(&format!(
            "notify_proxy_twilio_13807_total{{seen=\"{seen}\"}}"
        ))
    };

    let call = sid("CA");
    assert_refused(
        &a.send(&twilio_request(&notification_for(&call))),
        502,
        "upstream_5xx",
    );
    let r = b.send(&debugger_request(&debugger_error(
        &sid("NO"),
        "13807",
        Some(&call),
    )));
    assert_eq!(r.status, 200, "{}", r.text());
    eventually_fleet("B reconciles the 13807 with A's answer", || {
        seen(&b, "answered_error") == 1.0
    });
    let line = b
        .log_lines()
        .into_iter()
        .find(|l| l.contains("Twilio logged 13807") && l.contains(&call))
        .expect("B's line for the call");
    assert!(
        line.contains("proxy_outcome=\"upstream_5xx\"")
            && line.contains(&format!(":{}\"", a.pid())),
        "B names A's answer and A as the instance: {line}"
    );
    for label in ["answered_error", "answered_ok", "not_seen", "unknown"] {
        assert_eq!(seen(&a, label), 0.0, "A reconciled nothing ({label})");
    }
    // A call neither instance saw is not_seen on either.
    let r = a.send(&debugger_request(&debugger_error(
        &sid("NO"),
        "13807",
        Some(&sid("CA")),
    )));
    assert_eq!(r.status, 200);
    eventually_fleet("A finds no answer anywhere", || seen(&a, "not_seen") == 1.0);

    // One event, delivered to both (Twilio's retry through the load balancer): counted once.
    let form = debugger_error(&sid("NO"), "11200", Some(&call));
    for proxy in [&a, &b] {
        assert_eq!(proxy.send(&debugger_request(&form)).status, 200);
    }
    let metric = |p: &Proxy, m: &str| p.metric(m);
    eventually_fleet("the copy counted as a duplicate", || {
        let duplicate = "notify_proxy_twilio_events_total{result=\"duplicate\"}";
        metric(&a, duplicate) + metric(&b, duplicate) == 1.0
    });
    let counted = "notify_proxy_twilio_errors_total{error_code=\"11200\"}";
    assert_eq!(metric(&a, counted) + metric(&b, counted), 1.0);
    assert_eq!(schema.count("twilio_events"), 3);
    assert!(schema.count("call_answers") >= 1);
}
