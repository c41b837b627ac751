//! Fuzz target: the strict JSON parse of a notification body and the check against the shipped
//! schema (`conf/schemas/client-notification.schema.json`).
//!
//! Input: the raw body bytes. Seeds: notification bodies from the signature vectors and tests.
//!
//! Properties, beyond "no panic":
//! - the strict parse agrees with serde_json's own reading: whatever it accepts is an object
//!   equal to `serde_json::from_slice`'s; whatever it refuses that serde_json reads as an object
//!   is refused for a duplicate key, and only then;
//! - an accepted body, printed and parsed again, is the same value;
//! - the schema check is deterministic, names a JSON pointer, and a body it passes carries the
//!   fields the proxy reads in the documented shape (AC/CA + 32 hex, message id 1..=128 chars).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use twilio_notify_proxy::schema::{parse_json, Notification, NotificationSchema};

fn schema() -> &'static NotificationSchema {
    static SCHEMA: OnceLock<NotificationSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = include_str!("../../conf/schemas/client-notification.schema.json");
        let value = serde_json::from_str(text).expect("the shipped schema is JSON");
        NotificationSchema::compile(&value).expect("the shipped schema compiles")
    })
}

fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34
        && value.starts_with(prefix)
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether the top-level object of `body` (already known to be valid JSON) names a key twice,
/// decided by an independent reader: serde_json's `Map` visitor sees every key in order.
fn has_duplicate_top_level_key(body: &[u8]) -> bool {
    struct Keys(bool);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Keys, A::Error> {
                    let mut seen = std::collections::HashSet::new();
                    let mut dup = false;
                    while let Some(k) = m.next_key::<String>()? {
                        m.next_value::<serde::de::IgnoredAny>()?;
                        dup |= !seen.insert(k);
                    }
                    Ok(Keys(dup))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Keys>(body).is_ok_and(|k| k.0)
}

fuzz_target!(|body: &[u8]| {
    let strict = parse_json(body);
    let lenient = serde_json::from_slice::<Value>(body);
    match (&strict, &lenient) {
        (Ok(s), Ok(l)) => {
            assert!(s.is_object());
            assert_eq!(s, l);
            assert!(!has_duplicate_top_level_key(body));
        }
        (Ok(_), Err(e)) => panic!("strict parse accepted what serde_json refuses: {e}"),
        (Err(e), Ok(l)) if l.is_object() => {
            assert!(
                has_duplicate_top_level_key(body),
                "refused a plain object: {e}"
            );
            assert!(e.contains("duplicate field"), "{e}");
        }
        (Err(_), _) => {}
    }

    let Ok(value) = strict else {
        return;
    };
    let printed = serde_json::to_vec(&value).expect("a Value always prints");
    assert_eq!(parse_json(&printed).as_ref(), Ok(&value));

    let verdict = schema().check(&value);
    assert_eq!(
        schema().check(&value),
        verdict,
        "the schema check is deterministic"
    );
    let notification = Notification::from_json(&value);
    match verdict {
        Ok(()) => {
            let account = notification.account_sid.expect("required by the schema");
            let call = notification.call_sid.expect("required by the schema");
            let message = notification.message_id.expect("required by the schema");
            assert!(is_sid(account, "AC"), "{account:?}");
            assert!(is_sid(call, "CA"), "{call:?}");
            assert!((1..=128).contains(&message.chars().count()), "{message:?}");
            assert_eq!(value["twi_message_type"], "twilio.voice.call");
        }
        Err(violation) => {
            assert!(violation.field.starts_with('/'), "{violation:?}");
            assert!(!violation.message.is_empty());
        }
    }
});
