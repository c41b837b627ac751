//! The request checks, in order: head (method, content type, framing, size), then signature,
//! body hash, JSON, account allow-list and schema.
//!
//! Owns the order of the checks and what each failure is called. Pure logic over borrowed bytes:
//! no sockets, no Pingora types, no metrics; the proxy glue gathers the inputs, calls
//! [`check_head`] before reading the body and [`check_request`] after, and acts on the verdict.

use std::collections::HashSet;

use http::Method;
use serde_json::Value;

use crate::config::{BodyKind, Limits, Route, SchemaMode};
use crate::framing::Framing;
use crate::logging::Echo;
use crate::outcome::{Reason, Rejection};
use crate::schema::{self, Notification, SchemaViolation};
use crate::signature::{self, KeyRing, SignatureError, SignedUrl};
use crate::twilio_errors;

/// The body the reader is to read: the head's [`Framing`] once the checks accepted it (a
/// length within the limit, or chunked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    Length(usize),
    Chunked,
}

/// The parts of a request head the checks look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// The first `Content-Type`, and how many the head carries (all of them are forwarded,
    /// so more than one is refused: only one would have been checked).
    pub content_type: Option<&'a [u8]>,
    pub content_type_count: usize,
    /// How the head frames the body (the edge's parse, by [`crate::framing`]'s rule).
    pub framing: Framing,
    /// The first `Transfer-Encoding`, only to say which one is not supported.
    pub transfer_encoding: Option<&'a [u8]>,
    /// Every `Connection` header value.
    pub connection: &'a [&'a [u8]],
}

/// The `Connection` tokens a request may carry: the hop-by-hop ones. Any other token names a
/// header the hop would strip, and those are end-to-end headers the checks may just have
/// validated (`Connection: content-type, x-twilio-signature`).
const HOP_BY_HOP_TOKENS: [&str; 4] = ["close", "keep-alive", "te", "upgrade"];

/// Method, content type, framing and declared size: everything decidable before reading a byte
/// of body.
pub fn check_head(
    route: &Route,
    limits: &Limits,
    head: &RequestHead<'_>,
) -> Result<BodyFraming, Rejection> {
    check_head_for(&[route.body], limits, head).map(|(framing, _)| framing)
}

/// [`check_head`] for a route that takes any of `accepts` (a `twilio_errors` route takes the
/// Debugger's form and Event Streams' JSON): also says which kind the content type named.
pub fn check_head_for(
    accepts: &[BodyKind],
    limits: &Limits,
    head: &RequestHead<'_>,
) -> Result<(BodyFraming, BodyKind), Rejection> {
    if head.method != Method::POST {
        return Err(Rejection::new(
            Reason::Method,
            format!(
                "{} is not allowed; Twilio notifications are POSTed",
                Echo(head.method.as_str().as_bytes())
            ),
        ));
    }
    let media_type = head
        .content_type
        .map(|ct| ct.split(|&b| b == b';').next().unwrap_or(b"").trim_ascii());
    let Some(kind) = accepts.iter().copied().find(|kind| {
        media_type.is_some_and(|mt| mt.eq_ignore_ascii_case(media_type_of(*kind).as_bytes()))
    }) else {
        let got = head
            .content_type
            .map_or("none".into(), |c| Echo(c).to_string());
        let expected: Vec<&str> = accepts.iter().map(|k| media_type_of(*k)).collect();
        return Err(Rejection::new(
            Reason::ContentType,
            format!("Content-Type must be {}, got {got}", expected.join(" or ")),
        ));
    };
    if head.content_type_count > 1 {
        return Err(Rejection::new(
            Reason::ContentType,
            format!(
                "{} Content-Type headers; only one is checked, all would be forwarded",
                head.content_type_count
            ),
        ));
    }
    for token in head
        .connection
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
    {
        if !HOP_BY_HOP_TOKENS
            .iter()
            .any(|h| token.eq_ignore_ascii_case(h.as_bytes()))
        {
            return Err(Rejection::new(
                Reason::Forbidden,
                format!(
                    "Connection names {} (only close, keep-alive, te, upgrade are hop-by-hop)",
                    Echo(token)
                ),
            ));
        }
    }
    let framing = match head.framing {
        Framing::Chunked => BodyFraming::Chunked,
        // Only plain chunked is meaningful for a request body; anything else we cannot frame.
        Framing::Unframeable => {
            return Err(Rejection::new(
                Reason::LengthRequired,
                format!(
                    "Transfer-Encoding {} is not supported; send Content-Length or chunked",
                    Echo(head.transfer_encoding.unwrap_or_default())
                ),
            ))
        }
        Framing::None => {
            return Err(Rejection::new(
                Reason::LengthRequired,
                "Content-Length (or chunked encoding) is required",
            ))
        }
        Framing::Length(len) => match usize::try_from(len) {
            Ok(len) if len <= limits.max_body_bytes => BodyFraming::Length(len),
            _ => return Err(too_large(limits)),
        },
    };
    Ok((framing, kind))
}

/// The media type a body kind is sent with.
fn media_type_of(kind: BodyKind) -> &'static str {
    match kind {
        BodyKind::Json => "application/json",
        BodyKind::Form => "application/x-www-form-urlencoded",
    }
}

pub fn too_large(limits: &Limits) -> Rejection {
    Rejection::new(
        Reason::TooLarge,
        format!("body exceeds {} bytes", limits.max_body_bytes),
    )
}

/// A request whose body has been read, as the signature and schema checks see it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The public URL Twilio signed, as reconstructed by the caller.
    pub url: SignedUrl<'a>,
    /// Every `X-Twilio-Signature` value (more than one is a rejection).
    pub signatures: &'a [&'a [u8]],
    pub signature_settings: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// What the checks learned about a request they let through.
#[derive(Debug, Default)]
pub struct Verified {
    /// The parsed body (JSON routes).
    pub json: Option<Value>,
    /// A schema violation let through because the route is in report mode.
    pub reported_violation: Option<SchemaViolation>,
}

impl Verified {
    pub fn notification(&self) -> Notification<'_> {
        self.json
            .as_ref()
            .map(Notification::from_json)
            .unwrap_or_default()
    }
}

/// Signature, body hash, JSON, account allow-list and schema, in that order: nothing about the
/// body's content is judged (or reported back) before the request is known to come from Twilio.
pub fn check_request(
    route: &Route,
    keys: &KeyRing,
    allowed_accounts: &HashSet<String>,
    req: &Inbound<'_>,
) -> Result<Verified, Rejection> {
    let signature = the_signature(req)?;

    // The account picks the key, so it is read before the signature is checked; nothing else
    // is done with the unverified body.
    let (json, account) = match route.body {
        BodyKind::Json => {
            // An unparsable (or ambiguous) body is judged after the signature: until then it
            // only means "no account to pick a subaccount token by".
            let json = schema::parse_json(req.body);
            let account = json.as_ref().ok().and_then(|v| {
                v.get("twi_account_sid")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            (Some(json), account)
        }
        BodyKind::Form => (None, form_account(req.body)),
    };
    verify_origin(keys, req, route.body, account.as_deref(), signature)?;
    // A body that is not JSON names no account: say what is wrong with it first.
    let json = json
        .map(|j| {
            j.map_err(|e| Rejection::new(Reason::NotJson, format!("body is not valid JSON: {e}")))
        })
        .transpose()?;
    check_account(allowed_accounts, account.as_deref())?;

    let mut verified = Verified::default();
    if let Some(json) = json {
        if let Some(schema) = &route.schema {
            if let Err(violation) = schema.check(&json) {
                match route.schema_mode {
                    SchemaMode::Enforce => {
                        return Err(Rejection::schema_field(
                            &violation.field,
                            violation.to_string(),
                        ))
                    }
                    SchemaMode::Report => verified.reported_violation = Some(violation),
                }
            }
        }
        verified.json = Some(json);
    }
    Ok(verified)
}

/// The one `X-Twilio-Signature` a request must carry.
fn the_signature<'a>(req: &Inbound<'a>) -> Result<&'a [u8], Rejection> {
    match req.signatures {
        [] => Err(SignatureError::Missing.into()),
        [one] => Ok(*one),
        _ => Err(SignatureError::Duplicate.into()),
    }
}

/// The `AccountSid` of a form body (the key picker of form webhooks).
fn form_account(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "AccountSid")
        .map(|(_, v)| v.into_owned())
}

/// That the request comes from Twilio: `signature` matches the public URL (plus, for a form,
/// its sorted parameters) for one of the keys the settings header and `account` pick, and a
/// JSON body is the one `bodySHA256` names. A form whose keys repeat or are empty is refused
/// next: the signature covers the sorted keys and values run together, so such a form can be
/// respelled (`a=1&=2` as `a=12`) under the same signature, and which copy would the handler
/// use? Refuse rather than guess (after the signature, like every judgement of the body).
fn verify_origin(
    keys: &KeyRing,
    req: &Inbound<'_>,
    kind: BodyKind,
    account: Option<&str>,
    signature: &[u8],
) -> Result<(), Rejection> {
    let candidates = keys.select(req.signature_settings, account)?;
    match kind {
        BodyKind::Json => {
            signature::verify_signature(&candidates, &req.url, b"", signature)?;
            signature::verify_body_hash(req.url.query, req.body)?;
        }
        BodyKind::Form => {
            let suffix = signature::form_signing_suffix(req.body);
            signature::verify_signature(&candidates, &req.url, &suffix, signature)?;
            if form_is_ambiguous(req.body) {
                return Err(Rejection::new(
                    Reason::Schema,
                    "the form body has an empty or repeated key",
                ));
            }
        }
    }
    Ok(())
}

/// `allowed_accounts`, when set, admits only the accounts it lists, and no body naming none.
fn check_account(
    allowed_accounts: &HashSet<String>,
    account: Option<&str>,
) -> Result<(), Rejection> {
    if allowed_accounts.is_empty() {
        return Ok(());
    }
    match account {
        Some(sid) if allowed_accounts.contains(sid) => Ok(()),
        Some(sid) => Err(Rejection::new(
            Reason::UnknownAccount,
            format!("account {sid} is not in allowed_accounts"),
        )),
        None => Err(Rejection::new(
            Reason::UnknownAccount,
            "the body names no account, and allowed_accounts is set",
        )),
    }
}

/// A `twilio_errors` route's request: verified as a notification is (the same signature rules,
/// key ring and account allow-list), then read strictly as the Debugger's form or an Event
/// Streams batch. Every error's account must pass `allowed_accounts`; events that are not
/// errors (a sink's test event) name none and need not.
pub fn check_error_events(
    keys: &KeyRing,
    allowed_accounts: &HashSet<String>,
    req: &Inbound<'_>,
    kind: BodyKind,
) -> Result<Vec<twilio_errors::Item>, Rejection> {
    let signature = the_signature(req)?;
    let items = match kind {
        BodyKind::Form => {
            let account = form_account(req.body);
            verify_origin(keys, req, kind, account.as_deref(), signature)?;
            vec![twilio_errors::debugger_event(req.body)?]
        }
        BodyKind::Json => {
            let batch = schema::parse_json_array(req.body);
            let account = batch
                .as_ref()
                .ok()
                .and_then(|b| twilio_errors::event_streams_account(b));
            verify_origin(keys, req, kind, account.as_deref(), signature)?;
            let batch = batch.map_err(|e| {
                Rejection::new(
                    Reason::NotJson,
                    format!("body is not a JSON array of events: {e}"),
                )
            })?;
            twilio_errors::event_streams(&batch)?
        }
    };
    for item in &items {
        if let twilio_errors::Item::Error(event) = item {
            check_account(allowed_accounts, Some(&event.account_sid))?;
        }
    }
    Ok(items)
}

/// Whether a form body has an empty key or a key that appears more than once.
fn form_is_ambiguous(body: &[u8]) -> bool {
    let mut keys: Vec<_> = form_urlencoded::parse(body).map(|(k, _)| k).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return true;
    }
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests;
