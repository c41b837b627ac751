//! A sample Client Notification handler, for trying the proxy on a fresh machine.
//!
//! Answers like a real handler would: 200 when the `twi_to` identity has a push binding (here: a
//! fixed list of identities), 404 when it has none, 400 for a body that is not a notification.
//! It is a stand-in for the customer's handler and is never part of the request path: `demo`
//! runs it beside the proxy, `demo-handler` alone ([`standalone_server`]).

use std::collections::HashSet;
use std::net::SocketAddr;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::services::listening::Service;

pub struct DemoHandler {
    identities: HashSet<String>,
}

impl DemoHandler {
    pub fn new(identities: impl IntoIterator<Item = String>) -> Self {
        DemoHandler {
            identities: identities.into_iter().collect(),
        }
    }

    /// The status and JSON answer for one notification body.
    pub fn answer(&self, body: &[u8]) -> (StatusCode, serde_json::Value) {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "not a JSON notification"}),
            );
        };
        let to = value.get("twi_to").and_then(|v| v.as_str()).unwrap_or("");
        let identity = to.strip_prefix("client:").unwrap_or(to);
        if self.identities.contains(identity) {
            (StatusCode::OK, serde_json::json!({"dispatched": identity}))
        } else {
            (
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "no_binding", "identity": identity}),
            )
        }
    }
}

#[async_trait]
impl ServeHttp for DemoHandler {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            if body.len() + chunk.len() > 64 * 1024 {
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let (status, answer) = self.answer(&body);
        tracing::info!(status = status.as_u16(), answer = %answer, "demo handler");
        crate::admin::json(status, answer)
    }
}

/// A Pingora server running only the sample handler on `address`, until SIGTERM or SIGINT.
pub fn standalone_server(address: SocketAddr, identities: Vec<String>) -> Server {
    let conf = ServerConf {
        threads: 1,
        // Nothing to drain but tiny answers: stop promptly when the container is stopped.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    let mut handler = Service::new("demo handler".to_string(), DemoHandler::new(identities));
    handler.threads = Some(1);
    handler.add_tcp(&address.to_string());
    server.add_service(handler);
    server.bootstrap();
    server
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_identity_200_unknown_404() {
        let h = DemoHandler::new(["bob".to_string()]);
        assert_eq!(h.answer(br#"{"twi_to":"client:bob"}"#).0, StatusCode::OK);
        assert_eq!(
            h.answer(br#"{"twi_to":"client:carol"}"#).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(h.answer(b"nope").0, StatusCode::BAD_REQUEST);
    }
}
