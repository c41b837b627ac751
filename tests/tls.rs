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

#[test]
fn tls_listener_verifies_and_forwards() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let upstream = MockUpstream::start(Behaviour::status(200, "ok over tls"));
    let proxy = Proxy::start(ProxySpec::new(upstream.addr));
    // Same config, plus a TLS listener on another port.
    let tls_port = free_port();
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    let with_tls = text.replacen(
        "listeners:\n",
        &format!(
            "listeners:\n  - address: 127.0.0.1:{tls_port}\n    tls: {{ cert_file: {}, key_file: {} }}\n",
            cert.display(),
            key.display()
        ),
        1,
    );
    drop(proxy);
    let config = dir.path().join("tls.yaml");
    std::fs::write(&config, with_tls).unwrap();
    let mut child = ChildGuard::spawn(
        std::process::Command::new(BIN)
            .args(["run", "--config", config.to_str().unwrap()])
            .env("TNP_TOKEN", TOKEN)
            .env("RUST_LOG", "error"),
    );
    child.wait_listening(([127, 0, 0, 1], tls_port).into());

    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_verify(SslVerifyMode::NONE); // self-signed
    let connector = builder.build();
    let tcp = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    let mut tls = connector.connect("127.0.0.1", tcp).unwrap();
    tls.write_all(&twilio_request(&notification())).unwrap();
    let resp = {
        // read_response wants a BufReader<TcpStream>; read the TLS stream by hand instead.
        let mut reader = BufReader::new(tls);
        read_tls_response(&mut reader)
    };
    drop(child);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok over tls"), "{resp}");
    assert_eq!(upstream.request_count(), 1);
}

fn read_tls_response<R: std::io::BufRead>(reader: &mut R) -> String {
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}
