//! Re-resolution with an injected resolver whose answer changes, against real sockets.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::metrics::Metrics;

/// Answers whatever it was last told to.
struct Scripted(Mutex<std::io::Result<Vec<SocketAddr>>>);

impl Scripted {
    fn answer(&self, answer: std::io::Result<Vec<SocketAddr>>) {
        *self.0.lock().unwrap() = answer;
    }
}

#[async_trait]
impl Resolve for Scripted {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        assert_eq!((host, port), ("handler.internal", 8080));
        match &*self.0.lock().unwrap() {
            Ok(addrs) => Ok(addrs.clone()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

fn name_peer(addrs: Vec<SocketAddr>) -> ResolvedPeer {
    ResolvedPeer {
        spec: PeerSpec::Name {
            host: "handler.internal".into(),
            port: 8080,
        },
        addrs,
    }
}

#[tokio::test]
async fn a_failed_or_empty_answer_keeps_the_last_good_addresses() {
    let a: SocketAddr = "10.0.0.1:8080".parse().unwrap();
    let b: SocketAddr = "10.0.0.2:8080".parse().unwrap();
    let fixed = ResolvedPeer {
        spec: PeerSpec::Addr("10.0.0.9:80".parse().unwrap()),
        addrs: vec!["10.0.0.9:80".parse().unwrap()],
    };
    let resolver = Scripted(Mutex::new(Ok(vec![b, a, b])));
    let peers = vec![name_peer(vec![a]), fixed.clone()];

    let round = resolve_round(&resolver, &peers).await;
    assert_eq!(round.peers, vec![name_peer(vec![a, b]), fixed.clone()]);
    assert!(round.failures.is_empty());

    resolver.answer(Err(std::io::Error::other("SERVFAIL")));
    let round = resolve_round(&resolver, &peers).await;
    assert_eq!(round.peers, peers);
    assert_eq!(round.failures.len(), 1);
    assert!(
        round.failures[0].1.contains("SERVFAIL"),
        "{:?}",
        round.failures
    );

    resolver.answer(Ok(vec![]));
    let round = resolve_round(&resolver, &peers).await;
    assert_eq!(round.peers, peers);
    assert_eq!(round.failures[0].1, "no address");
}

/// A handler answering `200` with `name` as its body, to every request on every connection.
async fn handler(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn group_of(peer: ResolvedPeer) -> UpstreamGroup {
    crate::delivery::tests::group_of(vec![peer])
}

const REQUEST: &[u8] = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}";

async fn answered_by(group: &UpstreamGroup) -> String {
    let answer = group.deliver_once(REQUEST, None, None).await.unwrap();
    String::from_utf8(answer.answer.body.to_vec()).unwrap()
}

#[tokio::test]
async fn a_moved_handler_is_found_again_and_a_dns_outage_keeps_it() {
    let old = handler("old").await;
    let new = handler("new").await;
    let resolver = Scripted(Mutex::new(Ok(vec![old])));
    let group = group_of(name_peer(vec![old]));
    let metrics = Metrics::new();
    let counted = metrics.resolve("g");
    assert_eq!(answered_by(&group).await, "old");

    // Same answer: nothing changes, nothing is counted.
    assert!(!refresh(&group, &resolver, &counted).await);
    assert_eq!(counted.changes.get(), 0);

    // The name now points at the new handler: requests follow it.
    resolver.answer(Ok(vec![new]));
    assert!(refresh(&group, &resolver, &counted).await);
    assert_eq!(counted.changes.get(), 1);
    assert_eq!(group.peer_addrs(), vec![new]);
    for _ in 0..3 {
        assert_eq!(answered_by(&group).await, "new");
    }

    // DNS fails: the last good address stays and keeps serving.
    resolver.answer(Err(std::io::Error::other("timed out")));
    assert!(!refresh(&group, &resolver, &counted).await);
    assert_eq!(counted.failures.get(), 1);
    assert_eq!(counted.changes.get(), 1);
    assert_eq!(answered_by(&group).await, "new");
}
