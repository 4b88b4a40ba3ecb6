//! The admin listener's access rules against the real gateway: the token,
//! the open `/healthz`, cross-site reloads; and the JSON the dashboard reads
//! (`/status`'s process and reloads, `/stats/series`).

mod common;

use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "correct-horse-battery-staple";

async fn gateway_with_token() -> (Gateway, tempfile::TempDir) {
    let (a, _) = echo("a").await;
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("admin.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let gw = Gateway::start_with_admin(
        &format!("upstreams:\n  pool:\n    backends: [{a}]\nroutes:\n  - name: api\n    upstream: pool\n"),
        &format!(
            "admin: {{ address: 127.0.0.1:{{admin_port}}, token_file: {} }}\n",
            file.display()
        ),
    )
    .await;
    (gw, secrets)
}

async fn get(gw: &Gateway, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gw.admin(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_path_but_healthz_and_the_page_needs_the_token() {
    let (gw, _secrets) = gateway_with_token().await;
    let good = format!("Bearer {TOKEN}");
    for path in ["/status", "/metrics", "/stats/series", "/nowhere"] {
        let r = get(&gw, path, None).await;
        assert_eq!(r.status(), 401, "{path} without a token");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"sluice admin\""
        );
        for wrong in [
            "Bearer correct-horse-battery-stapl",
            "Bearer correct-horse-battery-staple2",
            "Basic Y29ycmVjdA==",
            TOKEN,
        ] {
            assert_eq!(
                get(&gw, path, Some(wrong)).await.status(),
                401,
                "{path} with {wrong}"
            );
        }
    }
    for path in ["/status", "/metrics", "/stats/series"] {
        assert_eq!(get(&gw, path, Some(&good)).await.status(), 200, "{path}");
    }
    assert_eq!(get(&gw, "/nowhere", Some(&good)).await.status(), 404);
    assert_eq!(get(&gw, "/healthz", None).await.status(), 200);
    let page = get(&gw, "/", None).await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.headers().contains_key("content-security-policy"));

    let reload = client().post(gw.admin("/reload")).send().await.unwrap();
    assert_eq!(reload.status(), 401);
    let reload = client()
        .post(gw.admin("/reload"))
        .header("authorization", &good)
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_cross_site_browser_requests() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}]\nroutes:\n  - upstream: pool\n"
    ))
    .await;
    let post = |origin: Option<String>| {
        let mut req = client().post(gw.admin("/reload"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(Some("https://evil.example".into())).await, 403);
    assert_eq!(
        post(Some(format!("http://127.0.0.1:{}", gw.port))).await,
        403
    );
    assert_eq!(post(Some("null".into())).await, 403);
    assert_eq!(
        post(Some(format!("http://127.0.0.1:{}", gw.admin_port))).await,
        200
    );
    assert_eq!(post(None).await, 200);

    // DNS rebinding: a browser that reached the token-less listener by some
    // other name is refused; the same request by IP is not.
    let browser_get = |host: String| {
        let req = client()
            .get(gw.admin("/status"))
            .header("host", host)
            .header("sec-fetch-site", "same-origin");
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(
        browser_get(format!("attacker.example:{}", gw.admin_port)).await,
        403
    );
    assert_eq!(
        browser_get(format!("127.0.0.1:{}", gw.admin_port)).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tells_the_process_and_its_last_reloads() {
    let (gw, _secrets) = gateway_with_token().await;
    let auth = format!("Bearer {TOKEN}");
    let status = |gw: &Gateway| {
        let req = client()
            .get(gw.admin("/status"))
            .header("authorization", &auth);
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let s = status(&gw).await;
    assert_eq!(s["process"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["process"]["draining"], false);
    assert_eq!(s["process"]["pid"], gw.pid());
    assert!(s["process"]["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(s["reloads"], serde_json::json!([]));

    gw.rewrite("upstreams: {}\nroutes:\n  - upstream: missing\n");
    let reload = |gw: &Gateway| {
        let req = client()
            .post(gw.admin("/reload"))
            .header("authorization", &auth);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(reload(&gw).await, 400);
    let (b, _) = echo("b").await;
    gw.rewrite(&format!(
        "upstreams:\n  pool:\n    backends: [{b}]\nroutes:\n  - upstream: pool\n"
    ));
    assert_eq!(reload(&gw).await, 200);

    let s = status(&gw).await;
    let reloads = s["reloads"].as_array().unwrap();
    assert_eq!(reloads.len(), 2);
    assert_eq!(reloads[0]["result"], "ok", "newest first: {reloads:?}");
    assert_eq!(reloads[1]["result"], "failed");
    assert!(
        reloads[1]["error"]
            .as_str()
            .unwrap()
            .contains("routes[0].upstream: no upstream named `missing`"),
        "{reloads:?}"
    );
    assert!(reloads[0]["at"].as_f64().unwrap() >= reloads[1]["at"].as_f64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_counts_the_traffic_sent() {
    let (a, _) = echo("a").await;
    let gw = Gateway::start(&format!(
        "upstreams:\n  pool:\n    backends: [{a}]\n\
         limits:\n  five:\n    algorithm: token_bucket\n    key: global\n    capacity: 5\n    fill_rate: 0.001\n\
         routes:\n  - name: api\n    upstream: pool\n    limits: [five]\n"
    ))
    .await;
    let c = client();
    for _ in 0..8 {
        c.get(gw.url("/x?sleep=20")).send().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut ok, mut limited, mut refused, mut p99) = (0, 0, 0, 0.0f64);
    while Instant::now() < deadline {
        let doc: serde_json::Value = reqwest::get(gw.admin("/stats/series?seconds=60"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let samples = doc["samples"].as_array().unwrap();
        let sum = |f: &dyn Fn(&serde_json::Value) -> Option<u64>| {
            samples.iter().filter_map(f).sum::<u64>()
        };
        ok = sum(&|s| s["routes"]["api"]["status"]["200"].as_u64());
        limited = sum(&|s| s["routes"]["api"]["status"]["429"].as_u64());
        refused = sum(&|s| s["limits"]["five"]["rejected"].as_u64());
        // The admitted requests slept 20 ms at the backend, the 429s none:
        // whichever second they fell in, the slowest p99 is theirs.
        p99 = samples
            .iter()
            .filter_map(|s| s["routes"]["api"]["p99_ms"].as_f64())
            .fold(0.0, f64::max);
        if (ok, limited, refused) == (5, 3, 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!((ok, limited, refused), (5, 3, 3));
    assert_eq!(doc_capacity(&gw).await, 600);
    assert!(
        (18.0..60.0).contains(&p99),
        "p99 {p99} ms for 20 ms requests"
    );
}

async fn doc_capacity(gw: &Gateway) -> u64 {
    let doc: serde_json::Value = reqwest::get(gw.admin("/stats/series"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["capacity"].as_u64().unwrap()
}
