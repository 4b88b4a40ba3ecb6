//! The command line: `sluice -c FILE [-d] [-u] [-t]`, then building the
//! Pingora server with the gateway's services.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pingora_core::server::configuration::Opt;
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service as ListeningService;

use crate::admin::AdminApp;
use crate::config::{self, ConfigError, Loaded};
use crate::filters::Registry;
use crate::lifecycle::{
    self, DeferredCleanup, DrainOnUpgrade, Draining, SighupReload, SweepLimits,
};
use crate::limits::{Clock, MonotonicClock};
use crate::listen;
use crate::live::{Live, Reloader};
use crate::proxy::Proxy;
use crate::telemetry::access_log::{AccessLog, AccessLogService};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::observe::Recorder;
use crate::telemetry::stats::{SampleStats, Stats};
use crate::transport::conn::{self, ClientGuard, ConnCounts, HandshakeGuard, Handshakes, Places};
use crate::upstream::dns::DnsService;
use crate::upstream::{HealthService, LivePools};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "An API gateway on Cloudflare Pingora"
)]
pub struct Cli {
    /// The YAML config file.
    #[arg(short = 'c', long = "conf", default_value = "conf/gateway.yaml")]
    pub conf: String,
    /// Run in the background.
    #[arg(short, long)]
    pub daemon: bool,
    /// Take the listening sockets over from a running instance (zero-downtime upgrade).
    #[arg(short, long)]
    pub upgrade: bool,
    /// Validate the config file and exit: 0 if valid, 1 with every error otherwise.
    #[arg(short, long)]
    pub test: bool,
}

fn report(path: &str, errors: &[ConfigError]) {
    eprintln!("{path}: {} error(s):", errors.len());
    for e in errors {
        eprintln!("  {e}");
    }
}

/// Parses the command line and runs the gateway with the given filter kinds.
pub fn run(registry: Registry) -> ExitCode {
    let cli = Cli::parse();
    lifecycle::ignore_sighup_until_ready();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let loaded = match config::load_file(&cli.conf, &registry) {
        Ok(l) => l,
        Err(errors) => {
            report(&cli.conf, &errors);
            return ExitCode::from(1);
        }
    };
    if cli.test {
        println!("{}: configuration is valid", cli.conf);
        return ExitCode::SUCCESS;
    }
    match serve(cli, loaded, registry) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sluice: {message}");
            ExitCode::from(2)
        }
    }
}

fn serve(cli: Cli, loaded: Loaded, registry: Registry) -> Result<(), String> {
    let Loaded {
        server: server_conf,
        gateway: config,
    } = loaded;
    let opt = Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        nocapture: false,
        test: false,
        conf: None,
    };
    let listeners = config.listeners.clone();
    let admin = config.admin.clone();
    let access_log = config
        .access_log
        .clone()
        .map(|spec| Arc::new(AccessLog::new(spec)));
    let server_yaml = server_conf.to_yaml();
    // The process-wide handles, each given only to the services that use it.
    let metrics = Arc::new(Metrics::new());
    // The one clock limiters are read with, so state kept across reloads
    // keeps its meaning.
    let clock = MonotonicClock::new();
    let clients = Arc::new(ConnCounts::default());
    let draining = Draining::default();
    let (live, owner) = Live::start(config, metrics.clone(), clock);
    let dns_table = owner.dns_table();
    let stats = Stats::new(clock.now_nanos());
    let reloader = Arc::new(Reloader::new(
        cli.conf.clone(),
        registry,
        live.clone(),
        metrics.clone(),
        server_yaml,
    ));
    let client_settings: conn::Settings = {
        let live = live.clone();
        Arc::new(move || live.load().config.clients)
    };
    let recorder = Recorder {
        metrics: metrics.clone(),
        access_log: access_log.clone(),
    };

    let mut server = Server::new_with_opt_and_conf(opt, server_conf);
    let phases = server.watch_execution_phase();
    server.bootstrap();

    let grace = server.configuration.grace_period_seconds.unwrap_or(300);
    let h2_max_streams = live.load().config.h2_max_streams;
    let nofile = conn::nofile::raise_limit();
    let default_max_connections = conn::nofile::default_max_connections(nofile);
    if let (Some(n), Some(max)) = (nofile, live.load().config.clients.max_connections) {
        if u64::from(max) * 2 > n {
            log::warn!(
                "max_connections {max} with a file descriptor limit of {n}: \
                 descriptors may run out before the cap is reached"
            );
        }
    }
    let places = Arc::new(Places::new(
        client_settings,
        clients.clone(),
        metrics.connections(),
        default_max_connections,
    ));
    let handshakes = Arc::new(Handshakes::default());
    // Pingora turns h2c on per application, not per listener: listeners that
    // accept h2c get their own service, the others keep plain HTTP/1.1.
    for h2c in [false, true] {
        let mine: Vec<_> = listeners.iter().filter(|l| l.h2c == h2c).collect();
        if mine.is_empty() {
            continue;
        }
        let mut app = pingora_proxy::http_proxy(
            &server.configuration,
            Proxy::new(live.clone(), clock, recorder.clone(), draining.clone()),
        );
        app.h2_options = Some(listen::h2_options(h2_max_streams));
        app.server_options = Some(listen::server_options(
            h2c,
            live.load().config.clients.keepalive_timeout,
        ));
        let name = if h2c {
            "sluice proxy h2c"
        } else {
            "sluice proxy"
        };
        let mut proxy = ListeningService::new(
            name.to_string(),
            DeferredCleanup {
                inner: Arc::new(ClientGuard {
                    inner: Arc::new(app),
                    places: places.clone(),
                    handshakes: handshakes.clone(),
                    h2c,
                }),
                delay: std::time::Duration::from_secs(grace.min(1)),
            },
        );
        proxy.set_connection_filter(Arc::new(conn::AcceptFilter(places.clone())));
        proxy
            .endpoints()
            .set_pre_tls_callback(Arc::new(HandshakeGuard {
                places: places.clone(),
                handshakes: handshakes.clone(),
            }));
        for l in mine {
            match &l.tls {
                None => proxy.add_tcp(&l.address),
                Some(tls) => {
                    let settings = listen::tls_settings(tls)
                        .map_err(|e| format!("listener {}: TLS setup failed: {e}", l.address))?;
                    proxy.add_tls_with_settings(&l.address, None, settings);
                }
            }
        }
        server.add_service(proxy);
    }
    server.add_service(background_service("live gateway owner", owner));
    let live_pools: LivePools = {
        let live = live.clone();
        Arc::new(move || live.load().pools.values().cloned().collect())
    };
    server.add_service(background_service(
        "health checks",
        HealthService { pools: live_pools },
    ));
    server.add_service(background_service(
        "dns discovery",
        DnsService {
            table: dns_table,
            live: Arc::new(live.clone()),
        },
    ));
    server.add_service(background_service(
        "drain on upgrade",
        DrainOnUpgrade {
            draining: draining.clone(),
            phases: std::sync::Mutex::new(Some(phases)),
        },
    ));
    server.add_service(background_service(
        "reload on SIGHUP",
        SighupReload(reloader.clone()),
    ));
    server.add_service(background_service(
        "limit sweeper",
        SweepLimits {
            live: live.clone(),
            clock,
        },
    ));
    if let Some(log) = access_log {
        server.add_service(background_service("access log", AccessLogService(log)));
    }
    if let Some(admin) = admin {
        // Only the admin listener reads the series.
        server.add_service(background_service(
            "stats sampler",
            SampleStats {
                metrics: metrics.clone(),
                clock,
                stats: stats.clone(),
            },
        ));
        let mut svc = ListeningService::new(
            "admin".to_string(),
            AdminApp {
                live,
                metrics,
                clock,
                clients,
                draining,
                reloader,
                token: admin.token,
                stats,
            },
        );
        svc.add_tcp(&admin.address);
        server.add_service(svc);
    }
    log::info!("sluice starting: {} listener(s)", listeners.len());
    server.run_forever()
}
