//! Twilio's error events: what the Debugger webhook and Event Streams error logs say, read
//! strictly, and what a 13807 means next to the proxy's own answer for that call.
//!
//! Error 13807 is counted by Twilio, not by the proxy, and several of its causes happen before
//! a request reaches the proxy (a wrong URL in Twilio, DNS, TLS, the load balancer). Twilio
//! posts each error event to a URL we give it; a `kind: twilio_errors` route takes them. This
//! room owns the two payload shapes ([`parse`]), the fixed set of error codes counted by name
//! ([`code_label`]), what the proxy remembers of each answer ([`AnswerRecord`]) and the
//! verdict on a 13807 against those records ([`classify`]). Pure: no I/O, no clock, no
//! metrics. The edge verifies the signature first (the same checks and key ring as for
//! notifications, in the `checks` room); the reconciler (the `reconcile` room) remembers
//! answers, counts, and logs the verdicts.

mod classify;
mod parse;

pub use classify::{classify, url_is_served, AnswerRecord, ServedUrl, Verdict};
pub use parse::{debugger_event, event_streams, event_streams_account, sid_shaped};

/// The error that makes a call fail to ring: the Client Notification URL answered an error.
pub const CLIENT_NOTIFICATION_FAILED: u32 = 13807;

/// Codes counted under their own label in `notify_proxy_twilio_errors_total`; every other code
/// is `other`. 13807 and 13806 are the Client Notification URL's own; the 112xx codes are
/// Twilio failing to reach a webhook at all (retrieval, connection, host name, TLS, expired
/// certificate), the causes in front of the proxy.
pub const COUNTED_CODES: [u32; 7] = [13807, 13806, 11200, 11205, 11210, 11220, 11236];

/// Every label value of `error_code`: the counted codes, then `other`.
pub const CODE_LABELS: [&str; 8] = [
    "13807", "13806", "11200", "11205", "11210", "11220", "11236", "other",
];

/// The `error_code` label of `code`: its own for a counted code, else `other`.
pub fn code_label(code: u32) -> &'static str {
    COUNTED_CODES
        .iter()
        .position(|&c| c == code)
        .map_or("other", |i| CODE_LABELS[i])
}

/// Which of Twilio's channels an event came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The Console Debugger's webhook (form-encoded, signed like a form webhook).
    Debugger,
    /// An Event Streams webhook sink (`com.twilio.error-logs.error.logged` CloudEvents, JSON,
    /// signed with `bodySHA256`).
    EventStreams,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Debugger => "debugger",
            Channel::EventStreams => "event_streams",
        }
    }
}

/// One error Twilio logged, as much as the proxy needs of it. Every string is checked for
/// shape (a SID is two capitals and hex digits) or bounded, so it may go into a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEvent {
    /// The error's SID: the same event sent twice (a retry, or both channels) has the same one.
    pub sid: String,
    pub account_sid: String,
    pub code: u32,
    /// The call it is about (`CA…`), when Twilio named one.
    pub call_sid: Option<String>,
    /// The URL Twilio called (Debugger events of a webhook), at most [`URL_BYTES`] bytes.
    pub called_url: Option<String>,
    /// The status Twilio got from that URL, when it got one.
    pub status_seen: Option<u16>,
    pub channel: Channel,
}

/// Longer URLs are cut to this (with a marker): no configured URL is that long.
pub const URL_BYTES: usize = 2048;

/// What one event in a request became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An error to count (and, for a 13807, to reconcile).
    Error(ErrorEvent),
    /// Valid, but not an error: a warning or info event, or an Event Streams event of another
    /// type. Acknowledged and counted as ignored.
    Ignored,
}

#[cfg(test)]
mod tests {
    use super::{code_label, Channel};

    /// The `channel` field of the reconciled 13807 line: fixed words an operator can grep for.
    #[test]
    fn channels_have_fixed_names_for_the_log() {
        assert_eq!(Channel::Debugger.as_str(), "debugger");
        assert_eq!(Channel::EventStreams.as_str(), "event_streams");
    }

    /// The README's list of `error_code` values, written out here rather than read from the
    /// constants: a code dropped or mistyped there is counted as `other` and caught here.
    #[test]
    fn each_documented_code_has_its_own_label_and_any_other_is_other() {
        for code in [13807, 13806, 11200, 11205, 11210, 11220, 11236] {
            assert_eq!(code_label(code), code.to_string(), "{code}");
        }
        for code in [0, 11201, 11237, 13808, 30008, u32::MAX] {
            assert_eq!(code_label(code), "other", "{code}");
        }
    }
}
