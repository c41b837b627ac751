//! A TLS listener: the proxy terminates HTTPS with the configured certificate and verifies the
//! signature against the https public URL, exactly as on a plain listener.

mod harness;

use std::io::{BufReader, Write};
use std::net::TcpStream;

use harness::*;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::{X509NameBuilder, X509};

/// A throwaway self-signed certificate for 127.0.0.1, written as PEM files.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "127.0.0.1").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.build().to_pem().unwrap()).unwrap();
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert_path, key_path)
}

/// The proxy on a TLS listener: it verifies the https public URL as on a plain one, and tells
/// the handler the client came over https (`X-Forwarded-Proto: https`); every other byte is
/// the client's.
#[test]
fn tls_listener_verifies_forwards_and_tells_the_handler_https() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = MockUpstream::start(Behaviour::status(200, "ok over tls"));
    let mut spec = ProxySpec::new(upstream.addr);
    spec.tls = Some(self_signed(dir.path()));
    let proxy = Proxy::start(spec);

    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_verify(SslVerifyMode::NONE); // self-signed
    let connector = builder.build();
    let send = |raw: &[u8]| {
        let tcp = TcpStream::connect(proxy.addr).unwrap();
        let mut tls = connector.connect("127.0.0.1", tcp).unwrap();
        tls.write_all(raw).unwrap();
        read_response(&mut BufReader::new(tls)).expect("an answer over TLS")
    };
    let raw = twilio_request(&notification());
    let r = send(&raw);
    assert_eq!((r.status, r.text().as_str()), (200, "ok over tls"));
    assert_eq!(r.header("X-Handler"), Some("mock"));
    let received = upstream.requests();
    assert_eq!(
        String::from_utf8_lossy(&received[0]),
        String::from_utf8_lossy(&as_forwarded_over(&raw, "https")),
        "the client's bytes, and X-Forwarded-Proto: https"
    );

    // A tampered body is refused over TLS as over plain TCP.
    let tampered = String::from_utf8(twilio_request(&notification()))
        .unwrap()
        .replace("client:bob", "client:eve");
    let r = send(tampered.as_bytes());
    assert_refused(&r, 403, "body_hash_mismatch");
    assert_eq!(upstream.request_count(), 1);
}
