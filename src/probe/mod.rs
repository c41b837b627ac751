//! Probes: synthetic notifications sent through the real public path (DNS, TLS, load balancer,
//! proxy) to check that URL, token and schema line up, by `twilio-notify-proxy probe` and by the
//! proxy itself (`probe.public`, see `public_probe`).
//!
//! This module owns the marker and what the edge does with a marked request. A probe is signed
//! like any notification and carries two markers Twilio never sends: the header [`HEADER`] and
//! the body field [`FIELD`] (covered by the signature through `bodySHA256`, so it cannot be
//! added to, or removed from, a real notification in transit). The edge runs every check first,
//! then: a probe in mode `answer` is answered by the proxy itself under the outcome `probe` and
//! never reaches the handler; mode `through` is forwarded like a notification, only for the
//! test identity of `probe.identity`, so no real user's device rings. On a signature mismatch a
//! marked request learns which URL the proxy verified against (the public URL, no secret),
//! which tells a wrong URL from a wrong token. This file is pure: no I/O.
//!
//! The sending side, shared by the command and the proxy's own probe: [`client`] runs one
//! probe as the [`Step`]s below (the only I/O here, with `wire`: DNS, TCP, TLS, one HTTP/1.1
//! exchange), and [`answer`] judges what came back (pure).

pub mod answer;
pub mod client;
mod wire;

use serde_json::Value;

use crate::outcome::{Reason, Rejection};

/// The header marking a probe (its value is ignored).
pub const HEADER: &str = "x-notify-proxy-probe";
/// The body field marking a probe; its value is the [`Mode`].
pub const FIELD: &str = "notify_proxy_probe";

/// The steps of one probe, in order; each has its own duration and can be the one that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Resolving the URL's host (skipped for an IP address or a `connect` address).
    Dns,
    /// The TCP connection.
    Connect,
    /// The TLS handshake, the served certificate verified (skipped for plain http).
    Tls,
    /// Sending the probe and judging the answer: the proxy's verdict.
    Answer,
}

impl Step {
    pub const ALL: [Step; 4] = [Step::Dns, Step::Connect, Step::Tls, Step::Answer];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Dns => "dns",
            Step::Connect => "connect",
            Step::Tls => "tls",
            Step::Answer => "answer",
        }
    }
}

/// What the proxy does with a verified probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer it at the edge (outcome `probe`).
    Answer,
    /// Forward it to the handler, for the test identity only.
    Through,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Answer => "answer",
            Mode::Through => "through",
        }
    }
}

/// Whether a verified request is a probe, and which kind. Only one of the two markers is a
/// malformed probe (a schema rejection), never a notification to forward.
pub fn recognise(header: bool, json: Option<&Value>) -> Result<Option<Mode>, Rejection> {
    let field = json.and_then(|v| v.get(FIELD));
    match (header, field) {
        (false, None) => Ok(None),
        (true, Some(Value::String(s))) if s == "answer" => Ok(Some(Mode::Answer)),
        (true, Some(Value::String(s))) if s == "through" => Ok(Some(Mode::Through)),
        (true, Some(other)) => Err(Rejection::new(
            Reason::Schema,
            format!("probe: {FIELD} must be \"answer\" or \"through\", got {other}"),
        )),
        _ => Err(Rejection::new(
            Reason::Schema,
            format!("probe: the {HEADER} header and the {FIELD} body field go together"),
        )),
    }
}

/// A `through` probe may only notify the configured test identity.
pub fn check_through(json: Option<&Value>, identity: Option<&str>) -> Result<(), Rejection> {
    let Some(identity) = identity else {
        return Err(Rejection::new(
            Reason::Schema,
            "probe --through: this proxy has no probe.identity configured, so it forwards no probe",
        ));
    };
    let to = json.and_then(|v| v.get("twi_to")).and_then(Value::as_str);
    if to != Some(format!("client:{identity}").as_str()) {
        return Err(Rejection::new(
            Reason::Schema,
            format!("probe --through: twi_to must be client:{identity} (probe.identity)"),
        ));
    }
    Ok(())
}

/// The detail added to a probe's signature mismatch: the URL the proxy verified against.
pub fn mismatch_hint(verified_url: &str) -> String {
    format!("the proxy verified against {verified_url}")
}

/// The body of a probe: a well-formed notification for `identity`, with the marker.
pub fn notification(mode: Mode, account_sid: &str, identity: &str, nonce: u128) -> String {
    let hex32 = format!("{nonce:032x}");
    serde_json::json!({
        "twi_account_sid": account_sid,
        "twi_call_sid": format!("CA{hex32}"),
        "twi_message_id": format!("notify-proxy-probe-{hex32}"),
        "twi_message_type": "twilio.voice.call",
        "twi_from": "client:notify-proxy-probe",
        "twi_to": format!("client:{identity}"),
        "twi_bridge_token": "notify-proxy-probe",
        FIELD: mode.as_str(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_markers_make_a_probe_one_alone_is_refused() {
        let body = |mode: &str| serde_json::json!({ FIELD: mode, "twi_to": "client:probe" });
        assert_eq!(recognise(false, Some(&serde_json::json!({}))), Ok(None));
        assert_eq!(
            recognise(true, Some(&body("answer"))),
            Ok(Some(Mode::Answer))
        );
        assert_eq!(
            recognise(true, Some(&body("through"))),
            Ok(Some(Mode::Through))
        );
        for (header, json) in [(true, None), (false, Some(body("answer")))] {
            let e = recognise(header, json.as_ref()).unwrap_err();
            assert_eq!(e.reason, Reason::Schema);
        }
        assert!(recognise(true, Some(&body("push"))).is_err());
    }

    #[test]
    fn through_only_for_the_configured_identity() {
        let json = serde_json::json!({ "twi_to": "client:probe" });
        assert!(check_through(Some(&json), Some("probe")).is_ok());
        assert!(check_through(Some(&json), Some("alice")).is_err());
        assert!(check_through(Some(&json), None).is_err());
    }

    #[test]
    fn the_probe_body_is_a_documented_notification() {
        let body = notification(Mode::Answer, "AC0123", "probe", 7);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["twi_to"], "client:probe");
        assert_eq!(v[FIELD], "answer");
        assert_eq!(v["twi_call_sid"].as_str().unwrap().len(), 34);
    }
}
