//! What a 13807 means next to what the proxy answered for the same call.
//!
//! Owns [`AnswerRecord`] (what the proxy remembers of each answer on a notification route),
//! the rule that picks a verdict ([`Seen`], named in [`crate::outcome`]), and whether the URL Twilio called is one
//! the proxy serves. Pure.

use crate::outcome::Seen;
use crate::signature::SignedUrl;

/// One answer the proxy gave on a notification route, remembered for reconciling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRecord {
    pub call_sid: String,
    /// The route's name.
    pub route: String,
    /// The request's outcome label (`forwarded_2xx`, `rejected`, `upstream_5xx`, ...).
    pub outcome: String,
    /// The rejection reason label, for a refused request.
    pub reason: Option<String>,
    /// The status the proxy answered Twilio with.
    pub status: u16,
    /// When the answer was ready (unix milliseconds).
    pub answered_at_ms: u64,
    /// The instance that answered (`buffer` heartbeats use the same name).
    pub instance: String,
    /// The id the answer carried (`X-Request-Id`) and its log lines name.
    pub request_id: String,
    /// Whether the request passed the signature check. A refused request's body, and so its
    /// call SID, is unverified: anyone could have sent it.
    pub verified: bool,
}

impl AnswerRecord {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The verdict and the answer that explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub seen: Seen,
    pub record: Option<&'a AnswerRecord>,
}

/// Classifies a 13807 by the answers remembered for its call. Verified answers come first: an
/// error answer among them explains the 13807 (the latest such), else a 2xx means the proxy
/// answered well. Only when no verified answer exists do refused requests count (a signature
/// the proxy refused is the most common 13807 of all, but an unverified body can name any
/// call, so it never outweighs a verified answer).
pub fn classify(records: &[AnswerRecord]) -> Verdict<'_> {
    let latest = |verified: bool, ok: bool| {
        records
            .iter()
            .filter(|r| r.verified == verified && r.ok() == ok)
            .max_by_key(|r| r.answered_at_ms)
    };
    let (seen, record) = if let Some(r) = latest(true, false) {
        (Seen::AnsweredError, Some(r))
    } else if let Some(r) = latest(true, true) {
        (Seen::AnsweredOk, Some(r))
    } else if let Some(r) = latest(false, false) {
        (Seen::AnsweredError, Some(r))
    } else {
        (Seen::NotSeen, None)
    };
    Verdict { seen, record }
}

/// A URL a notification route serves: its `public_url`, or its path on any of its allowed
/// hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServedUrl {
    Public {
        scheme: String,
        host: String,
        port: Option<String>,
        path: String,
    },
    /// `host` or `host:port` entries, lower case.
    Hosts { hosts: Vec<String>, path: String },
}

/// Whether `called` (the URL Twilio reports it called) is one of `served`, compared as Twilio
/// signs: scheme and host without case, the default port written or not, the path exactly,
/// the query ignored. A URL that is none of them is the "wrong endpoint or invalid host name"
/// cause of 13807.
pub fn url_is_served(called: &str, served: &[ServedUrl]) -> bool {
    let Ok(url) = SignedUrl::parse(called) else {
        return false;
    };
    let default_port = if url.scheme.eq_ignore_ascii_case("https") {
        "443"
    } else {
        "80"
    };
    let port = url.port.unwrap_or(default_port);
    served.iter().any(|s| match s {
        ServedUrl::Public {
            scheme,
            host,
            port: served_port,
            path,
        } => {
            url.scheme.eq_ignore_ascii_case(scheme)
                && url.host.eq_ignore_ascii_case(host)
                && served_port.as_deref().unwrap_or(default_port) == port
                && url.path == path.as_bytes()
        }
        ServedUrl::Hosts { hosts, path } => {
            let host = url.host.to_ascii_lowercase();
            let with_port = format!("{host}:{port}");
            url.path == path.as_bytes()
                && hosts.iter().any(|h| {
                    *h == with_port || (*h == host && (url.port.is_none() || port == default_port))
                })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16, at: u64, verified: bool) -> AnswerRecord {
        AnswerRecord {
            call_sid: "CA0123".into(),
            route: "notify".into(),
            outcome: "x".into(),
            reason: None,
            status,
            answered_at_ms: at,
            instance: "a".into(),
            request_id: format!("r{at}"),
            verified,
        }
    }

    #[test]
    fn no_answer_is_not_seen() {
        assert_eq!(classify(&[]).seen, Seen::NotSeen);
        assert_eq!(classify(&[]).record, None);
    }

    #[test]
    fn a_verified_error_answer_explains_the_13807_even_beside_a_later_2xx() {
        let records = [
            record(200, 30, true),
            record(502, 10, true),
            record(503, 20, true),
        ];
        let v = classify(&records);
        assert_eq!(v.seen, Seen::AnsweredError);
        assert_eq!(v.record, Some(&records[2]), "the latest error answer");
    }

    #[test]
    fn only_2xx_answers_are_answered_ok() {
        let records = [record(200, 10, true), record(204, 20, true)];
        let v = classify(&records);
        assert_eq!(v.seen, Seen::AnsweredOk);
        assert_eq!(v.record, Some(&records[1]));
        // 299 is still 2xx, 300 is not.
        assert_eq!(classify(&[record(299, 1, true)]).seen, Seen::AnsweredOk);
        assert_eq!(classify(&[record(300, 1, true)]).seen, Seen::AnsweredError);
        assert_eq!(classify(&[record(199, 1, true)]).seen, Seen::AnsweredError);
    }

    #[test]
    fn unverified_refusals_count_only_without_a_verified_answer() {
        let refused = record(403, 50, false);
        assert_eq!(
            classify(std::slice::from_ref(&refused)).seen,
            Seen::AnsweredError
        );
        let both = [refused.clone(), record(200, 10, true)];
        let v = classify(&both);
        assert_eq!(
            v.seen,
            Seen::AnsweredOk,
            "a verified 2xx outweighs a refused copy"
        );
        // An unverified 2xx cannot exist (a refusal is never 2xx), and is ignored if it did.
        assert_eq!(classify(&[record(200, 1, false)]).seen, Seen::NotSeen);
    }

    fn public(url: &str) -> ServedUrl {
        let u = SignedUrl::parse(url).unwrap();
        ServedUrl::Public {
            scheme: u.scheme.into(),
            host: u.host.into(),
            port: u.port.map(Into::into),
            path: String::from_utf8(u.path.to_vec()).unwrap(),
        }
    }

    #[test]
    fn a_public_url_matches_as_twilio_signs_it() {
        let served = [public("https://voice.example.com/twilio/client-notify")];
        for called in [
            "https://voice.example.com/twilio/client-notify",
            "https://VOICE.example.com/twilio/client-notify?bodySHA256=ab",
            "HTTPS://voice.example.com:443/twilio/client-notify",
        ] {
            assert!(url_is_served(called, &served), "{called}");
        }
        for called in [
            "https://voice.example.com/twilio/client-notify/",
            "https://voice.example.com/twilio/Client-notify",
            "http://voice.example.com/twilio/client-notify",
            "https://voice.example.com:8443/twilio/client-notify",
            "https://voice_example.com/twilio/client-notify",
            "https://other.example.com/twilio/client-notify",
            "not a url",
        ] {
            assert!(!url_is_served(called, &served), "{called}");
        }
        let with_port = [public("https://voice.example.com:8443/n")];
        assert!(url_is_served(
            "https://voice.example.com:8443/n",
            &with_port
        ));
        assert!(!url_is_served("https://voice.example.com/n", &with_port));
    }

    #[test]
    fn allowed_hosts_match_with_or_without_their_port() {
        let served = [ServedUrl::Hosts {
            hosts: vec!["voice.example.com".into(), "alt.example.com:8443".into()],
            path: "/n".into(),
        }];
        assert!(url_is_served("https://voice.example.com/n", &served));
        assert!(url_is_served("https://voice.example.com:443/n", &served));
        assert!(url_is_served("https://ALT.example.com:8443/n", &served));
        assert!(!url_is_served("https://alt.example.com/n", &served));
        assert!(!url_is_served("https://voice.example.com:8443/n", &served));
        assert!(!url_is_served("https://voice.example.com/m", &served));
    }
}
