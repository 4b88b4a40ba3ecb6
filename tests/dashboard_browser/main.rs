//! The admin dashboard in a real browser: headless Chromium driven through
//! chromedriver (Debian's `chromium` and `chromium-driver`, which
//! scripts/setup.sh installs), against the real gateway with real traffic.

mod browser;
#[path = "../common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use browser::Browser;
use common::*;

const TOKEN: &str = "dashboard-test-token";

/// Evaluates `$check` (an expression giving `Result<T, String>`, awaited
/// inside) until it is `Ok`; panics with its last `Err` after `$limit`.
macro_rules! wait_until {
    ($limit:expr, $check:expr) => {{
        let limit: Duration = $limit;
        let deadline = Instant::now() + limit;
        loop {
            match $check {
                Ok(v) => break v,
                Err(why) if Instant::now() >= deadline => panic!("after {limit:?}: {why}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }};
}

fn number(text: &Option<String>) -> Option<f64> {
    text.as_deref()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_traffic_sent_and_a_backend_going_down() {
    let browser = Browser::start().await;
    let b = &browser;
    let (a, _) = echo("a").await;
    let (b_addr, b_echo) = echo("b").await;
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("admin.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let gw = Gateway::start_with_admin(
        &format!(
            "upstreams:\n  pool:\n    backends: [{a}, {b_addr}]\n    health_check:\n      type: http\n      path: /health\n      interval: 200ms\n      timeout: 500ms\n      healthy_after: 1\n      unhealthy_after: 1\n\
             limits:\n  burst:\n    algorithm: token_bucket\n    key: global\n    capacity: 60\n    fill_rate: 0.001\n\
             routes:\n  - name: api\n    path_prefix: /api/\n    upstream: pool\n    limits: [burst]\n  - name: slow\n    path_prefix: /slow/\n    upstream: pool\n  - name: steady\n    path_prefix: /steady/\n    upstream: pool\n"
        ),
        &format!(
            "admin: {{ address: 127.0.0.1:{{admin_port}}, token_file: {} }}\n",
            token_file.display()
        ),
    )
    .await;

    // Without a token the page asks for one; a wrong one is refused.
    browser.client().goto(&gw.admin("/")).await.unwrap();
    wait_until!(
        Duration::from_secs(10),
        async {
            b.text("#login h2")
                .await
                .map(|_| ())
                .ok_or("no token prompt".to_string())
        }
        .await
    );
    browser.log_in("not-the-token").await;
    wait_until!(
        Duration::from_secs(10),
        async {
            let refused = b.text("#login-error").await;
            let board = b.text("#routes").await;
            match (refused, board) {
                (Some(msg), None) if msg.contains("refused") => Ok(()),
                other => Err(format!("wrong token not refused: {other:?}")),
            }
        }
        .await
    );
    browser.log_in(TOKEN).await;
    wait_until!(
        Duration::from_secs(10),
        async {
            b.text("[data-route='api'] .name")
                .await
                .map(|_| ())
                .ok_or("the dashboard did not open with the right token".to_string())
        }
        .await
    );

    // Asked once: the tab keeps the token across a reload of the page.
    browser.client().refresh().await.unwrap();
    wait_until!(
        Duration::from_secs(10),
        async {
            let login = b.text("#login h2").await;
            let board = b.text("[data-route='api'] .name").await;
            match (login, board) {
                (None, Some(_)) => Ok(()),
                other => Err(format!("after a page reload (login, board) = {other:?}")),
            }
        }
        .await
    );

    // Known traffic: 100 requests on a 60-token bucket, 20 that take 40 ms,
    // and 20 requests a second on `steady` until the test is done.
    let c = client();
    for _ in 0..100 {
        c.get(gw.url("/api/x")).send().await.unwrap();
    }
    for _ in 0..20 {
        c.get(gw.url("/slow/x?sleep=40")).send().await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let steady_sent = Arc::new(AtomicU64::new(0));
    let steady = tokio::spawn({
        let (stop, sent, url) = (stop.clone(), steady_sent.clone(), gw.url("/steady/x"));
        async move {
            let c = client();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            // Bounded: at most 60 s of traffic whatever happens to the test.
            for _ in 0..1200 {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if c.get(&url).send().await.is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });

    wait_until!(
        Duration::from_secs(10),
        async {
            let total = b.text("[data-route='api'] .total").await;
            let ok = b.text("[data-route='api'] .chip[data-code='200']").await;
            let limited = b.text("[data-route='api'] .chip[data-code='429']").await;
            let refused = b.text("[data-limit='burst'] .refused").await;
            let slow_total = b.text("[data-route='slow'] .total").await;
            let seen = (
                total.as_deref(),
                ok.as_deref(),
                limited.as_deref(),
                refused.as_deref(),
                slow_total.as_deref(),
            );
            if seen
                == (
                    Some("100"),
                    Some("200: 60"),
                    Some("429: 40"),
                    Some("40"),
                    Some("20"),
                )
            {
                Ok(())
            } else {
                Err(format!(
                    "page shows (total, 200s, 429s, refused, slow) = {seen:?}"
                ))
            }
        }
        .await
    );

    // The backend slept 40 ms: p50 within the histogram's 6.25 % plus the
    // proxy's own time.
    let p50 = number(&browser.text("[data-route='slow'] .p50").await);
    let p99 = number(&browser.text("[data-route='slow'] .p99").await);
    assert!(
        p50.is_some_and(|v| (37.5..60.0).contains(&v)),
        "slow p50 {p50:?}"
    );
    assert!(
        p99.is_some_and(|v| v >= p50.unwrap() && v < 120.0),
        "slow p99 {p99:?}"
    );

    // 20 requests a second, averaged over 5 s on the page.
    wait_until!(
        Duration::from_secs(15),
        async {
            let rps = number(&b.text("[data-route='steady'] .rps").await);
            match rps {
                Some(v) if (15.0..=25.0).contains(&v) => Ok(()),
                other => Err(format!("steady req/s on the page: {other:?}, sent at 20/s")),
            }
        }
        .await
    );
    assert!(steady_sent.load(Ordering::Relaxed) > 0);

    // A backend whose health check fails turns unhealthy on the page.
    let row = |addr| format!("[data-backend='pool/{addr}'] .health");
    assert_eq!(browser.text(&row(b_addr)).await.as_deref(), Some("healthy"));
    b_echo.control.unhealthy.store(true, Ordering::Relaxed);
    let down_at = Instant::now();
    wait_until!(
        Duration::from_secs(5),
        async {
            match browser.text(&row(b_addr)).await.as_deref() {
                Some("unhealthy") => Ok(()),
                other => Err(format!("backend {b_addr} still shows {other:?}")),
            }
        }
        .await
    );
    eprintln!("backend shown unhealthy after {:?}", down_at.elapsed());
    assert_eq!(browser.text(&row(a)).await.as_deref(), Some("healthy"));
    assert_eq!(browser.text("#live").await.as_deref(), Some("live"));

    // Out of rotation: no share of the traffic, nothing in flight.
    let cell = |addr, class| format!("[data-backend='pool/{addr}'] .{class}");
    assert_eq!(
        browser.text(&cell(b_addr, "eweight")).await.as_deref(),
        Some("0")
    );
    assert_eq!(
        browser.text(&cell(b_addr, "inflight")).await.as_deref(),
        Some("0")
    );
    assert_eq!(
        browser.text(&cell(a, "eweight")).await.as_deref(),
        Some("1")
    );

    // A reload that fails is listed with its first error.
    gw.rewrite("upstreams: {}\nroutes:\n  - upstream: missing\n");
    let reload = client()
        .post(gw.admin("/reload"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 400);
    wait_until!(
        Duration::from_secs(5),
        async {
            let result = b.text("#reloads tbody tr td:nth-child(2)").await;
            let detail = b.text("#reloads tbody tr td:nth-child(3)").await;
            match (result.as_deref(), detail) {
                (Some("failed"), Some(d))
                    if d.contains("routes[0].upstream: no upstream named") =>
                {
                    Ok(())
                }
                other => Err(format!("reloads on the page: {other:?}")),
            }
        }
        .await
    );

    // Let the charts gather a few seconds, then keep a picture.
    tokio::time::sleep(Duration::from_secs(3)).await;
    browser.screenshot("dashboard-screenshot.png").await;

    // Phone-sized: nothing wider than the screen (tables scroll inside
    // their own boxes).
    browser.client().set_window_size(390, 844).await.unwrap();
    wait_until!(
        Duration::from_secs(5),
        async {
            let w = b
                .js(
                    "return [document.documentElement.scrollWidth, window.innerWidth];",
                    vec![],
                )
                .await;
            let (scroll, inner) = (w[0].as_f64().unwrap_or(0.0), w[1].as_f64().unwrap_or(0.0));
            if inner > 0.0 && inner <= 500.0 && scroll <= inner + 1.0 {
                Ok(())
            } else {
                Err(format!("page {scroll}px wide in a {inner}px window"))
            }
        }
        .await
    );
    browser.screenshot("dashboard-phone.png").await;

    // When the gateway stops answering, the page says so.
    stop.store(true, Ordering::Relaxed);
    eprintln!("stopping traffic");
    let _ = steady.await;
    eprintln!("stopping the gateway");
    drop(gw);
    wait_until!(
        Duration::from_secs(8),
        async {
            match b.text("#down").await {
                Some(msg) if msg.contains("not answering") => Ok(()),
                other => Err(format!("no outage banner: {other:?}")),
            }
        }
        .await
    );
    eprintln!("closing the browser");
    browser.close().await;
}
