//! The two shapes Twilio posts error events in, read strictly.
//!
//! - The Console Debugger webhook: a form with `Sid`, `AccountSid`, `ParentAccountSid`,
//!   `Timestamp`, `Level`, `PayloadType` and `Payload`, whose JSON holds `resource_sid`,
//!   `error_code`, `more_info` and `webhook.request` / `webhook.response` (the URL Twilio called
//!   and the status it got).
//! - An Event Streams webhook sink: a JSON array of CloudEvents; those of type
//!   `com.twilio.error-logs.error.logged` carry `data` (schema `ErrorLogs.Error`) with `sid`,
//!   `account_sid`, `level`, `error_code` and the SIDs of what the error is about.
//!
//! Strict where the proxy relies on a field (SIDs have their shape, codes are numbers, the
//! payload is one JSON object with unique keys): a body that breaks a rule is refused with the
//! field named, never half-counted. Lenient where Twilio adds fields. The account reader runs
//! before the signature is checked (the account picks the key, as for notifications); nothing
//! else is judged before that.

use serde_json::{Map, Value};

use super::{Channel, ErrorEvent, Item, URL_BYTES};
use crate::outcome::Rejection;
use crate::schema;

/// The CloudEvents type of an error log in Event Streams.
const ERROR_LOGGED: &str = "com.twilio.error-logs.error.logged";

/// The `data.account_sid` of an Event Streams batch's first event, to pick the key by.
pub fn event_streams_account(batch: &[Value]) -> Option<String> {
    batch
        .first()?
        .get("data")?
        .get("account_sid")?
        .as_str()
        .map(str::to_owned)
}

/// A Debugger webhook's form body (keys already known to be unique and non-empty).
pub fn debugger_event(body: &[u8]) -> Result<Item, Rejection> {
    let form: Map<String, Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let text = |key: &str| -> Result<&str, Rejection> {
        form.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| Rejection::schema_field(key, format!("{key} is required")))
    };
    let sid = sid_field(text("Sid")?, None, "Sid")?;
    let account_sid = sid_field(text("AccountSid")?, Some("AC"), "AccountSid")?;
    if let Some(parent) = form.get("ParentAccountSid").and_then(Value::as_str) {
        sid_field(parent, Some("AC"), "ParentAccountSid")?;
    }
    if let Some(kind) = form.get("PayloadType").and_then(Value::as_str) {
        if !kind.eq_ignore_ascii_case("application/json") {
            return Err(Rejection::schema_field(
                "PayloadType",
                "PayloadType must be application/json",
            ));
        }
    }
    let is_error = level_is_error(text("Level")?, "Level")?;
    let payload = schema::parse_json(text("Payload")?.as_bytes()).map_err(|e| {
        Rejection::schema_field("Payload", format!("Payload is not a JSON object: {e}"))
    })?;
    let code = error_code(payload.get("error_code"), "Payload/error_code")?;
    let call_sid = call_sid(&payload, &["resource_sid"], "Payload")?;
    let webhook = payload.get("webhook");
    let called_url = match webhook
        .and_then(|w| w.get("request"))
        .and_then(|r| r.get("url"))
    {
        None | Some(Value::Null) => None,
        Some(Value::String(url)) => Some(bounded_url(url)),
        Some(_) => {
            return Err(Rejection::schema_field(
                "Payload/webhook/request/url",
                "webhook.request.url must be a string",
            ))
        }
    };
    let status_seen = webhook
        .and_then(|w| w.get("response"))
        .and_then(|r| r.get("status_code"));
    let status_seen = status(status_seen, "Payload/webhook/response/status_code")?;
    if !is_error {
        return Ok(Item::Ignored);
    }
    Ok(Item::Error(ErrorEvent {
        sid,
        account_sid,
        code,
        call_sid,
        called_url,
        status_seen,
        channel: Channel::Debugger,
    }))
}

/// An Event Streams batch (already parsed as an array of objects with unique keys).
pub fn event_streams(batch: &[Value]) -> Result<Vec<Item>, Rejection> {
    if batch.is_empty() {
        return Err(Rejection::schema_field("/", "the batch holds no event"));
    }
    batch
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let at = |field: &str| format!("/{i}/{field}");
            let kind = event
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| Rejection::schema_field(&at("type"), "type is required"))?;
            if kind != ERROR_LOGGED {
                return Ok(Item::Ignored);
            }
            let data = event
                .get("data")
                .filter(|d| d.is_object())
                .ok_or_else(|| Rejection::schema_field(&at("data"), "data must be an object"))?;
            let field = |key: &str| -> Result<&str, Rejection> {
                data.get(key).and_then(Value::as_str).ok_or_else(|| {
                    Rejection::schema_field(
                        &at(&format!("data/{key}")),
                        format!("{key} is required"),
                    )
                })
            };
            let sid = sid_field(field("sid")?, None, &at("data/sid"))?;
            let account_sid =
                sid_field(field("account_sid")?, Some("AC"), &at("data/account_sid"))?;
            let is_error = level_is_error(field("level")?, &at("data/level"))?;
            let code = error_code(data.get("error_code"), &at("data/error_code"))?;
            let call_sid = call_sid(
                data,
                &["resource_sid", "call_sid", "correlation_sid"],
                &at("data"),
            )?;
            if !is_error {
                return Ok(Item::Ignored);
            }
            Ok(Item::Error(ErrorEvent {
                sid,
                account_sid,
                code,
                call_sid,
                called_url: None,
                status_seen: None,
                channel: Channel::EventStreams,
            }))
        })
        .collect()
}

/// Whether `text` is a Twilio SID: two capital letters (`prefix`, if given) and 1 to 62 hex
/// digits. Twilio's own are 34 characters; its documentation's examples are not all that long.
pub fn sid_shaped(text: &str, prefix: Option<&str>) -> bool {
    let bytes = text.as_bytes();
    (3..=64).contains(&bytes.len())
        && bytes[..2].iter().all(u8::is_ascii_uppercase)
        && prefix.is_none_or(|p| text.starts_with(p))
        && bytes[2..].iter().all(u8::is_ascii_hexdigit)
}

fn sid_field(text: &str, prefix: Option<&str>, field: &str) -> Result<String, Rejection> {
    if sid_shaped(text, prefix) {
        Ok(text.to_owned())
    } else {
        let shape = prefix.unwrap_or("two capital letters");
        Err(Rejection::schema_field(
            field,
            format!("{field} must be a SID ({shape} followed by hex digits)"),
        ))
    }
}

/// `Error`/`ERROR` is an error; the other levels Twilio sends (warning, info, debug) are not.
fn level_is_error(level: &str, field: &str) -> Result<bool, Rejection> {
    if level.is_empty() || level.len() > 16 || !level.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Rejection::schema_field(
            field,
            format!("{field} must be a word"),
        ));
    }
    Ok(level.eq_ignore_ascii_case("error"))
}

/// An error code: a string of 1 to 6 digits (as Twilio writes it) or the same as a number.
fn error_code(value: Option<&Value>, field: &str) -> Result<u32, Rejection> {
    let code = match value {
        Some(Value::String(s))
            if (1..=6).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        Some(Value::Number(n)) => n.as_u64().filter(|&n| n <= 999_999).map(|n| n as u32),
        _ => None,
    };
    code.ok_or_else(|| {
        Rejection::schema_field(field, "error_code must be a number of 1 to 6 digits")
    })
}

/// The first of `keys` in `object` that holds a call SID. A SID of something else (a message,
/// a request) is not a call; a value that is not a SID at all is refused.
fn call_sid(object: &Value, keys: &[&str], at: &str) -> Result<Option<String>, Rejection> {
    for key in keys {
        match object.get(*key) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) if sid_shaped(s, None) => {
                if s.starts_with("CA") {
                    return Ok(Some(s.clone()));
                }
            }
            Some(_) => {
                let field = format!("{at}/{key}");
                return Err(Rejection::schema_field(
                    &field,
                    format!("{key} must be a SID"),
                ));
            }
        }
    }
    Ok(None)
}

/// A status code Twilio got: a number 100-999, or the same as a string.
fn status(value: Option<&Value>, field: &str) -> Result<Option<u16>, Rejection> {
    let status = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.len() == 3 => s.parse().ok(),
        Some(_) => None,
    };
    match status {
        Some(s @ 100..=999) => Ok(Some(s as u16)),
        _ => Err(Rejection::schema_field(
            field,
            "status_code must be an HTTP status",
        )),
    }
}

fn bounded_url(url: &str) -> String {
    if url.len() <= URL_BYTES {
        return url.to_owned();
    }
    let mut end = URL_BYTES;
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &url[..end])
}

#[cfg(test)]
mod tests;
