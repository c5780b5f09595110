//! TLS at both ends of the runtime, with a throwaway certificate made here: `up --tls-cert
//! --tls-key` serves the flow over HTTPS and speaks HTTP/2 to a client whose ALPN asks for
//! it; `--kv rediss://` reaches a TLS-only redis-server, its password taken from the
//! environment and never shown in the logs.

mod support;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mcp_edge_provision::redis::free_port;
use serde_json::json;
use support::{Client, RedisServer, Server, server};

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert PEM path, key PEM path,
/// cert DER).
fn certificate(dir: &Path) -> (String, String, Vec<u8>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("make a certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
        made.cert.der().to_vec(),
    )
}

fn https(dir: &Path) -> (Server, Client, Vec<u8>) {
    let (cert, key, der) = certificate(dir);
    let s = server("spin.toml")
        .arg("--kv")
        .arg("memory")
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .start();
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let c = Client::trusting(s.base.clone(), der.clone());
    (s, c, der)
}

#[test]
fn the_flow_is_served_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (s, c, _) = https(dir.path());
    let t = c.token("wendy");
    assert_eq!(c.register(&t, "a", "g").status, 201);
    assert_eq!(c.register(&t, "b", "g").status, 201);
    assert_eq!(c.send(&t, "a", "g", json!("over https")).status, 202);
    let got = c.receive(&t, "b", "g", Some(0)).json();
    assert_eq!(got["messages"][0]["payload"], "over https", "{got}");
    assert_eq!(c.get("/docs/v1/", &[]).status, 200);
    // Nothing is served in the clear on that port.
    let plain = s.base.replacen("https://", "", 1);
    let clear = Client::new(format!("http://{plain}")).try_request("GET", "/health", &[], None);
    assert!(
        clear.is_err() || clear.as_ref().is_ok_and(|r| r.status >= 400),
        "plain HTTP was answered: {clear:?}"
    );
}

#[test]
fn a_client_that_asks_for_http2_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _, der) = https(dir.path());
    let addr = s.base.trim_start_matches("https://").to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (version, status, body) = runtime.block_on(async move {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(der))
            .unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "ALPN chose h2"
        );
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://{addr}/health/ready"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.expect("an HTTP/2 answer");
        let (version, status) = (resp.version(), resp.status());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (version, status, body)
    });
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(status, 200, "{body:?}");
}

#[test]
fn the_store_is_reached_over_rediss_with_a_password_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let port = free_port();
    let _redis = RedisServer::start_on_with(
        port,
        &[
            // TLS only: the plain port is closed.
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &cert,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret-pw",
        ],
    );
    let s = server("spin.toml")
        .arg("--kv")
        .arg(&format!("rediss://127.0.0.1:{port}"))
        .arg("--cleanup-schedule")
        .arg("off")
        .env("SSL_CERT_FILE", &cert)
        .env("MCP_EDGE_REDIS_PASSWORD", "s3cret-pw")
        .env("RUST_LOG", "info")
        .start();
    assert_eq!(s.get("/health/ready", &[]).status, 200);
    let t = s.token("wendy");
    assert_eq!(s.register(&t, "a", "g").status, 201);
    assert_eq!(s.register(&t, "b", "g").status, 201);
    assert_eq!(s.send(&t, "a", "g", json!("over rediss")).status, 202);
    let got = s.receive(&t, "b", "g", Some(0)).json();
    assert_eq!(got["messages"][0]["payload"], "over rediss", "{got}");
    let logs = s.stderr();
    assert!(
        logs.contains("rediss://127.0.0.1"),
        "the store is named in the logs: {logs}"
    );
    assert!(!logs.contains("s3cret-pw"), "the password is never logged");
}
