//! TLS termination on a listener, with a certificate the test makes itself.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_tls_and_says_so_upstream() {
    let (a, _) = echo("a").await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();

    let listen = format!(
        "listen:\n  - address: 127.0.0.1:{{port}}\n    tls: {{ cert: {}, key: {} }}\n",
        cert_path.display(),
        key_path.display()
    );
    let gw = Gateway::start_with_listen(
        &format!("upstreams:\n  pool:\n    backends: [{a}]\nroutes:\n  - upstream: pool\n"),
        Some(listen),
    )
    .await;

    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(root)
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], gw.port)),
        )
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{}/hello", gw.port))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-backend"], "a");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");

    // Plain HTTP to the TLS port is not served.
    let plain = client()
        .get(format!("http://127.0.0.1:{}/hello", gw.port))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}
