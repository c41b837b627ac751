//! `probe.public`: defaults, the key it signs with, and every refusal naming its key.

use std::time::Duration;

use super::*;

const URL: &str = "https://voice.example.com/notify";
const AC1: &str = "AC11111111111111111111111111111111";
const AC2: &str = "AC22222222222222222222222222222222";

fn with(public: &str) -> String {
    yaml("", &format!("probe:\n  public: {{ {public} }}"), TOKEN_VAR)
}

#[test]
fn a_url_alone_gets_the_defaults_and_the_primary_token() {
    let c = load(&with(&format!("url: {URL}"))).unwrap();
    let p = c.probe.public.as_ref().expect("probe.public");
    assert_eq!(p.url, URL);
    assert_eq!(
        (p.interval, p.timeout),
        (Duration::from_secs(30), Duration::from_secs(10))
    );
    assert_eq!(p.account, crate::config::probe::DEFAULT_ACCOUNT);
    assert!(p.connect.is_none() && p.extra_roots.is_empty());
    let (_, name) = p.signing_key(&c.keys).unwrap();
    assert_eq!(name, "secrets.auth_token");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(load(&yaml("", "", TOKEN_VAR))
        .unwrap()
        .probe
        .public
        .is_none());
}

#[test]
fn plain_http_is_accepted_with_a_warning() {
    let c = load(&with("url: http://notify.internal:8080/notify")).unwrap();
    assert!(
        c.warnings.iter().any(|w| w.contains("plain http")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn the_account_must_be_one_the_proxy_accepts() {
    let allowing = |accounts: &str, public: &str| {
        with(public).replace(
            "upstreams:",
            &format!("allowed_accounts: [{accounts}]\nupstreams:"),
        )
    };
    let c = load(&allowing(AC1, &format!("url: {URL}"))).unwrap();
    assert_eq!(
        c.probe.public.as_ref().unwrap().account,
        AC1,
        "the only allowed one"
    );
    let e = err(&allowing(&format!("{AC1}, {AC2}"), &format!("url: {URL}")));
    assert!(
        e.contains("probe.public.account: allowed_accounts lists 2"),
        "{e}"
    );
    let e = err(&allowing(AC1, &format!("url: {URL}, account: {AC2}")));
    assert!(
        e.contains(&format!(
            "probe.public.account: {AC2} is not in allowed_accounts"
        )),
        "{e}"
    );
    let e = err(&with(&format!("url: {URL}, account: AC12")));
    assert!(
        e.contains("probe.public.account") && e.contains("not an Account SID"),
        "{e}"
    );
}

#[test]
fn the_key_is_the_accounts_own_token_if_listed_and_one_must_exist() {
    let subaccount = with(&format!("url: {URL}, account: {AC1}")).replace(
        "  auth_token: { env: TNP_TEST_TOKEN }",
        &format!("  accounts: {{ {AC1}: {{ env: TNP_TEST_TOKEN }} }}"),
    );
    let c = load(&subaccount).unwrap();
    let (_, name) = c
        .probe
        .public
        .as_ref()
        .unwrap()
        .signing_key(&c.keys)
        .unwrap();
    assert_eq!(name, format!("secrets.accounts.{AC1}"));

    let shared_only = with(&format!("url: {URL}")).replace(
        "  auth_token: { env: TNP_TEST_TOKEN }",
        "  shared_keys: { k1: { env: TNP_TEST_TOKEN } }",
    );
    let e = err(&shared_only);
    assert!(
        e.contains("probe.public: no key to sign the probe")
            && e.contains("secrets.auth_token")
            && e.contains("secrets.accounts.AC0000"),
        "{e}"
    );
}

#[test]
fn bad_values_are_refused_naming_their_key() {
    let cases = [
        (
            format!("url: {URL}, interval: 5s, timeout: 5s"),
            "probe.public.timeout: 5s must be shorter than probe.public.interval (5s)",
        ),
        (
            format!("url: {URL}, interval: 0s"),
            "probe.public.interval: must be greater than 0",
        ),
        (format!("url: {URL}, timeout: soon"), "probe.public.timeout"),
        (
            "url: ftp://voice.example.com/notify".into(),
            "probe.public.url",
        ),
        (
            "url: https://voice_1.example.com/notify".into(),
            "underscore",
        ),
        ("url: not a url".into(), "probe.public.url"),
        (
            format!("url: {URL}, connect: somewhere"),
            "probe.public.connect",
        ),
        (
            format!("url: {URL}, ca_file: /nonexistent/ca.pem"),
            "probe.public.ca_file: cannot read /nonexistent/ca.pem",
        ),
        (format!("url: {URL}, retries: 3"), "unknown field `retries`"),
        ("interval: 5s".into(), "missing field `url`"),
    ];
    for (public, expected) in cases {
        let e = err(&with(&public));
        assert!(
            e.contains(expected),
            "{public}: expected {expected:?} in {e}"
        );
    }
}

#[test]
fn ca_file_must_hold_pem_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, "not a certificate\n").unwrap();
    let public = format!("url: {URL}, ca_file: {}", file.display());
    let e = err(&with(&public));
    assert!(
        e.contains("probe.public.ca_file") && e.contains("PEM"),
        "{e}"
    );

    let key = openssl::pkey::PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "test CA").unwrap();
    let name = name.build();
    let mut cert = openssl::x509::X509::builder().unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
    cert.set_not_before(&now).unwrap();
    cert.set_not_after(&now).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    std::fs::write(&file, cert.build().to_pem().unwrap()).unwrap();
    let c = load(&with(&public)).unwrap();
    assert_eq!(c.probe.public.as_ref().unwrap().extra_roots.len(), 1);
}
