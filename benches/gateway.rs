//! The gateway's own per-request work, without sockets: route match,
//! filters, admission and backend selection, so that a regression in
//! sluice's logic shows up in nanoseconds rather than in a noisy load test.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use pingora_http::RequestHeader;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use sluice::config;
use sluice::filters::Registry;
use sluice::keys::KeyInput;
use sluice::live::Generation;
use sluice::telemetry::metrics::Metrics;
use sluice::upstream::{AttemptTracker, Pick};

const CONFIG: &str = r#"
listen: [127.0.0.1:1]
upstreams:
  rr:
    balance: round_robin
    backends: [127.0.0.1:9001, 127.0.0.1:9002, { address: 127.0.0.1:9003, weight: 3 }, 127.0.0.1:9004]
  random:
    balance: random
    backends: [127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003, 127.0.0.1:9004]
  hash:
    balance: consistent_hash
    hash_key: header:x-user
    backends: [127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003, 127.0.0.1:9004]
  least:
    balance: least_conn
    backends: [127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003, 127.0.0.1:9004]
  aware:
    balance: load_aware
    backends: [127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003, 127.0.0.1:9004]
limits:
  per_ip: { algorithm: token_bucket, key: client_ip, capacity: 1e12, fill_rate: 1e12 }
  per_key: { algorithm: sliding_window, key: header:x-api-key, limit: 4000000000, window: 60s }
filters:
  tag: { type: headers, request: { set: { x-env: bench } } }
routes:
  - { name: home, path_prefix: /, upstream: rr }
  - { name: static, path_prefix: /static/, upstream: random }
  - { name: users, path_prefix: /api/users/, upstream: hash }
  - { name: orders, path_prefix: /api/orders/, upstream: least, methods: [GET, POST] }
  - { name: search, path_prefix: /api/search/, upstream: aware }
  - { name: admin, host: admin.example.com, path_prefix: /, upstream: rr }
  - { name: tenants, host: "*.tenants.example.com", path_prefix: /, upstream: rr }
  - name: api
    path_prefix: /api/v1/
    upstream: rr
    limits: [per_ip, per_key]
    filters: [request_id, tag]
"#;

fn request(path: &str) -> RequestHeader {
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
    req.insert_header("host", "api.example.com").unwrap();
    req.insert_header("x-api-key", "key-123").unwrap();
    req.insert_header("x-user", "user-42").unwrap();
    req
}

fn bench(c: &mut Criterion) {
    let loaded = config::load(CONFIG, &Registry::builtin()).unwrap_or_else(|e| panic!("{e:?}"));
    let metrics = Metrics::new();
    let gw = Generation::compile(loaded.gateway, &metrics);
    let clock = sluice::limits::MonotonicClock::new();
    let ip = Some("10.1.2.3".parse().unwrap());
    let mut rng = SmallRng::seed_from_u64(1);

    let req = request("/api/v1/items?id=7");
    c.bench_function("route match (8 routes)", |b| {
        b.iter(|| {
            black_box(gw.router.find(
                Some("api.example.com"),
                black_box(req.uri.path()),
                &req.method,
            ))
        })
    });

    let route = &gw.routes[gw
        .router
        .find(Some("api.example.com"), "/api/v1/items", &req.method)
        .unwrap()];
    c.bench_function("admission: token bucket + sliding window", |b| {
        use sluice::limits::Clock;
        // Local limits decide without waiting: the future is ready at its
        // first poll, and polling it is the work being measured.
        b.iter(|| {
            black_box(futures::executor::block_on(sluice::admission::check(
                route,
                &req,
                ip,
                None,
                clock.now_nanos(),
            )))
        })
    });

    for (name, path) in [
        ("round_robin", "/"),
        ("random", "/static/x"),
        ("consistent_hash", "/api/users/1"),
        ("least_conn", "/api/orders/1"),
        ("load_aware", "/api/search/q"),
    ] {
        let r = request(path);
        let route = &gw.routes[gw
            .router
            .find(Some("api.example.com"), path, &r.method)
            .unwrap()];
        let pool = route.pool.clone();
        c.bench_function(&format!("pick: {name} of 4"), |b| {
            use sluice::limits::Clock;
            b.iter(|| {
                let input = KeyInput {
                    client_ip: ip,
                    headers: &r.headers,
                    uri: &r.uri,
                    route: &route.name,
                };
                let key = pool.spec.hash_key.extract(&input);
                let key = key.as_deref().unwrap_or(b"");
                black_box(pool.pick(key, &[], clock.now_nanos(), &mut rng))
            })
        });
    }

    // The whole decision a proxied request costs sluice, end to end.
    c.bench_function(
        "request: route + request id + admission + pick + record",
        |b| {
            use sluice::limits::Clock;
            b.iter(|| {
                let now = clock.now_nanos();
                let id = sluice::request::request_id::RequestId::keep_or_generate(None);
                let route_id = gw
                    .router
                    .find(Some("api.example.com"), req.uri.path(), &req.method)
                    .unwrap();
                let route = &gw.routes[route_id];
                let verdict = futures::executor::block_on(sluice::admission::check(
                    route, &req, ip, None, now,
                ));
                let pick = route.pool.pick(b"", &[], now, &mut rng);
                if let Pick::Backend(i) = pick {
                    let mut attempt = AttemptTracker::default();
                    attempt.picked(i, now);
                    if let Some(settled) = attempt.answered(200, now + 1_000_000) {
                        route.pool.record(&settled, now);
                    }
                }
                route.metrics.observe(200, 0.001);
                black_box((id, verdict, pick))
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
