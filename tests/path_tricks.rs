//! Path spellings that backends resolve differently from RFC 3986, through
//! the real gateway: a raw `\` (IIS, ASP.NET), a dot segment with `;`
//! parameters (Tomcat, Jetty, Spring), and encoded slashes, whose meaning is
//! the route's `normalize_path: { escaped_slashes }`.

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use sluice::echo::Echo;

async fn gateway() -> (Gateway, Vec<Arc<Echo>>) {
    let mut sections = String::from("upstreams:\n");
    let mut keep = Vec::new();
    for name in ["public", "admin", "keep", "reject", "unescape"] {
        let (addr, e) = echo(name).await;
        keep.push(e);
        sections.push_str(&format!("  {name}:\n    backends: [{addr}]\n"));
    }
    sections.push_str(
        "routes:
  - { name: public, path_prefix: /public/, upstream: public }
  - { name: admin, path_prefix: /admin/, upstream: admin }
  - { name: keep, path_prefix: /keep/, upstream: keep, normalize_path: { escaped_slashes: keep } }
  - { name: reject, path_prefix: /reject/, upstream: reject, normalize_path: { escaped_slashes: reject } }
  - { name: unescape, path_prefix: /unescape/, upstream: unescape, normalize_path: { escaped_slashes: unescape } }
",
    );
    (Gateway::start(&sections).await, keep)
}

fn served(backends: &[Arc<Echo>]) -> u64 {
    backends
        .iter()
        .map(|b| b.control.served.load(Ordering::Relaxed))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spellings_a_backend_reads_as_another_path_are_refused() {
    let (gw, backends) = gateway().await;
    let corpus = [
        "/public/..\\admin/x",
        "/public\\..\\admin/x",
        "/public/a\\b",
        "/\\admin/x",
        "/public//..\\admin/x",
        "/public/..;/admin/x",
        "/public/..;jsessionid=1/admin/x",
        "/public/%2e%2e;/admin/x",
        "/public/%2E%2E;x/admin/x",
        "/public/.%2e;/admin/x",
        "/public/.;/admin/x",
        "/public/%2e;x/admin/x",
        "/public/..%3B/admin/x",
        "/public/..%3b/admin/x",
        "/public/a/..;",
        "/..;/admin/x",
    ];
    for sent in corpus {
        let mut c = raw_http::Conn::open(gw.port).await;
        let r = c.get(sent).await.expect("an answer");
        assert_eq!(r.status, 400, "{sent}: {}", r.head);
        assert_eq!(
            r.json()["error"],
            "the request path could be read two ways",
            "{sent}"
        );
        // The request was whole: the connection serves the next one.
        let next = c.get("/public/ok").await.expect("a second answer");
        assert_eq!(next.status, 200, "after {sent}");
    }
    assert_eq!(
        served(&backends),
        corpus.len() as u64,
        "only the follow-up requests reached a backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_on_other_segments_pass() {
    let (gw, _backends) = gateway().await;
    for (sent, path) in [
        ("/public/a;b=c/x", "/public/a;b=c/x"),
        ("/public/...;x", "/public/...;x"),
        ("/public/.well-known;x", "/public/.well-known;x"),
        ("/public/x;jsessionid=1", "/public/x;jsessionid=1"),
        ("/public/%2e%2ex;/y", "/public/..x;/y"),
    ] {
        let r = raw_http::get(gw.port, sent).await;
        assert_eq!(r.status, 200, "{sent}: {}", r.head);
        assert_eq!(r.header("x-backend"), Some("public"), "{sent}");
        assert_eq!(r.json()["path"], path, "{sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_chooses_what_an_encoded_slash_means() {
    let (gw, backends) = gateway().await;
    // (sent, status, backend, path it sees)
    let table = [
        // keep (also the default): one segment, forwarded encoded.
        ("/keep/a%2fb", 200, "keep", "/keep/a%2Fb"),
        (
            "/public/..%2Fadmin/x",
            200,
            "public",
            "/public/..%2Fadmin/x",
        ),
        ("/keep/a%5Cb", 200, "keep", "/keep/a%5Cb"),
        // unescape: decoded, normalised, and routed by what the backend reads.
        ("/unescape/a%2Fb", 200, "unescape", "/unescape/a/b"),
        ("/unescape/a%5cb", 200, "unescape", "/unescape/a/b"),
        ("/unescape/..%2Fadmin/x", 200, "admin", "/admin/x"),
        ("/unescape/x/..%2F..%2Fpublic/y", 200, "public", "/public/y"),
        ("/unescape/plain", 200, "unescape", "/unescape/plain"),
        // reject: only a path without one passes.
        ("/reject/plain", 200, "reject", "/reject/plain"),
    ];
    for (sent, status, backend, path) in table {
        let r = raw_http::get(gw.port, sent).await;
        assert_eq!(r.status, status, "{sent}: {}", r.head);
        assert_eq!(r.header("x-backend"), Some(backend), "{sent}");
        assert_eq!(r.json()["path"], path, "{sent}");
    }
    let before = served(&backends);
    for sent in [
        "/reject/a%2Fb",
        "/reject/a%2fb",
        "/reject/a%5Cb",
        "/reject/%5c",
    ] {
        let r = raw_http::get(gw.port, sent).await;
        assert_eq!(r.status, 400, "{sent}: {}", r.head);
        assert_eq!(
            r.json()["error"],
            "encoded slashes are not allowed on this route",
            "{sent}"
        );
    }
    let climbs = raw_http::get(gw.port, "/unescape/..%2F..%2Fx").await;
    assert_eq!(climbs.status, 400, "unescaping cannot climb above the root");
    assert_eq!(
        served(&backends),
        before,
        "no refused request reached a backend"
    );
}
