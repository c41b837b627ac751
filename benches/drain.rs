//! Redelivery drain of a shared PostgreSQL buffer: 10,000 buffered notifications, the handler
//! back up, one proxy instance against two, until the buffer is empty. Each message must reach
//! the handler exactly once (checked, not assumed).
//!
//! Run: `cargo bench --bench drain` (optional: `DRAIN_MESSAGES=10000`, `STORE_BENCH_PG_URL=...`,
//! default `postgres://postgres@127.0.0.1:5432/test`). The proxies are the real binary with the
//! shipped redelivery defaults (every 250 ms, 8 at once); the handler is a minimal in-process
//! HTTP/1.1 server answering 200 at once, so the drain is bounded by the proxy and the store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use twilio_notify_proxy::buffer::{
    NewMessage, NotificationStore, PgOptions, PgPool, PostgresStore,
};

#[path = "support/mod.rs"]
mod support;

const BIN: &str = env!("CARGO_BIN_EXE_twilio-notify-proxy");

fn url() -> String {
    std::env::var("STORE_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One buffered notification as the live path stores it (a request with its own message id).
fn buffered(i: usize) -> (NewMessage, Vec<u8>) {
    let id = format!("WB{i:032}");
    let body = format!(r#"{{"twi_message_id":"{id}","twi_to":"client:bob"}}"#);
    let request = format!(
        "POST /twilio/client-notify HTTP/1.1\r\nHost: voice.example.com\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut message = support::message(&id);
    message.call_sid = None;
    (message, request.into_bytes())
}

/// Answers every request 200 and counts each `twi_message_id` it receives.
async fn handler(listener: tokio::net::TcpListener, seen: Arc<Mutex<HashMap<String, u32>>>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            let mut chunk = [0u8; 4096];
            loop {
                // One request: the head, then Content-Length bytes.
                let (head_len, body_len) = loop {
                    let mut headers = [httparse::EMPTY_HEADER; 32];
                    let mut req = httparse::Request::new(&mut headers);
                    if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                        let len = req
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                            .unwrap_or(0usize);
                        break (n, len);
                    }
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                while buf.len() < head_len + body_len {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]);
                if let Some(id) = body
                    .split("\"twi_message_id\":\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                {
                    *seen.lock().unwrap().entry(id.to_owned()).or_insert(0) += 1;
                }
                buf.drain(..head_len + body_len);
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                if conn.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

struct Instance(Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_proxy(dir: &std::path::Path, n: usize, schema: &str, handler: SocketAddr) -> Instance {
    let config = dir.join(format!("proxy-{n}.yaml"));
    std::fs::write(
        &config,
        format!(
            "server: {{ threads: 1, grace_period: 0s }}
listeners: [{{ address: 127.0.0.1:{} }}]
admin: {{ address: 127.0.0.1:{} }}
secrets: {{ auth_token: {{ env: TNP_TOKEN }} }}
upstreams:
  handler: {{ peers: [{handler}] }}
routes:
  - name: notify
    public_url: https://voice.example.com/twilio/client-notify
    upstream: handler
    body: json
    on_exhausted: buffer
    buffer_ttl: 10m
buffer:
  backend: postgres
  url: {{ env: TNP_DATABASE_URL }}
  schema: {schema}
logging: {{ level: warn, access_log: false }}
",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("TNP_TOKEN", "bench-token")
        .env("TNP_DATABASE_URL", url())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the proxy");
    Instance(child)
}

async fn pending(pool: &tokio_postgres::Client, schema: &str) -> i64 {
    pool.query_one(&format!("SELECT count(*) FROM {schema}.pending"), &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

async fn drain(messages: usize, instances: usize) -> Option<(Duration, usize)> {
    let schema = format!("drain_bench_{}_{instances}", std::process::id());
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .map_err(|e| eprintln!("PostgreSQL is not reachable ({e}): skipped"))
        .ok()?;
    tokio::spawn(connection);
    let pool = PgPool::new(&PgOptions {
        url: url(),
        schema: schema.clone(),
        pool_size: 8,
        call_timeout: Duration::from_secs(30),
    })
    .unwrap();
    let store = Arc::new(PostgresStore::new(
        pool,
        u64::MAX,
        Duration::from_secs(10),
        "drain-bench",
    ));
    // Buffered as the live path buffers them: many at once, committed in groups.
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in (t..messages).step_by(32) {
                let (m, r) = buffered(i);
                store.insert(m, r).await.expect("insert");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    assert_eq!(pending(&client, &schema).await, messages as i64);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handler_addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    tokio::spawn(handler(listener, seen.clone()));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let _proxies: Vec<Instance> = (0..instances)
        .map(|n| start_proxy(dir.path(), n, &schema, handler_addr))
        .collect();
    while pending(&client, &schema).await != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "drain stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let seen = seen.lock().unwrap().clone();
    let twice = seen.values().filter(|n| **n > 1).count();
    assert_eq!(seen.len(), messages, "every message reached the handler");
    assert_eq!(twice, 0, "a message was delivered twice");
    let _ = client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await;
    Some((elapsed, twice))
}

fn main() {
    let messages: usize = std::env::var("DRAIN_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for instances in [1, 2] {
        let Some((elapsed, twice)) = runtime.block_on(drain(messages, instances)) else {
            return;
        };
        println!(
            "drain {messages} messages, {instances} instance(s): {:.2} s ({:.0} messages/s, from start \
             to empty buffer), delivered twice: {twice}",
            elapsed.as_secs_f64(),
            messages as f64 / elapsed.as_secs_f64()
        );
    }
}
