//! The labels of Twilio's error events as the proxy takes them: what became of each event,
//! and how a 13807 relates to what the proxy answered for its call. No I/O.

/// What became of one event a `twilio_errors` route took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventResult {
    /// An error seen for the first time: counted by code.
    Counted,
    /// An error whose Sid was counted before (Twilio's retry, or the other channel).
    Duplicate,
    /// Not an error: a warning, an info event, another Event Streams type.
    Ignored,
    /// Not counted: the reconciler's queue was full (a flood of events).
    Dropped,
}

impl EventResult {
    pub const ALL: [EventResult; 4] = [
        EventResult::Counted,
        EventResult::Duplicate,
        EventResult::Ignored,
        EventResult::Dropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventResult::Counted => "counted",
            EventResult::Duplicate => "duplicate",
            EventResult::Ignored => "ignored",
            EventResult::Dropped => "dropped",
        }
    }
}

/// How a 13807 relates to the proxy's answers for its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// No instance answered a notification of that call: the failure is in front of the proxy
    /// (DNS, TLS, the load balancer, or Twilio calling another URL).
    NotSeen,
    /// The proxy answered non-2xx: its own outcome is the explanation.
    AnsweredError,
    /// The proxy answered 2xx and Twilio still logged 13807: something in between changed the
    /// answer, or it came too late.
    AnsweredOk,
    /// The proxy could not tell: the event named no call, or the shared record could not be read.
    Unknown,
}

impl Seen {
    pub const ALL: [Seen; 4] = [
        Seen::NotSeen,
        Seen::AnsweredError,
        Seen::AnsweredOk,
        Seen::Unknown,
    ];

    /// The `seen` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Seen::NotSeen => "not_seen",
            Seen::AnsweredError => "answered_error",
            Seen::AnsweredOk => "answered_ok",
            Seen::Unknown => "unknown",
        }
    }
}
