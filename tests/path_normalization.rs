//! Path normalisation through the real gateway: every spelling of a path is
//! routed, limited and forwarded as its normal form, or refused.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;

use common::*;

async fn gateway() -> (Gateway, Vec<std::sync::Arc<sluice::echo::Echo>>) {
    gateway_on(None).await
}

async fn gateway_on(listen: Option<String>) -> (Gateway, Vec<std::sync::Arc<sluice::echo::Echo>>) {
    let mut sections = String::from("upstreams:\n");
    let mut keep = Vec::new();
    for name in ["root", "public", "admin", "raw", "strip"] {
        let (addr, e) = echo(name).await;
        keep.push(e);
        sections.push_str(&format!("  {name}:\n    backends: [{addr}]\n"));
    }
    sections.push_str(
        "limits:
  one_per_path:
    algorithm: token_bucket
    key: path
    capacity: 1
    fill_rate: 0.001
routes:
  - { name: root, path_prefix: /, upstream: root }
  - { name: public, path_prefix: /public/, upstream: public }
  - { name: admin, path_prefix: /admin/, upstream: admin }
  - { name: limited, path_prefix: /limited/, upstream: admin, limits: [one_per_path] }
  - { name: raw, path_prefix: /raw/, upstream: raw, normalize_path: false }
  - { name: strip, path_prefix: /strip/, upstream: strip, strip_prefix: true }
",
    );
    (Gateway::start_with_listen(&sections, listen).await, keep)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_reaches_the_route_of_its_normal_form() {
    let (gw, _backends) = gateway().await;
    // (sent, backend that must answer, path it must see)
    let table = [
        ("/public/../admin/x", "admin", "/admin/x"),
        ("/public/%2e%2e/admin/x", "admin", "/admin/x"),
        ("/public/%2E%2E/admin/x", "admin", "/admin/x"),
        ("/public/.%2e/admin/x", "admin", "/admin/x"),
        ("//admin/x", "admin", "/admin/x"),
        ("/admin//x", "admin", "/admin/x"),
        ("/public/./x", "public", "/public/x"),
        ("/public/%2e/x", "public", "/public/x"),
        ("/admin/../public/x", "public", "/public/x"),
        ("/public/%41bc", "public", "/public/Abc"),
        // An encoded slash is not a separator: one segment, kept encoded.
        ("/public/%2fadmin", "public", "/public/%2Fadmin"),
        ("/public/..%2Fadmin/x", "public", "/public/..%2Fadmin/x"),
        ("/public/%5c..%5cadmin", "public", "/public/%5C..%5Cadmin"),
        ("/publi%63/x", "public", "/public/x"),
        ("/x/../public/y/", "public", "/public/y/"),
        ("/strip/a/../b", "strip", "/b"),
        // A route that opts out gets the path as sent, but is chosen by the
        // normal form like any other.
        ("/raw/a/../b", "raw", "/raw/a/../b"),
        ("/public/../raw/c", "raw", "/public/../raw/c"),
        ("/raw//d", "raw", "/raw//d"),
    ];
    for (sent, backend, path) in table {
        let r = raw_http::get(gw.port, sent).await;
        assert_eq!(r.status, 200, "{sent}: {}", r.head);
        assert_eq!(r.header("x-backend"), Some(backend), "{sent}");
        assert_eq!(r.json()["path"], path, "{sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn climbing_above_the_root_is_refused_and_the_connection_kept() {
    let (gw, backends) = gateway().await;
    for sent in [
        "/../x",
        "/public/../../x",
        "/%2e%2e/admin/x",
        "/public/%2E%2E/%2e%2e/x",
    ] {
        let mut c = raw_http::Conn::open(gw.port).await;
        let r = c.get(sent).await.expect("an answer");
        assert_eq!(r.status, 400, "{sent}: {}", r.head);
        assert_eq!(
            r.json()["error"],
            "the request path climbs above the root",
            "{sent}"
        );
        // The request was whole: the connection serves the next one.
        let next = c.get("/admin/ok").await.expect("a second answer");
        assert_eq!(next.status, 200, "after {sent}");
        assert_eq!(next.header("x-backend"), Some("admin"));
    }
    let broken = raw_http::get(gw.port, "/public/%zz").await;
    assert_eq!(broken.status, 400, "a broken escape is refused");
    let served: u64 = backends
        .iter()
        .map(|b| b.control.served.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(
        served, 4,
        "only the four follow-up requests reached a backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_is_kept_and_not_normalised() {
    let (gw, _backends) = gateway().await;
    // The echo backend answers `?status=N` with N: the query arrived.
    let r = raw_http::get(gw.port, "/public/./x?status=201&p=/../").await;
    assert_eq!(r.status, 201, "{}", r.head);
    assert_eq!(r.json()["path"], "/public/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_keys_read_the_normal_form() {
    let (gw, _backends) = gateway().await;
    // One token per path: a second spelling of the same path is the same key.
    let first = raw_http::get(gw.port, "/limited/k").await;
    assert_eq!(first.status, 200);
    for again in [
        "/limited/./k",
        "//limited/k",
        "/limited/%6b",
        "/public/../limited/k",
    ] {
        let r = raw_http::get(gw.port, again).await;
        assert_eq!(r.status, 429, "{again} is the same path as /limited/k");
    }
    let other = raw_http::get(gw.port, "/limited/other").await;
    assert_eq!(other.status, 200, "another path has its own bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_paths_are_normalised_too() {
    let listen = "listen:\n  - { address: 127.0.0.1:{port}, h2c: true }\n".to_string();
    let (gw, _backends) = gateway_on(Some(listen)).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    for (path, want) in [
        // The query reaches the backend: it answers `?status=201` with 201.
        (
            "/public/%2e%2e/admin/x?status=201",
            Some((201, "admin", "/admin/x")),
        ),
        ("//admin//x", Some((200, "admin", "/admin/x"))),
        ("/public/../../x", None),
    ] {
        let url = format!("http://127.0.0.1:{}{path}", gw.port);
        let req = http::Request::get(url).body(()).unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), response)
            .await
            .expect("an answer in time")
            .expect("a response");
        let status = resp.status().as_u16();
        let backend = resp
            .headers()
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_string());
        let mut body = resp.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        match want {
            Some((code, b, p)) => {
                assert_eq!(status, code, "{path}");
                assert_eq!(backend.as_deref(), Some(b), "{path}");
                assert_eq!(json["path"], p, "{path}");
            }
            None => assert_eq!(status, 400, "{path}"),
        }
        client = client.ready().await.unwrap();
    }
}
