//! TLS termination on a listener, with a certificate the test makes itself.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_tls_and_says_so_upstream() {
    let (a, _) = echo("a").await;
    let tls = common::tls_listener(&["localhost"]);
    let (cert, listen) = (&tls.cert, tls.listen.clone());
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
