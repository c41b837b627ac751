use serde_json::{json, Value};

use super::*;
use crate::outcome::Reason;

const CALL: &str = "CA0123456789abcdef0123456789abcdef";
const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

/// A Debugger webhook as Twilio's "Debugging Events Webhook" page describes it.
fn debugger(level: &str, payload: &Value) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("AccountSid", ACCOUNT)
        .append_pair("Level", level)
        .append_pair("Payload", &payload.to_string())
        .append_pair("PayloadType", "application/json")
        .append_pair("Sid", "NO0123456789abcdef0123456789abcdef")
        .append_pair("Timestamp", "2026-12-06T03:00:00Z")
        .finish()
        .into_bytes()
}

fn payload_13807() -> Value {
    json!({
        "resource_sid": CALL,
        "service_sid": null,
        "error_code": "13807",
        "more_info": {"Msg": "Client Notification URL Error Response", "LogLevel": "ERROR"},
        "webhook": {
            "type": "application/json",
            "request": {"url": "https://voice.example.com/twilio/client-notify", "method": "POST", "headers": {}, "parameters": {}},
            "response": {"status_code": 502, "headers": {}, "body": "{\"error\":\"upstream_5xx\"}"}
        }
    })
}

fn field_of(e: Rejection) -> String {
    assert_eq!(e.reason, Reason::Schema);
    e.field.expect("the field is named")
}

#[test]
fn a_debugger_13807_is_read_whole() {
    let item = debugger_event(&debugger("Error", &payload_13807())).unwrap();
    assert_eq!(
        item,
        Item::Error(ErrorEvent {
            sid: "NO0123456789abcdef0123456789abcdef".into(),
            account_sid: ACCOUNT.into(),
            code: 13807,
            call_sid: Some(CALL.into()),
            called_url: Some("https://voice.example.com/twilio/client-notify".into()),
            status_seen: Some(502),
            channel: Channel::Debugger,
        })
    );
}

#[test]
fn warnings_and_info_are_ignored_and_levels_are_words() {
    for level in ["Warning", "WARNING", "INFO", "debug"] {
        assert_eq!(
            debugger_event(&debugger(level, &payload_13807())).unwrap(),
            Item::Ignored
        );
    }
    assert!(matches!(
        debugger_event(&debugger("ERROR", &payload_13807())).unwrap(),
        Item::Error(_)
    ));
    for level in ["", "Err0r", "E r", "ErrorErrorErrorEr"] {
        let e = debugger_event(&debugger(level, &payload_13807())).unwrap_err();
        assert_eq!(field_of(e), "Level", "{level:?}");
    }
    // 16 letters is a word still.
    assert!(debugger_event(&debugger("ErrorErrorErrorE", &payload_13807())).is_ok());
}

#[test]
fn every_field_the_proxy_relies_on_is_checked_and_named() {
    let ok = debugger("Error", &payload_13807());
    let without = |key: &str| {
        let body: Vec<(String, String)> = form_urlencoded::parse(&ok)
            .filter(|(k, _)| k != key)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(body)
            .finish()
            .into_bytes()
    };
    for key in ["Sid", "AccountSid", "Level", "Payload"] {
        assert_eq!(field_of(debugger_event(&without(key)).unwrap_err()), key);
    }
    // Optional ones may be missing.
    assert!(debugger_event(&without("PayloadType")).is_ok());
    assert!(debugger_event(&without("Timestamp")).is_ok());

    let with = |key: &str, value: &str| {
        let mut body = without(key);
        body.extend_from_slice(format!("&{key}={}", urlencode(value)).as_bytes());
        body
    };
    let cases = [
        ("Sid", "no0123", "Sid"),
        ("Sid", "NO012g", "Sid"),
        ("Sid", "N", "Sid"),
        (
            "AccountSid",
            "CA0123456789abcdef0123456789abcdef",
            "AccountSid",
        ),
        ("ParentAccountSid", "xx", "ParentAccountSid"),
        ("PayloadType", "text/plain", "PayloadType"),
        ("Payload", "[1]", "Payload"),
        (
            "Payload",
            "{\"error_code\":\"1\",\"error_code\":\"2\"}",
            "Payload",
        ),
        ("Payload", "not json", "Payload"),
    ];
    for (key, value, field) in cases {
        let e = debugger_event(&with(key, value)).unwrap_err();
        assert_eq!(field_of(e), field, "{key}={value}");
    }
    assert!(debugger_event(&with("ParentAccountSid", ACCOUNT)).is_ok());
}

fn urlencode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[test]
fn codes_are_numbers_of_one_to_six_digits() {
    let code = |v: Value| {
        let mut p = payload_13807();
        p["error_code"] = v;
        debugger_event(&debugger("Error", &p))
    };
    for (v, want) in [
        (json!("13807"), 13807),
        (json!(13807), 13807),
        (json!("0"), 0),
        (json!("999999"), 999_999),
        (json!(999_999), 999_999),
    ] {
        match code(v.clone()).unwrap() {
            Item::Error(e) => assert_eq!(e.code, want, "{v}"),
            other => panic!("{v}: {other:?}"),
        }
    }
    for v in [
        json!("1000000"),
        json!(1_000_000),
        json!(""),
        json!("13807a"),
        json!(-1),
        json!(1.5),
        json!(null),
    ] {
        let e = code(v.clone()).unwrap_err();
        assert_eq!(field_of(e), "Payload/error_code", "{v}");
    }
}

#[test]
fn only_a_call_sid_names_the_call_and_the_status_is_an_http_status() {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut p = payload_13807();
        edit(&mut p);
        debugger_event(&debugger("Error", &p))
    };
    let event = |r: Result<Item, Rejection>| match r.unwrap() {
        Item::Error(e) => e,
        other => panic!("{other:?}"),
    };
    let e = event(with(&|p| {
        p["resource_sid"] = json!("SM0123456789abcdef0123456789abcdef")
    }));
    assert_eq!(e.call_sid, None, "a message SID is not a call");
    let e = event(with(&|p| {
        p.as_object_mut()
            .unwrap()
            .remove("resource_sid")
            .map(drop)
            .unwrap_or(())
    }));
    assert_eq!(e.call_sid, None);
    // A string that is no SID is refused, not skipped: it would go into the log line.
    for bad in [json!(12), json!("not a sid"), json!("CA<not hex>")] {
        let r = with(&|p| p["resource_sid"] = bad.clone());
        assert_eq!(field_of(r.unwrap_err()), "Payload/resource_sid", "{bad}");
    }

    let e = event(with(&|p| {
        p["webhook"]["response"]["status_code"] = json!("503")
    }));
    assert_eq!(e.status_seen, Some(503));
    let e = event(with(&|p| {
        p["webhook"]["response"]["status_code"] = json!(100)
    }));
    assert_eq!(e.status_seen, Some(100));
    let e = event(with(&|p| {
        p["webhook"]["response"]["status_code"] = json!(999)
    }));
    assert_eq!(e.status_seen, Some(999));
    let e = event(with(&|p| {
        p.as_object_mut()
            .unwrap()
            .remove("webhook")
            .map(drop)
            .unwrap_or(())
    }));
    assert_eq!((e.status_seen, e.called_url), (None, None));
    // As a string, exactly three digits: "0503" or "+503" is no status Twilio writes.
    for bad in [
        json!(99),
        json!(1000),
        json!("5xx"),
        json!("0503"),
        json!("+503"),
        json!(true),
    ] {
        let r = with(&|p| p["webhook"]["response"]["status_code"] = bad.clone());
        assert_eq!(
            field_of(r.unwrap_err()),
            "Payload/webhook/response/status_code",
            "{bad}"
        );
    }
    let r = with(&|p| p["webhook"]["request"]["url"] = json!(5));
    assert_eq!(field_of(r.unwrap_err()), "Payload/webhook/request/url");
}

#[test]
fn a_long_url_is_cut_to_its_bound() {
    let mut p = payload_13807();
    // 27 ASCII bytes, then two-byte characters: byte 2048 falls inside one, so the cut steps
    // back to the character's start (2047) rather than past it or through it.
    let long = format!("https://voice.example.com/x{}", "é".repeat(URL_BYTES));
    p["webhook"]["request"]["url"] = json!(long);
    let Item::Error(e) = debugger_event(&debugger("Error", &p)).unwrap() else {
        panic!()
    };
    let url = e.called_url.unwrap();
    assert_eq!(url.len(), URL_BYTES - 1 + "…".len());
    assert_eq!(url, format!("{}…", &long[..URL_BYTES - 1]));
    let exact = format!("https://v.example.com/{}", "a".repeat(URL_BYTES - 22));
    assert_eq!(exact.len(), URL_BYTES);
    p["webhook"]["request"]["url"] = json!(exact.clone());
    let Item::Error(e) = debugger_event(&debugger("Error", &p)).unwrap() else {
        panic!()
    };
    assert_eq!(
        e.called_url,
        Some(exact),
        "a URL of exactly the bound is kept whole"
    );
}

/// An Event Streams error log as Twilio's "Error Logs" event type page shows it.
fn error_logged(level: &str, code: &str) -> Value {
    json!({
        "specversion": "1.0",
        "type": "com.twilio.error-logs.error.logged",
        "source": "AB00000000000000000000000001",
        "id": "NO00000000000000000000000001",
        "dataschema": "https://events-schemas.twilio.com/ErrorLogs.Error/2",
        "datacontenttype": "application/json",
        "data": {
            "sid": "NO0000000000000000000000000000001",
            "account_sid": "AC0000000000000000000000000000001",
            "date_created": "2026-12-06T03:00:00.000Z",
            "level": level,
            "master_account_sid": "AC0000000000000000000000000000001",
            "request_sid": "RQ0000000000000000000000000000001",
            "correlation_sid": CALL,
            "product_name": "Programmable Voice",
            "error_code": code
        }
    })
}

#[test]
fn an_event_streams_batch_counts_its_error_logs_and_ignores_the_rest() {
    let batch = vec![
        error_logged("ERROR", "13807"),
        error_logged("INFO", "82005"),
        json!({"type": "com.twilio.eventstreams.test-event", "data": {"test_id": "x"}}),
        error_logged("ERROR", "11200"),
    ];
    let items = event_streams(&batch).unwrap();
    assert_eq!(items.len(), 4);
    let Item::Error(first) = &items[0] else {
        panic!("{:?}", items[0])
    };
    assert_eq!(first.code, 13807);
    assert_eq!(first.call_sid.as_deref(), Some(CALL));
    assert_eq!(first.channel, Channel::EventStreams);
    assert_eq!(items[1], Item::Ignored);
    assert_eq!(items[2], Item::Ignored);
    assert!(matches!(&items[3], Item::Error(e) if e.code == 11200));
    assert_eq!(
        event_streams_account(&batch).as_deref(),
        Some("AC0000000000000000000000000000001")
    );
}

#[test]
fn an_event_streams_batch_breaking_a_rule_is_refused_whole() {
    assert_eq!(field_of(event_streams(&[]).unwrap_err()), "/");
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut bad = error_logged("ERROR", "13807");
        edit(&mut bad);
        field_of(event_streams(&[error_logged("ERROR", "13807"), bad]).unwrap_err())
    };
    assert_eq!(broken(&|e| e["type"] = json!(1)), "/1/type");
    assert_eq!(broken(&|e| e["data"] = json!("x")), "/1/data");
    assert_eq!(broken(&|e| e["data"]["sid"] = json!("x")), "/1/data/sid");
    assert_eq!(
        broken(&|e| e["data"]["account_sid"] = json!("NO0123")),
        "/1/data/account_sid"
    );
    assert_eq!(
        broken(&|e| e["data"]["error_code"] = json!("x")),
        "/1/data/error_code"
    );
    assert_eq!(broken(&|e| e["data"]["level"] = json!(3)), "/1/data/level");
    assert_eq!(
        broken(&|e| e["data"]["correlation_sid"] = json!(3)),
        "/1/data/correlation_sid"
    );
}

#[test]
fn sids_have_their_shape() {
    assert!(sid_shaped(CALL, Some("CA")));
    assert!(sid_shaped("NO0", None));
    assert!(sid_shaped(&format!("NO{}", "a".repeat(62)), None));
    assert!(!sid_shaped(&format!("NO{}", "a".repeat(63)), None));
    assert!(!sid_shaped("NO", None));
    assert!(!sid_shaped(CALL, Some("AC")));
    assert!(!sid_shaped("Ca0123", None));
    assert!(!sid_shaped("CA01x3", None));
}
