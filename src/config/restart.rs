//! Which config changes a live reload may apply, and which need a restart.
//!
//! Owns that list, decided on the YAML as written (before defaults), so a refusal names the
//! exact key the operator edited. Reloadable: `limits`, `trusted_proxies`, `secrets`,
//! `allowed_accounts`, `routes`, `probe`, `logging.access_log` and `upstreams.NAME.peers`.
//! Everything else is bound to sockets, threads, files or in-memory state built at start:
//! `server`, `listeners`, `admin`, `buffer`, `dedupe`, the rest of `logging`, the set of
//! upstream groups and their other keys. Pure: no I/O.

use serde_yaml::Value;

/// Top-level sections a reload may change as a whole.
const RELOADABLE: &[&str] = &[
    "limits",
    "trusted_proxies",
    "secrets",
    "allowed_accounts",
    "routes",
    "probe",
];

/// The dotted keys whose change between `old` and `new` (two config files' text) needs a
/// restart; empty when a reload may apply `new`. Text that is not YAML is reported as the key
/// `(file)`: validation says what is wrong with it.
pub fn restart_required(old: &str, new: &str) -> Vec<String> {
    let (Ok(old), Ok(new)) = (
        serde_yaml::from_str::<Value>(old),
        serde_yaml::from_str::<Value>(new),
    ) else {
        return vec!["(file)".into()];
    };
    let mut changed = Vec::new();
    for key in keys(&old, &new) {
        if RELOADABLE.contains(&key.as_str()) {
            continue;
        }
        let (a, b) = (get(&old, &key), get(&new, &key));
        match key.as_str() {
            "logging" => diff_except(&key, a, b, &["access_log"], &mut changed),
            "upstreams" => upstreams(a, b, &mut changed),
            _ => diff(&key, a, b, &mut changed),
        }
    }
    changed
}

fn upstreams(old: Option<&Value>, new: Option<&Value>, changed: &mut Vec<String>) {
    let (old, new) = (old.unwrap_or(&Value::Null), new.unwrap_or(&Value::Null));
    for name in keys(old, new) {
        let key = format!("upstreams.{name}");
        match (get(old, &name), get(new, &name)) {
            (Some(a), Some(b)) => diff_except(&key, Some(a), Some(b), &["peers"], changed),
            // Groups own health-check services and the redelivery worker's targets.
            _ => changed.push(key),
        }
    }
}

/// Like [`diff`], ignoring the mapping keys in `skip`.
fn diff_except(
    key: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    skip: &[&str],
    changed: &mut Vec<String>,
) {
    // A section that is absent is an empty one: adding `logging: { access_log: false }` to a
    // file without a `logging` section changes `logging.access_log` only.
    let empty = Value::Mapping(Default::default());
    let (a, b) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    if !a.is_mapping() || !b.is_mapping() {
        return diff(key, old, new, changed);
    }
    for k in keys(a, b) {
        if !skip.contains(&k.as_str()) {
            diff(&format!("{key}.{k}"), get(a, &k), get(b, &k), changed);
        }
    }
}

/// Every leaf under `key` that differs, as a dotted key (`listeners[0].address`).
fn diff(key: &str, old: Option<&Value>, new: Option<&Value>, changed: &mut Vec<String>) {
    match (old, new) {
        (Some(Value::Mapping(_)), Some(Value::Mapping(_))) => {
            diff_except(key, old, new, &[], changed)
        }
        (Some(Value::Sequence(a)), Some(Value::Sequence(b))) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{key}[{i}]"), Some(x), Some(y), changed);
            }
        }
        (a, b) if a == b => {}
        _ => changed.push(key.to_string()),
    }
}

/// The union of both mappings' string keys, sorted.
fn keys(a: &Value, b: &Value) -> Vec<String> {
    let mut out: Vec<String> = [a, b]
        .iter()
        .filter_map(|v| v.as_mapping())
        .flat_map(|m| m.keys())
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping()?.get(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
server: { threads: 2 }
listeners: [{ address: "127.0.0.1:8080" }]
admin: { address: "127.0.0.1:9090" }
secrets: { auth_token: { file: a } }
upstreams:
  handler: { peers: ["127.0.0.1:9000"], connect_timeout: 1s }
routes: [{ path: /a, upstream: handler, body: json }]
logging: { level: info, access_log: true }
"#;

    fn changed(from: &str, to: &str) -> Vec<String> {
        restart_required(BASE, &BASE.replace(from, to))
    }

    #[test]
    fn reloadable_changes_need_no_restart() {
        assert!(changed("file: a", "file: b").is_empty());
        assert!(changed("path: /a", "path: /b").is_empty());
        assert!(changed("127.0.0.1:9000", "10.0.0.1:9000").is_empty());
        assert!(changed("access_log: true", "access_log: false").is_empty());
        assert!(changed("logging:", "allowed_accounts: []\nlogging:").is_empty());
        assert!(restart_required(BASE, BASE).is_empty());
    }

    /// Found by tests/reload.rs: a `logging` section added with `access_log` alone, to a file
    /// that had none, was refused as a change of `logging`.
    #[test]
    fn a_logging_section_added_with_access_log_alone_needs_no_restart() {
        let without = "routes: []\n";
        assert!(
            restart_required(without, "logging: { access_log: false }\nroutes: []\n").is_empty()
        );
        assert_eq!(
            restart_required(without, "logging: { format: json }\nroutes: []\n"),
            ["logging.format"]
        );
    }

    #[test]
    fn restart_changes_are_named_by_key() {
        assert_eq!(changed("threads: 2", "threads: 3"), ["server.threads"]);
        assert_eq!(changed("8080", "8081"), ["listeners[0].address"]);
        assert_eq!(changed("9090", "9091"), ["admin.address"]);
        assert_eq!(changed("level: info", "level: warn"), ["logging.level"]);
        assert_eq!(
            changed("connect_timeout: 1s", "connect_timeout: 2s"),
            ["upstreams.handler.connect_timeout"]
        );
        assert_eq!(
            changed("  handler:", "  other:"),
            ["upstreams.handler", "upstreams.other"]
        );
        assert_eq!(
            changed("logging:", "buffer: { path: b.redb }\nlogging:"),
            ["buffer"]
        );
        assert_eq!(
            changed(
                r#"[{ address: "127.0.0.1:8080" }]"#,
                r#"[{ address: "127.0.0.1:8080" }, { address: "127.0.0.1:8081" }]"#
            ),
            ["listeners"]
        );
    }

    #[test]
    fn unparsable_text_is_reported_not_panicked_on() {
        assert_eq!(restart_required(BASE, "server: [unclosed"), ["(file)"]);
    }
}
