//! HTTP/1.1 pipelining (RFC 9112 §9.3.2): requests sent back to back on one
//! connection before any answer are all answered, in order. Pingora alone
//! answers the first and drops the rest (pingora#377).

mod common;
#[path = "common/raw_http.rs"]
mod raw_http;

use std::sync::atomic::Ordering;

use common::{echo, Gateway};
use raw_http::Conn;

fn path_of(r: &raw_http::Response) -> String {
    r.json()["path"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_all_answered_in_order() {
    let (up, backend) = echo("up").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  up:\n    backends: [{up}]\nroutes:\n  - upstream: up\n"
    ))
    .await;
    let mut c = Conn::open(gw.port).await;
    c.send(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /three?sleep=50 HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /four HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut paths = Vec::new();
    for i in 0..4 {
        let r = c
            .response()
            .await
            .unwrap_or_else(|| panic!("answer {} of 4 missing, after {paths:?}", i + 1));
        assert_eq!(r.status, 200);
        paths.push(path_of(&r));
    }
    assert_eq!(paths, ["/one", "/two", "/three", "/four"]);
    // Served one after another, each once.
    assert_eq!(backend.control.served.load(Ordering::Relaxed), 4);

    // The connection is still good for more.
    let r = c.get("/five").await.expect("the connection serves on");
    assert_eq!(path_of(&r), "/five");
}
