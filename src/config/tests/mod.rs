use std::path::Path;
use std::time::Duration;

use super::*;

mod buffer;
mod ceilings;
mod probe;
mod twilio_errors;
mod warnings;
use crate::signature::{Algorithm, SigningKey};

/// The environment variable the test configs name for their auth token.
pub(super) const TOKEN_VAR: &str = "TNP_TEST_TOKEN";

/// Secrets as a test wants them: environment variables from a fixed list (the process
/// environment is never read or changed), files from disk.
struct TestSecrets(&'static [(&'static str, &'static str)]);

impl SecretSource for TestSecrets {
    fn env(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    fn file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

const SECRETS: TestSecrets = TestSecrets(&[
    (TOKEN_VAR, "t"),
    ("TWILIO_AUTH_TOKEN", "example-token"),
    (
        "TNP_TEST_DB",
        "postgres://proxy:hunter2@db.internal:5432/notify",
    ),
]);

pub(super) const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/conf/schemas/client-notification.schema.json"
);

pub(super) fn yaml(route_extra: &str, top_extra: &str, token_var: &str) -> String {
    format!(
        r#"
listeners:
  - address: 127.0.0.1:8080
admin:
  address: 127.0.0.1:9090
secrets:
  auth_token: {{ env: {token_var} }}
upstreams:
  handler:
    peers: [127.0.0.1:9000]
routes:
  - path: /notify
    public_url: https://voice.example.com/notify
    upstream: handler
    body: json
    schema: {SCHEMA}
{route_extra}
{top_extra}
"#
    )
}

pub(super) fn load(text: &str) -> anyhow::Result<Config> {
    Config::from_yaml_with(text, Path::new("/etc/tnp/test.yaml"), &SECRETS)
}

pub(super) fn err(text: &str) -> String {
    format!("{:#}", load(text).expect_err("config should be rejected"))
}

/// Each case (route keys, top-level keys, expected text): loads when the text is empty, else is
/// refused with an error containing it.
pub(super) fn check_cases(cases: &[(&str, &str, &str)]) {
    for &(route_extra, top_extra, needle) in cases {
        let result = load(&yaml(route_extra, top_extra, TOKEN_VAR));
        if needle.is_empty() {
            assert!(
                result.is_ok(),
                "{route_extra} {top_extra}: {:#}",
                result.unwrap_err()
            );
        } else {
            let e = format!("{:#}", result.expect_err(route_extra));
            assert!(e.contains(needle), "expected {needle:?} in {e}");
        }
    }
}

#[test]
fn example_config_in_conf_loads() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/twilio-notify-proxy.yaml"
    ));
    let config =
        Config::load_with(path, &SECRETS).expect("conf/twilio-notify-proxy.yaml must stay valid");
    assert_eq!(config.routes.len(), 1);
    assert_eq!(config.routes[0].body, BodyKind::Json);
    assert!(config.routes[0].schema.is_some());
    assert_eq!(config.limits.max_body_bytes, 65536);
}

#[test]
fn minimal_config_gets_defaults() {
    let c = load(&yaml("", "", TOKEN_VAR)).unwrap();
    assert_eq!(c.routes[0].name, "/notify");
    assert_eq!(c.routes[0].schema_mode, SchemaMode::Enforce);
    assert_eq!(c.upstreams[0].connect_timeout, Duration::from_secs(2));
    assert_eq!(c.limits.body_timeout, Duration::from_secs(5));
    assert_eq!(c.keys.auth_tokens.len(), 1);
}

#[test]
fn unknown_key_is_named() {
    let e = err(&yaml("    retries: 3", "", TOKEN_VAR));
    assert!(e.contains("unknown field `retries`"), "{e}");
    assert!(e.contains("test.yaml"), "names the file: {e}");
}

#[test]
fn missing_secret_env_is_named_without_value() {
    let e = err(&yaml("", "", "TNP_TEST_TOKEN_DEFINITELY_UNSET"));
    assert!(e.contains("secrets.auth_token"), "{e}");
    assert!(e.contains("TNP_TEST_TOKEN_DEFINITELY_UNSET"), "{e}");
}

#[test]
fn secret_from_file_is_trimmed_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "file-token\n").unwrap();
    let text = yaml("", "", "X").replace("{ env: X }", &format!("{{ file: {} }}", file.display()));
    let c = load(&text).unwrap();
    let url = crate::signature::SignedUrl::parse("https://h.example/n").unwrap();
    let sig = SigningKey::new(Algorithm::HmacSha1, b"file-token").sign(&url, b"");
    let keys = c.keys.select(None, None).unwrap();
    assert!(crate::signature::verify_signature(&keys, &url, b"", sig.as_bytes()).is_ok());
    assert!(
        !format!("{c:?}").contains("file-token"),
        "Debug output must not leak the secret"
    );

    std::fs::write(&file, "\n").unwrap();
    let e = err(&text);
    assert!(
        e.contains("the secret is empty") && !e.contains("file-token"),
        "{e}"
    );
}

#[test]
fn bad_values_name_their_key() {
    let base = yaml("", "", TOKEN_VAR);
    let cases = [
        ("body: json", "body: xml", "routes[0].body"),
        ("upstream: handler", "upstream: nope", "routes[0].upstream"),
        (
            "public_url: https://voice.example.com/notify",
            "public_url: https://voice.example.com/notify?x=1",
            "routes[0].public_url",
        ),
        (
            "public_url: https://voice.example.com/notify",
            "public_url: https://bad_host.example.com/notify",
            "underscore",
        ),
        ("127.0.0.1:9090", "127.0.0.1:8080", "admin.address"),
        (
            "peers: [127.0.0.1:9000]",
            "peers: []",
            "upstreams.handler.peers",
        ),
        (
            "address: 127.0.0.1:8080",
            "address: localhost",
            "listeners[0].address",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(base.contains(from), "{from}");
        let e = err(&base.replacen(from, to, 1));
        assert!(e.contains(needle), "{to}: expected {needle:?} in {e}");
    }
    let e = err(&yaml("    schema_mode: loud", "", TOKEN_VAR));
    assert!(e.contains("routes[0].schema_mode"), "{e}");
    let e = err(&yaml("", "limits: { body_timeout: soon }", TOKEN_VAR));
    assert!(e.contains("limits.body_timeout"), "{e}");
    let e = err(&yaml("", "allowed_accounts: [AC123]", TOKEN_VAR));
    assert!(e.contains("allowed_accounts[0]"), "{e}");
    let e = err(&yaml("", "trusted_proxies: [not-an-ip]", TOKEN_VAR));
    assert!(e.contains("trusted_proxies[0]"), "{e}");
}

#[test]
fn schema_on_form_route_and_duplicate_paths_are_rejected() {
    let e = err(&yaml("", "", TOKEN_VAR).replace("body: json", "body: form"));
    assert!(e.contains("routes[0].schema"), "{e}");
    let dup = format!(
        "{}  - path: /notify\n    allowed_hosts: [voice.example.com]\n    upstream: handler\n    body: form\n",
        yaml("", "", TOKEN_VAR)
    );
    let e = err(&dup);
    assert!(e.contains("routes[1].path"), "{e}");
}

#[test]
fn a_route_pins_its_signed_url_by_public_url_or_allowed_hosts() {
    let extra = |route: &str| format!("{}{route}", yaml("", "", TOKEN_VAR));
    let e = err(&extra(
        "  - path: /other\n    upstream: handler\n    body: form\n",
    ));
    assert!(
        e.contains("routes[1]: set public_url") && e.contains("allowed_hosts"),
        "{e}"
    );
    let e = err(&yaml(
        "    allowed_hosts: [voice.example.com]",
        "",
        TOKEN_VAR,
    ));
    assert!(
        e.contains("routes[0].allowed_hosts: only for a route without public_url"),
        "{e}"
    );
    for bad in ["a b", "host:", "a:b:c", "h:99999", ":80"] {
        let e = err(&extra(&format!(
            "  - path: /other\n    allowed_hosts: [\"{bad}\"]\n    upstream: handler\n    body: form\n"
        )));
        assert!(e.contains("routes[1].allowed_hosts[0]"), "{bad}: {e}");
    }
    let c = load(&extra(
        "  - path: /other\n    allowed_hosts: [Voice.Example.com, \"lb:8443\"]\n    upstream: handler\n    body: form\n",
    ))
    .unwrap();
    assert_eq!(c.routes[1].allowed_hosts, ["voice.example.com", "lb:8443"]);
}

#[test]
fn invalid_schema_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"type": 12}"#).unwrap();
    let e = err(&yaml("", "", TOKEN_VAR).replace(SCHEMA, bad.to_str().unwrap()));
    assert!(e.contains("not a valid JSON Schema"), "{e}");
}

#[test]
fn delivery_settings_are_validated() {
    let cases = [
        (
            "    retry: { deadline: 15s }",
            "",
            "routes[0].retry.deadline",
        ),
        (
            "    retry: { on_status: [404] }",
            "",
            "routes[0].retry.on_status[0]",
        ),
        (
            "    retry: { max_attempts: 0 }",
            "",
            "routes[0].retry.max_attempts",
        ),
        (
            "    retry: { backoff: { initial: 2s, max: 1s } }",
            "",
            "routes[0].retry.backoff",
        ),
        ("    on_exhausted: buffer", "", "no buffer section"),
        ("    on_exhausted: retry", "", "routes[0].on_exhausted"),
        (
            "    on_exhausted: buffer\n    buffered_status: 202",
            "buffer: { path: /tmp/x.redb }",
            "",
        ),
        (
            "    on_exhausted: buffer\n    buffered_status: 503",
            "buffer: { path: /tmp/x.redb }",
            "routes[0].buffered_status",
        ),
        (
            "",
            "buffer: { path: /tmp/x.redb, max_messages: 0 }",
            "buffer.max_messages",
        ),
        (
            "",
            "buffer: { path: /tmp/x.redb, max_dead_letters: 0 }",
            "buffer.max_dead_letters",
        ),
        ("", "buffer: { max_messages: 5 }", "buffer.path: required"),
        (
            "",
            "buffer: { path: /tmp/x.redb, lease: 5s }",
            "buffer.lease: only for backend: postgres",
        ),
        (
            "",
            "buffer: { backend: postgres, path: /tmp/x.redb, url: { env: TNP_TEST_DB } }",
            "buffer.path: only for backend: redb",
        ),
        ("", "buffer: { backend: postgres }", "buffer.url: required"),
        (
            "",
            "buffer: { backend: postgres, url: { env: TNP_TEST_UNSET_DB } }",
            "buffer.url: environment variable TNP_TEST_UNSET_DB is not set",
        ),
        (
            "",
            "buffer: { backend: postgres, url: { env: TNP_TEST_DB }, schema: Bad-Name }",
            "buffer.schema",
        ),
        (
            "",
            "buffer: { backend: postgres, url: { env: TNP_TEST_DB }, pool_size: 0 }",
            "buffer.pool_size",
        ),
        ("", "buffer: { backend: etcd }", "buffer.backend"),
        (
            "    on_exhausted: buffer\n    retry: { deadline: 10s }",
            "buffer: { backend: postgres, url: { env: TNP_TEST_DB }, store_timeout: 3s }",
            "buffer.store_timeout: route \"/notify\" could answer after 16.25s",
        ),
        (
            "    on_exhausted: buffer\n    retry: { deadline: 9s }",
            "buffer: { backend: postgres, url: { env: TNP_TEST_DB } }",
            "",
        ),
        (
            "",
            "buffer: { backend: postgres, url: { env: TNP_TEST_DB }, lease: 14s }",
            "buffer.lease: 14s does not outlast one redelivery to upstreams.handler",
        ),
        ("", "dedupe: { key: call_sid }", "dedupe.key"),
        ("", "logging: { format: xml }", "logging.format"),
        ("", "logging: { level: \"[[\" }", "logging.level"),
    ];
    check_cases(&cases);
    let c = load(&yaml(
        "    on_exhausted: buffer",
        "buffer: { path: data/b.redb }",
        TOKEN_VAR,
    ))
    .unwrap();
    assert_eq!(
        match c.buffer.unwrap().backend {
            BufferBackend::Redb { path } => path,
            other => panic!("{other:?}"),
        },
        Path::new("/etc/tnp/data/b.redb"),
        "relative to the config file"
    );
    assert!(
        matches!(c.routes[0].on_exhausted, OnExhausted::Buffer { ttl, .. } if ttl == Duration::from_secs(60))
    );
    assert_eq!(c.routes[0].retry.deadline, Duration::from_secs(8));
    assert_eq!(c.dedupe.unwrap().key, DedupeKey::Auto);
}

#[test]
fn secrets_come_from_the_injected_source_not_the_process() {
    const VAR: &str = "TNP_TEST_ONLY_IN_THE_INJECTED_SOURCE";
    assert!(std::env::var(VAR).is_err(), "{VAR} must not be set here");
    let text = yaml("", "", VAR);
    let injected = TestSecrets(&[(VAR, "injected-token")]);
    let c = Config::from_yaml_with(&text, Path::new("/etc/tnp/test.yaml"), &injected).unwrap();
    let url = crate::signature::SignedUrl::parse("https://h.example/n").unwrap();
    let sig = SigningKey::new(Algorithm::HmacSha1, b"injected-token").sign(&url, b"");
    let keys = c.keys.select(None, None).unwrap();
    assert!(crate::signature::verify_signature(&keys, &url, b"", sig.as_bytes()).is_ok());

    // The real source reads the process environment, where the variable is not set.
    let e = format!(
        "{:#}",
        Config::from_yaml(&text, Path::new("/etc/tnp/test.yaml")).unwrap_err()
    );
    assert!(e.contains(VAR) && e.contains("is not set"), "{e}");
}

#[test]
fn load_without_keys_reads_no_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, yaml("", "", "TNP_TEST_TOKEN_DEFINITELY_UNSET")).unwrap();
    let c = Config::load_without_keys(&path).unwrap();
    assert!(c.keys.auth_tokens.is_empty());
    assert!(
        Config::load(&path).is_err(),
        "the secret is needed to serve"
    );
}

#[test]
fn closed_choices_name_their_key_and_the_accepted_values() {
    let cases = [
        (
            "body: json",
            "body: xml",
            "routes[0].body",
            &["json", "form"][..],
        ),
        (
            "body: json",
            "body: json\n    on_exhausted: retry",
            "routes[0].on_exhausted",
            &["fail", "buffer"],
        ),
    ];
    let base = yaml("", "", TOKEN_VAR);
    for (from, to, key, accepted) in cases {
        let e = err(&base.replacen(from, to, 1));
        assert!(e.contains(key), "{to}: expected {key:?} in {e}");
        for value in accepted {
            assert!(
                e.contains(&format!("`{value}`")),
                "{to}: expected {value} in {e}"
            );
        }
    }
    let e = err(&yaml("", "dedupe: { key: call_sid }", TOKEN_VAR));
    for value in ["auto", "idempotency_token", "message_id"] {
        assert!(e.contains(&format!("`{value}`")), "{e}");
    }
}

#[test]
fn default_retry_policy_is_the_documented_one() {
    let p = crate::policy::RetryPolicy::default();
    assert_eq!(p.max_attempts.get(), 3);
    assert_eq!(p.deadline, Duration::from_secs(8));
    assert_eq!(p.retry_statuses, [500, 502, 503, 504]);
    let c = load(&yaml("", "", TOKEN_VAR)).unwrap();
    assert_eq!(
        c.routes[0].retry, p,
        "a route without retry: gets the same policy"
    );
}
