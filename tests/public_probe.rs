//! `probe.public` end to end: the real proxy probes a public URL every interval, from inside,
//! as `probe` does, and exports what it finds. Pointed at its own TLS listener, it reports the
//! served certificate's notAfter and a pass answered by the proxy (the handler sees nothing);
//! a wrong `public_url` fails at `answer` and a refused port at `connect`, each logged once
//! however many intervals it lasts; a reload changes what is probed.

mod harness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use harness::*;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn certificate(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    not_after: i64,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    let serial =
        Asn1Integer::from_bn(&BigNum::from_u32(u32::from(issuer.is_some()) + 1).unwrap()).unwrap();
    cert.set_serial_number(&serial).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_pubkey(key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::from_unix(not_after).unwrap())
        .unwrap();
    match issuer {
        None => {
            cert.set_issuer_name(&name).unwrap();
            cert.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            cert.append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
                .unwrap();
            cert.sign(key, MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            cert.set_issuer_name(ca.subject_name()).unwrap();
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .build(&cert.x509v3_context(Some(ca), None))
                .unwrap();
            cert.append_extension(san).unwrap();
            cert.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    cert.build()
}

/// An internal CA and a certificate it issued for 127.0.0.1 that expires at `not_after` (unix
/// seconds), as PEM files: (CA, certificate, key).
fn internal_ca_and_certificate(dir: &Path, not_after: i64) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = key();
    let ca = certificate("probe test CA", &ca_key, None, not_after + 86_400);
    let leaf_key = key();
    let leaf = certificate("127.0.0.1", &leaf_key, Some((&ca, &ca_key)), not_after);
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.to_pem().unwrap()).unwrap();
    std::fs::write(&paths.1, leaf.to_pem().unwrap()).unwrap();
    std::fs::write(&paths.2, leaf_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    paths
}

/// `probe.public` with `keys` (one line of flow-mapping pairs, `PORT` standing for the public
/// port), probing every second.
fn public_probe(keys: &str) -> String {
    format!("probe:\n  public: {{ interval: 1s, timeout: 900ms, {keys} }}\n")
}

/// Starts `spec`, its `PORT` placeholders and, when `local_public_url`, the route's public_url
/// made the proxy's own address (`scheme`://127.0.0.1:port).
fn start(spec: ProxySpec, local_public_url: Option<&str>) -> Proxy {
    Proxy::launch(&spec.launch(), |ports| {
        let mut yaml = spec.yaml(ports);
        if let Some(scheme) = local_public_url {
            yaml = yaml.replace(PUBLIC_URL, &format!("{scheme}://127.0.0.1:PORT{PATH}"));
        }
        yaml.replace("PORT", &ports.public.to_string())
    })
}

fn runs(proxy: &Proxy, result: &str) -> f64 {
    proxy.metric(&format!(
        "notify_proxy_public_probe_runs_total{{result=\"{result}\"}}"
    ))
}

fn failures(proxy: &Proxy, step: &str) -> f64 {
    proxy.metric(&format!(
        "notify_proxy_public_probe_failures_total{{step=\"{step}\"}}"
    ))
}

fn step_seconds(proxy: &Proxy, step: &str) -> f64 {
    proxy.metric(&format!(
        "notify_proxy_public_probe_step_duration_seconds{{step=\"{step}\"}}"
    ))
}

fn success(proxy: &Proxy) -> f64 {
    proxy.metric("notify_proxy_public_probe_success ")
}

/// The public probe's log lines so far.
fn probe_lines(proxy: &Proxy) -> Vec<String> {
    proxy
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("public probe"))
        .collect()
}

fn logging(spec: &mut ProxySpec) {
    spec.capture_stderr = true;
    spec.env.push((
        "RUST_LOG".into(),
        "error,twilio_notify_proxy::public_probe=info".into(),
    ));
}

#[test]
fn a_public_probe_over_tls_exports_the_served_certificate_expiry_and_never_reaches_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let not_after = now + 20 * 86_400;
    let (ca, cert, key) = internal_ca_and_certificate(dir.path(), not_after);
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let mut spec = ProxySpec::new(upstream.addr);
    spec.tls = Some((cert, key));
    spec.top_extra = public_probe(&format!(
        "url: \"https://127.0.0.1:PORT{PATH}\", ca_file: {}",
        ca.display()
    ));
    let proxy = start(spec, Some("https"));

    eventually("two passed runs", || runs(&proxy, "passed") >= 2.0);
    assert_eq!(success(&proxy), 1.0);
    assert_eq!(
        proxy.metric("notify_proxy_public_probe_certificate_expiry_timestamp_seconds "),
        not_after as f64,
        "the served certificate's notAfter"
    );
    assert_eq!(runs(&proxy, "failed"), 0.0);
    for step in ["dns", "connect", "tls", "answer"] {
        assert_eq!(failures(&proxy, step), 0.0, "{step}");
    }
    assert_eq!(
        step_seconds(&proxy, "dns"),
        0.0,
        "an IP address needs no DNS"
    );
    assert!(step_seconds(&proxy, "tls") > 0.0 && step_seconds(&proxy, "answer") > 0.0);
    assert!(
        proxy.outcomes("probe") >= 2.0,
        "answered by the proxy as outcome probe"
    );
    assert_eq!(upstream.request_count(), 0, "the handler sees nothing");

    // The command runs the same steps, and trusts the same CA with --ca-file.
    let out = Command::new(BIN)
        .args([
            "probe",
            "--url",
            &format!("https://127.0.0.1:{}{PATH}", proxy.addr.port()),
        ])
        .arg("--ca-file")
        .arg(&ca)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("PASS url: https://127.0.0.1"), "{text}");
    assert!(text.contains(" with TLS ("), "{text}");
    let until = humantime::format_rfc3339_seconds(
        UNIX_EPOCH + std::time::Duration::from_secs(not_after as u64),
    );
    assert!(
        text.contains(&format!("certificate valid until {until}")),
        "{text}"
    );
    assert!(text.contains("PASS verified"), "{text}");
    assert_eq!(upstream.request_count(), 0);

    // Reloaded to connect to a port that refuses, for the same URL: the runs fail before TLS,
    // and the expiry of the certificate last served there is kept.
    let expiry = || proxy.metric("notify_proxy_public_probe_certificate_expiry_timestamp_seconds ");
    let (_held, refusing) = refusing_address();
    let yaml = proxy.config().replace(
        "interval: 1s",
        &format!("interval: 1s, connect: \"{refusing}\""),
    );
    proxy.reload_with(&yaml, "success");
    eventually("a run failing at connect", || {
        failures(&proxy, "connect") >= 1.0
    });
    assert_eq!(success(&proxy), 0.0);
    assert_eq!(
        expiry(),
        not_after as f64,
        "kept from the last run that reached TLS"
    );

    // Another URL: what was served at the old one says nothing about it.
    let failed = failures(&proxy, "connect");
    let yaml = yaml.replace("url: \"https://127.0.0.1:", "url: \"https://localhost:");
    proxy.reload_with(&yaml, "success");
    // (A run of the old URL may have been under way: the second one after is the new URL's.)
    eventually("a run of the new URL", || {
        failures(&proxy, "connect") >= failed + 2.0
    });
    assert_eq!(expiry(), 0.0, "reset when the URL changes");
    assert_eq!(upstream.request_count(), 0);
}

#[test]
fn a_failing_public_probe_names_the_step_and_is_logged_once_per_change() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let mut spec = ProxySpec::new(upstream.addr);
    logging(&mut spec);
    // The route verifies against https://voice.example.com/...; the probe calls the proxy by
    // its address, as a Twilio configured with another URL would.
    spec.top_extra = public_probe(&format!("url: \"http://127.0.0.1:PORT{PATH}\""));
    let proxy = start(spec, None);

    eventually("four failed runs", || runs(&proxy, "failed") >= 4.0);
    assert_eq!(success(&proxy), 0.0);
    assert_eq!(runs(&proxy, "passed"), 0.0);
    assert_eq!(failures(&proxy, "answer"), runs(&proxy, "failed"));
    assert!(proxy.rejections("signature_mismatch") >= 4.0);
    let lines = probe_lines(&proxy);
    assert_eq!(lines.len(), 1, "logged once, not once per run: {lines:#?}");
    let own = format!("http://127.0.0.1:{}{PATH}", proxy.addr.port());
    for expected in [
        "public probe failing at answer".to_string(),
        "public URL mismatch".to_string(),
        format!("verifies signatures for {PUBLIC_URL}"),
        format!("would sign {own}"),
    ] {
        assert!(lines[0].contains(&expected), "{expected:?} in {}", lines[0]);
    }
    assert!(lines[0].len() < 1024, "bounded: {}", lines[0]);

    // Reloaded to connect, for the same URL, to a port that refuses connections: another
    // step, one more line.
    let (_held, refusing) = refusing_address();
    let yaml = proxy.config().replace(
        "interval: 1s",
        &format!("interval: 1s, connect: \"{refusing}\""),
    );
    proxy.reload_with(&yaml, "success");
    eventually("three runs failing at connect", || {
        failures(&proxy, "connect") >= 3.0
    });
    let lines = probe_lines(&proxy);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[1].contains("now failing at connect (was answer, public_url_mismatch)")
            && lines[1].contains(&format!("cannot connect to {refusing}")),
        "{}",
        lines[1]
    );
    assert_eq!(upstream.request_count(), 0);
}

#[test]
fn a_reload_switches_the_probe_on_changes_its_url_and_switches_it_off() {
    let upstream = MockUpstream::start(Behaviour::status(200, "{}"));
    let mut spec = ProxySpec::new(upstream.addr);
    logging(&mut spec);
    let proxy = start(spec, Some("http"));
    let own = format!("http://127.0.0.1:{}{PATH}", proxy.addr.port());
    let without = proxy.config();

    let with = |url: &str| format!("{}{without}", public_probe(&format!("url: \"{url}\"")));
    proxy.reload_with(&with(&own), "success");
    eventually("a passed run", || runs(&proxy, "passed") >= 1.0);
    assert_eq!(success(&proxy), 1.0);
    assert_eq!(runs(&proxy, "failed"), 0.0, "nothing ran before the reload");

    // The same proxy under another name: not the URL its route verifies against.
    let other: SocketAddr = proxy.addr;
    let renamed = own.replace("127.0.0.1", "localhost");
    let yaml = with(&renamed).replace(
        "interval: 1s",
        &format!("interval: 1s, connect: \"{other}\""),
    );
    proxy.reload_with(&yaml, "success");
    eventually("the renamed URL failing at answer", || {
        failures(&proxy, "answer") >= 1.0
    });
    assert_eq!(success(&proxy), 0.0);
    let passed = runs(&proxy, "passed");

    proxy.reload_with(&without, "success");
    eventually("the probe switched off", || {
        probe_lines(&proxy)
            .iter()
            .any(|l| l.contains("public probe off"))
    });
    let lines = probe_lines(&proxy);
    assert!(
        lines[0].contains("public probe passing") && lines[0].contains(&own),
        "{lines:#?}"
    );
    assert!(
        lines[1].contains("public probe failing at answer") && lines[1].contains(&renamed),
        "{lines:#?}"
    );
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(
        runs(&proxy, "passed"),
        passed,
        "the renamed URL never passed"
    );
    assert_eq!(success(&proxy), 0.0);
    assert_eq!(step_seconds(&proxy, "answer"), 0.0, "no last run any more");
    assert_eq!(upstream.request_count(), 0);
}
