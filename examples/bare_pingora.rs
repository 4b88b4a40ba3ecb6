//! The baseline for `scripts/bench.sh`: Pingora's own `load_balancer` example
//! without TLS or health checks, so the benchmark can tell what sluice's
//! routing, filters and limits cost on top of Pingora itself.
//!
//! ```text
//! BARE_LISTEN=127.0.0.1:6188 BARE_BACKENDS=127.0.0.1:9001,127.0.0.1:9002 \
//!     cargo run --release --example bare_pingora -- -c pingora.yaml
//! ```
//! Server keys (`threads`, `work_stealing`, ...) come from Pingora's own
//! `-c` file, exactly as sluice takes them. `BARE_H2C=1` also accepts HTTP/2
//! with prior knowledge, as a sluice listener with `h2c: true` does, and
//! `BARE_UPSTREAM_H2C=1` speaks h2c to the backends (`protocol: h2c`).

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::Result;
use pingora_load_balancing::{selection::RoundRobin, LoadBalancer};
use pingora_proxy::{ProxyHttp, Session};

// The same allocator as sluice's main, so the comparison is allocator-neutral.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub struct Lb(Arc<LoadBalancer<RoundRobin>>, bool);

#[async_trait]
impl ProxyHttp for Lb {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let backend = self.0.select(b"", 256).expect("a backend"); // the key is ignored
        let mut peer = HttpPeer::new(backend, false, String::new());
        if self.1 {
            // As sluice's `protocol: h2c` does.
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = 100;
        }
        Ok(Box::new(peer))
    }
}

fn main() {
    env_logger::init();
    let listen = std::env::var("BARE_LISTEN").unwrap_or_else(|_| "127.0.0.1:6188".into());
    let backends =
        std::env::var("BARE_BACKENDS").unwrap_or_else(|_| "127.0.0.1:9001,127.0.0.1:9002".into());

    let mut server = Server::new(Some(Opt::parse_args())).expect("server configuration");
    server.bootstrap();
    let upstreams =
        LoadBalancer::try_from_iter(backends.split(',').map(str::trim)).expect("BARE_BACKENDS");
    let mut lb = pingora_proxy::http_proxy_service(
        &server.configuration,
        Lb(
            Arc::new(upstreams),
            std::env::var_os("BARE_UPSTREAM_H2C").is_some(),
        ),
    );
    if std::env::var_os("BARE_H2C").is_some() {
        let mut options = pingora_core::apps::HttpServerOptions::default();
        options.h2c = true;
        if let Some(app) = lb.app_logic_mut() {
            app.server_options = Some(options);
        }
    }
    lb.add_tcp(&listen);
    server.add_service(lb);
    server.run_forever();
}
