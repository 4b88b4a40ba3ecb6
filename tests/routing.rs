//! Route table precedence, prefix stripping, proxy headers and filters,
//! through the real gateway.

mod common;

use common::*;
use serde_json::Value;

async fn get_json(
    c: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = c.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_prefix_and_method() {
    let mut sections = String::from("upstreams:\n");
    let mut keep = Vec::new();
    for name in ["root", "api", "v2", "post", "exact", "wild"] {
        let (addr, e) = echo(name).await;
        keep.push(e);
        sections.push_str(&format!("  {name}:\n    backends: [{addr}]\n"));
    }
    sections.push_str(
        "routes:
  - { name: root, path_prefix: /, upstream: root }
  - { name: api, path_prefix: /api/, upstream: api }
  - { name: v2, path_prefix: /api/v2/, upstream: v2, strip_prefix: true }
  - { name: post, path_prefix: /api/, methods: [POST], upstream: post }
  - { name: exact, host: api.example.com, upstream: exact }
  - { name: wild, host: '*.example.com', path_prefix: /, upstream: wild }
",
    );
    let gw = Gateway::start(&sections).await;
    let c = client();
    let backend = |h: &reqwest::header::HeaderMap| h["x-backend"].to_str().unwrap().to_string();

    let (_, body, h) = get_json(&c, &gw.url("/api/v2/users?id=3"), &[]).await;
    assert_eq!(backend(&h), "v2");
    assert_eq!(
        body["path"], "/users",
        "strip_prefix keeps what follows the prefix"
    );
    let (_, body, h) = get_json(&c, &gw.url("/api/v1/users"), &[]).await;
    assert_eq!(backend(&h), "api");
    assert_eq!(
        body["path"], "/api/v1/users",
        "no strip_prefix: path unchanged"
    );
    let (_, _, h) = get_json(&c, &gw.url("/other"), &[]).await;
    assert_eq!(backend(&h), "root");

    let r = c.post(gw.url("/api/items")).body("x").send().await.unwrap();
    assert_eq!(r.headers()["x-backend"], "post");
    let r = c.put(gw.url("/api/items")).body("x").send().await.unwrap();
    assert_eq!(
        r.headers()["x-backend"],
        "api",
        "PUT falls back to the shorter prefix"
    );

    let (_, _, h) = get_json(&c, &gw.url("/anything"), &[("host", "api.example.com")]).await;
    assert_eq!(backend(&h), "exact");
    let (_, _, h) = get_json(&c, &gw.url("/anything"), &[("host", "WWW.example.com:443")]).await;
    assert_eq!(backend(&h), "wild");
    let (_, _, h) = get_json(&c, &gw.url("/anything"), &[("host", "example.com")]).await;
    assert_eq!(
        backend(&h),
        "root",
        "the apex is not covered by *.example.com"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_request_id() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&format!(
        "trusted_proxies: [127.0.0.1/32]\nupstreams:\n  pool:\n    backends: [{a}]\n\
         filters:\n  tag:\n    type: headers\n    request: {{ set: {{ x-env: test }}, remove: [x-debug] }}\n    response: {{ set: {{ x-served-by: sluice }} }}\n\
         routes:\n  - name: plain\n    path_prefix: /plain/\n    upstream: pool\n  - name: tagged\n    path_prefix: /tagged/\n    upstream: pool\n    filters: [request_id, tag]\n"
    ))
    .await;
    let c = client();

    // The peer (127.0.0.1) is trusted, so the chain is kept and extended.
    let (_, body, h) = get_json(
        &c,
        &gw.url("/plain/x"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-request-id", "abc-1"),
        ],
    )
    .await;
    assert_eq!(body["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(body["headers"]["x-forwarded-proto"], "http");
    assert_eq!(
        body["headers"]["x-request-id"], "abc-1",
        "a client's id is kept"
    );
    assert!(
        h.get("x-request-id").is_none(),
        "request_id filter not on this route"
    );

    let (_, body, h) = get_json(&c, &gw.url("/tagged/x"), &[("x-debug", "1")]).await;
    let id = body["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!id.is_empty(), "an id is generated");
    assert_eq!(
        h["x-request-id"].to_str().unwrap(),
        id,
        "request_id filter returns the same id"
    );
    assert_eq!(body["headers"]["x-env"], "test");
    assert!(body["headers"].get("x-debug").is_none());
    assert_eq!(h["x-served-by"], "sluice");
}
