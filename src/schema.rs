//! The notification body: JSON Schema validation and the few fields the proxy itself reads.
//!
//! Owns the compiled schema (compiled once at start) and [`Notification`], the fields used for
//! key selection, the account allow-list and logs. Pure logic: callers hand in parsed JSON; this
//! module never reads files or sockets (config loads the schema file).

use serde_json::Value;

/// A compiled JSON Schema for notification bodies.
pub struct NotificationSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for NotificationSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotificationSchema")
    }
}

/// The first violation found, with the field it concerns (a JSON pointer, `/` for the root).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SchemaViolation {
    pub field: String,
    pub message: String,
}

impl NotificationSchema {
    /// Compiles `schema`; fails if it is not a valid JSON Schema. Remote `$ref`s are not fetched.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        jsonschema::validator_for(schema)
            .map(|validator| NotificationSchema { validator })
            .map_err(|e| e.to_string())
    }

    /// Checks a parsed body. Messages never echo the offending value: a body may carry tokens.
    pub fn check(&self, body: &Value) -> Result<(), SchemaViolation> {
        match self.validator.iter_errors(body).next() {
            None => Ok(()),
            Some(e) => {
                let pointer = e.instance_path().as_str().to_string();
                Err(SchemaViolation {
                    field: if pointer.is_empty() {
                        "/".into()
                    } else {
                        pointer
                    },
                    message: e.masked().to_string(),
                })
            }
        }
    }
}

/// The fields of a notification the proxy reads for itself (absent ones are `None`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notification<'a> {
    pub account_sid: Option<&'a str>,
    pub call_sid: Option<&'a str>,
    pub message_id: Option<&'a str>,
}

impl<'a> Notification<'a> {
    pub fn from_json(body: &'a Value) -> Self {
        let field = |name: &str| body.get(name).and_then(Value::as_str);
        Notification {
            account_sid: field("twi_account_sid"),
            call_sid: field("twi_call_sid"),
            message_id: field("twi_message_id"),
        }
    }
}

/// Parses a body as a JSON object, refusing one that names a top-level key twice: a `Value`
/// would keep the last duplicate while many handlers keep the first, so a body verified as one
/// account's could be acted on as another's. serde_json bounds nesting depth (128), so hostile
/// input cannot exhaust the stack; invalid UTF-8 is an error, not a lossy conversion.
pub fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<StrictObject>(body)
        .map(|o| o.0)
        .map_err(|e| e.to_string())
}

/// Parses a body as a JSON array of objects, each held to [`parse_json`]'s rule (no key named
/// twice): the shape of an Event Streams webhook, a batch of CloudEvents.
pub fn parse_json_array(body: &[u8]) -> Result<Vec<Value>, String> {
    serde_json::from_slice::<Vec<StrictObject>>(body)
        .map(|items| items.into_iter().map(|o| o.0).collect())
        .map_err(|e| e.to_string())
}

/// A top-level JSON object whose keys are unique.
struct StrictObject(Value);

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrictObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StrictObject, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if object.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate field `{key}`")));
                    }
                    object.insert(key, value);
                }
                Ok(StrictObject(Value::Object(object)))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> NotificationSchema {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/conf/schemas/client-notification.schema.json"
        );
        let value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        NotificationSchema::compile(&value).unwrap()
    }

    fn sample() -> Value {
        json!({
            "twi_account_sid": "AC0123456789abcdef0123456789abcdef",
            "twi_bridge_token": "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2lnbmF0dXJl",
            "twi_call_sid": "CA0123456789abcdef0123456789abcdef",
            "twi_from": "client:alice",
            "twi_message_id": "WB0123456789abcdef0123456789abcdef",
            "twi_message_type": "twilio.voice.call",
            "twi_to": "client:bob"
        })
    }

    const REQUIRED: [&str; 7] = [
        "twi_account_sid",
        "twi_call_sid",
        "twi_message_id",
        "twi_message_type",
        "twi_from",
        "twi_to",
        "twi_bridge_token",
    ];

    #[test]
    fn valid_sample_passes() {
        assert_eq!(schema().check(&sample()), Ok(()));
    }

    #[test]
    fn mobile_and_custom_fields_pass() {
        let mut body = sample();
        body["twi_params"] = json!("customer=42&tier=gold");
        body["twi_stir_status"] = json!("TN-Validation-Passed-A");
        body["twi_answer_timeout"] = json!("30");
        assert_eq!(schema().check(&body), Ok(()));
    }

    #[test]
    fn each_required_field_missing_is_named() {
        let schema = schema();
        for field in REQUIRED {
            let mut body = sample();
            body.as_object_mut().unwrap().remove(field);
            let v = schema.check(&body).expect_err(field);
            assert_eq!(v.field, "/");
            assert!(v.message.contains(field), "{field}: {}", v.message);
        }
    }

    #[test]
    fn wrong_types_are_named() {
        let schema = schema();
        for field in REQUIRED {
            let mut body = sample();
            body[field] = json!(12);
            let v = schema.check(&body).expect_err(field);
            assert_eq!(v.field, format!("/{field}"));
        }
    }

    #[test]
    fn wrong_message_type_and_malformed_sids_fail() {
        let schema = schema();
        for (field, value) in [
            ("twi_message_type", "twilio.sms"),
            ("twi_account_sid", "AC123"),
            ("twi_call_sid", "XX0123456789abcdef0123456789abcdef"),
        ] {
            let mut body = sample();
            body[field] = json!(value);
            let v = schema.check(&body).expect_err(field);
            assert_eq!(v.field, format!("/{field}"));
            assert!(
                !v.message.contains(value),
                "the value must not be echoed: {}",
                v.message
            );
        }
    }

    #[test]
    fn extra_fields_are_allowed() {
        let mut body = sample();
        body["twi_new_field_from_2027"] = json!({"nested": [1, 2, 3]});
        assert_eq!(schema().check(&body), Ok(()));
    }

    #[test]
    fn non_object_bodies_fail() {
        for body in [json!([]), json!("x"), json!(null), json!(1)] {
            assert!(schema().check(&body).is_err(), "{body}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_json(deep.as_bytes()).is_err());
        let mut nested = String::from(r#"{"twi_x":"#);
        nested.push_str(&"{\"a\":".repeat(120));
        nested.push('1');
        nested.push_str(&"}".repeat(121));
        let value = parse_json(nested.as_bytes()).expect("120 levels is within serde's limit");
        assert!(schema().check(&value).is_err(), "missing required fields");
    }

    #[test]
    fn invalid_utf8_is_not_json() {
        let mut bytes = serde_json::to_vec(&sample()).unwrap();
        let pos = bytes.windows(5).position(|w| w == b"alice").unwrap();
        bytes[pos] = 0xff;
        assert!(parse_json(&bytes).is_err());
    }

    #[test]
    fn duplicate_keys_and_non_objects_are_refused() {
        let good = serde_json::to_vec(&sample()).unwrap();
        assert_eq!(parse_json(&good).unwrap(), sample());
        for field in ["twi_account_sid", "twi_message_id", "twi_call_sid"] {
            let mut twice = String::from_utf8(good.clone()).unwrap();
            twice.insert_str(1, &format!("\"{field}\":\"XX\","));
            let err = parse_json(twice.as_bytes()).unwrap_err();
            assert!(err.contains("duplicate field"), "{field}: {err}");
        }
        for not_object in [&b"[]"[..], b"\"x\"", b"1", b"null", b"{not json"] {
            assert!(parse_json(not_object).is_err());
        }
    }

    #[test]
    fn an_array_of_objects_is_read_in_order_and_held_to_the_same_rules() {
        let batch = parse_json_array(br#"[{"a":1},{"b":[2]}]"#).unwrap();
        assert_eq!(batch, vec![json!({"a": 1}), json!({"b": [2]})]);
        assert_eq!(parse_json_array(b"[]").unwrap(), Vec::<Value>::new());
        let err = parse_json_array(br#"[{"a":1},{"a":1,"a":2}]"#).unwrap_err();
        assert!(err.contains("duplicate field"), "{err}");
        for not_objects in [&b"{}"[..], b"[1]", b"[[]]", b"[{}", b"null"] {
            assert!(parse_json_array(not_objects).is_err());
        }
    }

    #[test]
    fn notification_fields_are_read() {
        let body = sample();
        let n = Notification::from_json(&body);
        assert_eq!(n.account_sid, Some("AC0123456789abcdef0123456789abcdef"));
        assert_eq!(n.message_id, Some("WB0123456789abcdef0123456789abcdef"));
        assert_eq!(Notification::from_json(&json!([])), Notification::default());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes parse to an object or an error; a parsed object always gets a verdict.
        #[test]
        fn any_body_parses_or_errors(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(value) = parse_json(&body) {
                prop_assert!(value.is_object());
                let _ = Notification::from_json(&value);
            }
        }
    }
}
