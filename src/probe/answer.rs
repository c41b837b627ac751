//! What the answer to a probe says: passed, or the likely cause of a refusal (a public URL that
//! is not the one the proxy verifies against, a wrong token, no route, the schema, something
//! that is not the proxy at all).
//!
//! Owns the diagnosis wording, shared by `probe`'s output and the proxy's own probe log line,
//! and the closed set of causes the proxy's probe compares to log a failure once per change.
//! The answer comes from whatever serves the URL: nothing here trusts it, and callers bound
//! the diagnosis before logging it. Pure: no I/O.

use super::{mismatch_hint, Mode};

/// What the sender knows that a diagnosis names.
pub struct Sent<'a> {
    pub mode: Mode,
    /// The URL the probe was sent to (as Twilio would have it).
    pub url: &'a str,
    /// Where the signing token came from, as an operator names it (`$TWILIO_AUTH_TOKEN`,
    /// `secrets.auth_token`).
    pub token: &'a str,
}

/// The judgement of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    /// `verified` (the proxy answered the probe) or `through` (the handler did).
    pub name: &'static str,
    /// A fixed word for the kind of failure (`public_url_mismatch`, `wrong_token`,
    /// `unknown_route`, `schema`, `not_the_proxy`, `status`, `refused`); `passed` when it passed.
    pub cause: &'static str,
    /// What it means, for a person (without the status and the latency).
    pub diagnosis: String,
}

/// Judges the answer (`status`, `body`) to the probe `sent`.
pub fn judge(sent: &Sent<'_>, status: u16, body: &[u8]) -> Verdict {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |k: &str| {
        json.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    if sent.mode == Mode::Answer && status == 200 && field("probe") == "ok" {
        return Verdict {
            passed: true,
            name: "verified",
            cause: "passed",
            diagnosis: format!(
                "the proxy checked signature, body hash and schema on route {}",
                field("route")
            ),
        };
    }
    if sent.mode == Mode::Through && (200..300).contains(&status) {
        return Verdict {
            passed: true,
            name: "through",
            cause: "passed",
            diagnosis: format!("the handler answered {status}"),
        };
    }
    let (error, detail) = (field("error"), field("detail"));
    let (cause, diagnosis) = match error.as_str() {
        "signature_mismatch" => {
            let expected = detail
                .split_once(&mismatch_hint(""))
                .map(|(_, url)| url.trim().to_string());
            let given = sent.url.split(['?', '#']).next().unwrap_or("").to_string();
            match expected {
                Some(url) if !url.is_empty() && url != given => (
                    "public_url_mismatch",
                    format!(
                        "public URL mismatch: the proxy verifies signatures for {url}, but \
                         Twilio would sign {given} (fix routes[].public_url or the URL in Twilio)"
                    ),
                ),
                _ => (
                    "wrong_token",
                    format!(
                        "wrong token: the URL matches, so {} is not a token the proxy accepts",
                        sent.token
                    ),
                ),
            }
        }
        "unknown_route" => (
            "unknown_route",
            format!("no route serves this path: {detail}"),
        ),
        "schema" | "not_json" => ("schema", format!("schema: {detail}")),
        "" if status == 200 => (
            "not_the_proxy",
            "the answer is not the proxy's probe answer: is another server (or an old proxy) at \
             this URL?"
                .to_string(),
        ),
        "" => (
            "status",
            format!(
                "answered {status} without a proxy error: {}",
                String::from_utf8_lossy(body)
            ),
        ),
        other => ("refused", format!("{other}: {detail}")),
    };
    Verdict {
        passed: false,
        name: "verified",
        cause,
        diagnosis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://voice.example.com/notify";

    fn sent(mode: Mode) -> Sent<'static> {
        Sent {
            mode,
            url: URL,
            token: "$TWILIO_AUTH_TOKEN",
        }
    }

    fn refused(error: &str, detail: &str) -> Vec<u8> {
        serde_json::json!({ "error": error, "detail": detail })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_proxys_probe_answer_passes_anything_else_at_200_does_not() {
        let ok = br#"{"probe":"ok","route":"notify"}"#;
        let v = judge(&sent(Mode::Answer), 200, ok);
        assert!(v.passed && v.name == "verified", "{v:?}");
        assert!(v.diagnosis.ends_with("on route notify"));
        let v = judge(&sent(Mode::Answer), 200, b"<html>welcome</html>");
        assert_eq!((v.passed, v.cause), (false, "not_the_proxy"));
        let v = judge(&sent(Mode::Through), 204, b"");
        assert_eq!((v.passed, v.name), (true, "through"));
    }

    #[test]
    fn a_signature_mismatch_tells_a_wrong_url_from_a_wrong_token() {
        let other = refused(
            "signature_mismatch",
            &format!("x; {}", mismatch_hint("https://calls.example.com/notify")),
        );
        let v = judge(&sent(Mode::Answer), 403, &other);
        assert_eq!(v.cause, "public_url_mismatch");
        assert!(
            v.diagnosis
                .contains("verifies signatures for https://calls.example.com/notify")
                && v.diagnosis.contains(&format!("would sign {URL}")),
            "{}",
            v.diagnosis
        );
        let same = refused("signature_mismatch", &mismatch_hint(URL));
        let v = judge(&sent(Mode::Answer), 403, &same);
        assert_eq!(v.cause, "wrong_token");
        assert!(v.diagnosis.contains("$TWILIO_AUTH_TOKEN is not a token"));
        // Without the hint (an old proxy): the token is blamed, the URL cannot be told.
        let v = judge(&sent(Mode::Answer), 403, &refused("signature_mismatch", ""));
        assert_eq!(v.cause, "wrong_token");
    }

    #[test]
    fn other_refusals_keep_a_fixed_cause() {
        let cases = [
            (refused("unknown_route", "no route"), 404, "unknown_route"),
            (refused("schema", "twi_to"), 400, "schema"),
            (refused("not_json", "x"), 400, "schema"),
            (refused("too_large", "x"), 413, "refused"),
            (b"bad gateway".to_vec(), 502, "status"),
        ];
        for (body, status, cause) in cases {
            let v = judge(&sent(Mode::Answer), status, &body);
            assert_eq!((v.passed, v.cause), (false, cause), "{v:?}");
        }
    }
}
