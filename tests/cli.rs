//! The command line as a user runs it: `check`, `sign`, `healthcheck`, `demo-handler`, and the
//! README's `demo` walkthrough.

mod harness;

use std::process::{Command, Output};

use harness::*;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("TWILIO_AUTH_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run binary")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The example config with its fixed ports swapped for `ports` (tests never use fixed ports):
/// the listener on `ports.public`, admin on `ports.admin`, the handler on `ports.extra[0]`.
fn example_config(dir: &std::path::Path, ports: &Ports) -> String {
    let example = std::fs::read_to_string(repo_path("conf/twilio-notify-proxy.yaml")).unwrap();
    example
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", ports.public))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{}", ports.admin))
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{}", ports.extra[0]))
        .replace(
            "/tmp/twilio-notify-proxy/buffer.redb",
            dir.join("buffer.redb").to_str().unwrap(),
        )
        .replace(
            "schemas/client-notification.schema.json",
            repo_path("conf/schemas/client-notification.schema.json")
                .to_str()
                .unwrap(),
        )
}

/// `demo` on the example config, through the harness (which retries a lost port), waited for
/// until its admin listener, its public listener and its sample handler all answer.
fn start_demo(dir: &std::path::Path, extra: &[&str]) -> Proxy {
    let mut launch = Launch::run();
    launch.args = ["demo"]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
    launch.env = vec![
        ("TWILIO_AUTH_TOKEN".into(), "demo-token".into()),
        ("RUST_LOG".into(), "warn".into()),
    ];
    launch.extra_ports = 1;
    Proxy::launch(&launch, |ports| example_config(dir, ports))
}

#[test]
fn check_accepts_the_example_config() {
    let config = repo_path("conf/twilio-notify-proxy.yaml");
    // A long secret that cannot occur by chance: if `check` printed it, anywhere, this finds it.
    let secret = format!("{}-{}", fresh_token(), "Zq8vR2mXk4TnW7pLc9sHj3dF");
    let out = run(
        &["check", "--config", config.to_str().unwrap()],
        &[("TWILIO_AUTH_TOKEN", &secret)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok:"));
    for stream in [&out.stdout, &out.stderr] {
        assert!(!text(stream).contains(&secret), "never prints the secret");
    }
}

#[test]
fn check_fails_with_exit_1_naming_the_problem() {
    let config = repo_path("conf/twilio-notify-proxy.yaml");
    let out = run(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("secrets.auth_token") && err.contains("TWILIO_AUTH_TOKEN"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    let example = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &bad,
        example.replace(
            "schema_mode: enforce",
            "schema_mode: enforce\n    retries: 3",
        ),
    )
    .unwrap();
    let out = run(
        &["check", "--config", bad.to_str().unwrap()],
        &[("TWILIO_AUTH_TOKEN", "x")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("unknown field `retries`"),
        "{err}"
    );

    let out = run(&["check", "--config", "/nonexistent.yaml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent.yaml"));
}

/// `limits.max_body_bytes` is at most 1 MiB (docs/config.md): exactly 1 MiB passes `check`, one
/// byte more fails it naming the key, as does 0.
#[test]
fn check_holds_max_body_bytes_to_its_1_mib_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo_path("conf/twilio-notify-proxy.yaml")).unwrap();
    let schema = repo_path("conf/schemas/client-notification.schema.json");
    let check = |value: &str| {
        let path = dir.path().join(format!("max-{value}.yaml"));
        let yaml = example
            .replace("max_body_bytes: 65536", &format!("max_body_bytes: {value}"))
            .replace(
                "schemas/client-notification.schema.json",
                schema.to_str().unwrap(),
            );
        assert!(yaml.contains(&format!("max_body_bytes: {value}")));
        std::fs::write(&path, yaml).unwrap();
        run(
            &["check", "--config", path.to_str().unwrap()],
            &[("TWILIO_AUTH_TOKEN", "x")],
        )
    };
    let out = check("1048576");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for refused in ["1048577", "0"] {
        let out = check(refused);
        assert_eq!(out.status.code(), Some(1), "{refused} passed check");
        let err = text(&out.stderr);
        assert!(err.contains("limits.max_body_bytes"), "{refused}: {err}");
    }
}

#[test]
fn sign_json_matches_twilio_sdk_vector() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"{"property": "value", "boolean": true}"#).unwrap();
    let out = run(
        &[
            "sign",
            "--url",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            "--json",
            body.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[("TWILIO_AUTH_TOKEN", "12345")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Twilio SDK test vector json_body_sha256.
    assert_eq!(
        v["url"],
        "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
    );
    assert_eq!(v["signature"], "a9nBmqA0ju/hNViExpshrM61xv4=");
}

#[test]
fn sign_form_params_matches_twilio_sdk_vector() {
    let out = run(
        &[
            "sign",
            "--url",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            "--param",
            "CallSid=CA1234567890ABCDE",
            "--param",
            "Caller=+14158675309",
            "--param",
            "Digits=1234",
            "--param",
            "From=+14158675309",
            "--param",
            "To=+18005551212",
        ],
        &[("TWILIO_AUTH_TOKEN", "12345")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("X-Twilio-Signature: RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn sign_without_secret_fails_clearly() {
    let out = run(
        &["sign", "--url", "https://x.example/n", "--param", "a=b"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("TWILIO_AUTH_TOKEN"));
}

/// The README walkthrough: `demo` with the example config, `sign`, a POST that gets 200 and a
/// tampered one that gets 403.
#[test]
fn readme_demo_walkthrough() {
    let dir = tempfile::tempdir().unwrap();
    let child = start_demo(dir.path(), &[]);
    let proxy_addr = child.addr;

    let body_file = dir.path().join("notification.json");
    let body = notification();
    std::fs::write(&body_file, &body).unwrap();
    let out = run(
        &[
            "sign",
            "--url",
            "https://voice.example.com/twilio/client-notify",
            "--json",
            body_file.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[("TWILIO_AUTH_TOKEN", "demo-token")],
    );
    let signed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let target = signed["url"]
        .as_str()
        .unwrap()
        .strip_prefix("https://voice.example.com")
        .unwrap()
        .to_string();
    let signature = signed["signature"].as_str().unwrap().to_string();

    let ok = send_raw(
        proxy_addr,
        &request_with(&target, &[("X-Twilio-Signature", &signature)], &body),
    )
    .unwrap();
    let again = send_raw(
        proxy_addr,
        &request_with(&target, &[("X-Twilio-Signature", &signature)], &body),
    )
    .unwrap();
    let unknown_identity = body.replace("client:bob", "client:carol");
    let tampered = send_raw(
        proxy_addr,
        &request_with(
            &target,
            &[("X-Twilio-Signature", &signature)],
            &unknown_identity,
        ),
    )
    .unwrap();
    drop(child);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["dispatched"], "bob");
    assert_eq!(
        (again.status, again.json()["duplicate"].as_bool()),
        (200, Some(true))
    );
    assert_eq!(
        (tampered.status, tampered.reason().as_str()),
        (403, "body_hash_mismatch")
    );
}

#[test]
fn run_test_flag_builds_everything_then_exits_0() {
    // Pingora's --test: used before a graceful upgrade to prove the new binary and config start.
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        public: free_port(),
        admin: free_port(),
        extra: vec![free_port()],
    };
    let config = dir.path().join("proxy.yaml");
    std::fs::write(&config, example_config(dir.path(), &ports)).unwrap();
    let out = run(
        &["run", "--config", config.to_str().unwrap(), "--test"],
        &[("TWILIO_AUTH_TOKEN", "x"), ("RUST_LOG", "error")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `demo --identity` replaces the default identities: the named one is dispatched, `bob` (a
/// default) now has no binding and gets the handler's 404 passed through.
#[test]
fn demo_identity_flag_sets_the_known_identities() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(dir.path(), &["--identity", "carol"]);
    let key = twilio_notify_proxy::signature::SigningKey::new(
        twilio_notify_proxy::signature::Algorithm::HmacSha1,
        b"demo-token",
    );
    let send_to = |identity: &str| {
        let body = notification().replace("client:bob", &format!("client:{identity}"));
        let (url, sig) =
            twilio_notify_proxy::signature::sign_json(&key, PUBLIC_URL, body.as_bytes()).unwrap();
        let target = url.strip_prefix("https://voice.example.com").unwrap();
        demo.send(&request_with(
            target,
            &[("X-Twilio-Signature", &sig)],
            &body,
        ))
    };
    let carol = send_to("carol");
    assert_eq!(
        (carol.status, carol.json()["dispatched"].as_str()),
        (200, Some("carol")),
        "{}",
        carol.text()
    );
    let bob = send_to("bob");
    assert_eq!(
        (bob.status, bob.json()["error"].as_str()),
        (404, Some("no_binding")),
        "{}",
        bob.text()
    );
}

/// `demo-handler` alone, as a compose stack runs it in its own container: it answers on
/// --listen for the identities given (which replace the defaults), and SIGTERM stops it cleanly.
#[test]
fn demo_handler_serves_alone_until_sigterm() {
    let launch = Launch {
        args: [
            "demo-handler",
            "--listen",
            "127.0.0.1:{public}",
            "--identity",
            "carol",
        ]
        .map(String::from)
        .to_vec(),
        env: vec![("RUST_LOG".into(), "warn".into())],
        capture_stderr: false,
        extra_ports: 0,
        admin: false,
        config: false,
    };
    let mut handler = Proxy::launch(&launch, |_| String::new());
    let post = |identity: &str| {
        let body = format!(r#"{{"twi_to":"client:{identity}"}}"#);
        send_raw(handler.addr, &request_with("/notify", &[], &body))
    };
    let known = post("carol").expect("an answer");
    let unknown = post("bob");
    handler.signal("TERM");
    let stopped = handler.wait_exit(std::time::Duration::from_secs(20));

    assert_eq!(known.status, 200, "{}", known.text());
    assert_eq!(known.json()["dispatched"], "carol");
    assert_eq!(
        unknown.map(|r| r.status),
        Some(404),
        "bob is not in --identity"
    );
    assert!(stopped.success(), "SIGTERM is a clean stop: {stopped:?}");
}

/// `healthcheck` as a container HEALTHCHECK runs it: 0 on the proxy's /healthz, 1 with the
/// cause for another status and for nothing listening.
#[test]
fn healthcheck_exits_0_on_healthz_and_1_naming_the_cause() {
    let (_refusing_guard, refusing) = refusing_address();
    let proxy = Proxy::start(ProxySpec::new(refusing));

    let healthz = format!("http://{}/healthz", proxy.admin);
    let ok = run(&["healthcheck", "--url", &healthz], &[]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));

    let missing = format!("http://{}/no-such-path", proxy.admin);
    let out = run(&["healthcheck", "--url", &missing], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&missing) && err.contains("404"), "{err}");

    // Only a 200 is healthy: a redirect is not followed, and is not a pass.
    let redirecting = MockUpstream::start(Behaviour::status(301, ""));
    let moved = format!("http://{}/healthz", redirecting.addr);
    let out = run(&["healthcheck", "--url", &moved], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains(&moved) && err.contains("301"), "{err}");
    assert_eq!(redirecting.request_count(), 1);

    let nobody = format!("http://{refusing}/healthz");
    let out = run(&["healthcheck", "--url", &nobody], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot connect") && err.contains(&refusing.to_string()),
        "{err}"
    );

    let out = run(&["healthcheck", "--url", "https://127.0.0.1/healthz"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("only http://"));
}
