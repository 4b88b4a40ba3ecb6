//! The validated configuration the gateway runs on. Every value here has been
//! checked; nothing downstream re-validates or can fail on it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use ipnet::IpNet;

use crate::filters::Filter;
use crate::keys::KeySpec;
use crate::limits::redis_store::RedisSpec;
use crate::limits::LimitSpec;

#[derive(Clone)]
pub struct Config {
    pub listeners: Vec<ListenerSpec>,
    pub admin: Option<AdminSpec>,
    pub trusted_proxies: Vec<IpNet>,
    /// Largest request line and header fields accepted, in bytes (431 past it).
    pub max_request_header_size: usize,
    /// The top-level `max_body`: the default for routes that set none.
    pub max_body: Option<u64>,
    /// Concurrent streams one HTTP/2 client connection may open.
    pub h2_max_streams: u32,
    /// What one client connection may hold: deadlines and connection caps.
    pub clients: ClientLimits,
    pub upstreams: BTreeMap<String, UpstreamSpec>,
    pub limits: BTreeMap<String, LimitSpec>,
    /// Filter instances by the name routes use.
    pub filters: BTreeMap<String, Arc<dyn Filter>>,
    pub routes: Vec<RouteSpec>,
    pub access_log: Option<AccessLogSpec>,
    /// The shared store for `store: redis` limits.
    pub redis: Option<RedisSpec>,
    /// DNS servers for backend names (`resolver:`); empty: the system's.
    pub resolver: Vec<SocketAddr>,
}

/// Bounds on client connections (the top-level keys of `config::clients`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// A request head must be complete this long after its first byte (the
    /// first request: after the connection opened); 408 past it.
    pub request_header_timeout: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub keepalive_timeout: Duration,
    /// Open client connections the process accepts; `None`: derived from
    /// the file-descriptor limit at start.
    pub max_connections: Option<u32>,
    /// Open connections one client IP may hold; `None`: no cap.
    pub max_connections_per_ip: Option<u32>,
    /// A TLS handshake must be done this long after its connection was
    /// accepted; the connection is closed past it.
    pub tls_handshake_timeout: Duration,
}

/// The admin listener: `admin: ADDR` or `{ address, token_file, insecure }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSpec {
    pub address: String,
    /// Read from `token_file` when the config is loaded.
    pub token: Option<AdminToken>,
}

/// A bearer token; its `Debug` never shows it, so it stays out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogSpec {
    /// A file to append to, or `-` for standard output.
    pub path: String,
    pub format: AccessLogFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessLogFormat {
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub address: String,
    pub tls: Option<TlsSpec>,
    /// Plaintext HTTP/2 with prior knowledge beside HTTP/1.1.
    pub h2c: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSpec {
    pub cert: String,
    pub key: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    Random,
    ConsistentHash,
    LeastConn,
    LoadAware,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::Random => "random",
            Balance::ConsistentHash => "consistent_hash",
            Balance::LeastConn => "least_conn",
            Balance::LoadAware => "load_aware",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamSpec {
    pub name: String,
    pub balance: Balance,
    /// What `consistent_hash` hashes on (default `client_ip`).
    pub hash_key: KeySpec,
    pub backends: Vec<BackendSpec>,
    /// Backends named `host:port`, each re-resolved into one backend per address.
    pub named: Vec<NamedBackend>,
    /// How often names are re-resolved (`None`: once, at load).
    pub dns_refresh: Option<Duration>,
    pub health_check: Option<HealthCheckSpec>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// How long an idle upstream connection stays in the pool.
    pub idle_timeout: Duration,
    /// Further attempts after a connect failure, each on another backend.
    pub retries: u32,
    /// Speak TLS to the backends.
    pub tls: bool,
    /// HTTP version spoken to the backends.
    pub protocol: UpstreamProtocol,
    /// PEM file of the roots trusted for TLS backends (default: the system's).
    pub ca: Option<String>,
    /// SNI and Host for TLS backends and HTTP health checks.
    pub sni: String,
    /// Passive health: eject backends that keep failing real requests.
    pub outlier: Option<OutlierSpec>,
    /// Ramp a joining or recovering backend's share up over this long.
    pub slow_start: Option<Duration>,
    /// Below this percentage of healthy backends, balance across all (0 = never).
    pub panic_threshold: u32,
    pub retry_budget: BudgetSpec,
    /// How fast `load_aware` forgets a slow response time.
    pub latency_decay: Duration,
}

/// `protocol:` of an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 over TLS, negotiated by ALPN.
    H2,
    /// HTTP/2 over plaintext TCP with prior knowledge.
    H2c,
}

impl UpstreamProtocol {
    pub fn is_h2(self) -> bool {
        self != UpstreamProtocol::Http1
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub address: SocketAddr,
    pub weight: u32,
}

/// A backend given by name: every address the name resolves to becomes a
/// backend with this weight.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedBackend {
    pub host: String,
    pub port: u16,
    pub weight: u32,
}

impl NamedBackend {
    /// `host:port`, as written.
    pub fn name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheckSpec {
    pub kind: HealthKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_after: u32,
    pub unhealthy_after: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum HealthKind {
    Tcp,
    Http {
        path: String,
        host: Option<String>,
        /// Statuses that count as healthy (default: 200..=399).
        statuses: Vec<(u16, u16)>,
    },
    /// `grpc.health.v1.Health/Check` for `service` ("" = the whole server).
    Grpc {
        service: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    pub name: String,
    pub host: Option<HostMatch>,
    pub path_prefix: String,
    pub methods: Option<Vec<Method>>,
    pub strip_prefix: bool,
    /// Forward the path normalised (the default), or as the client sent it
    /// (routing, limits and filters always read the normalised path).
    pub normalize_path: bool,
    /// What `%2F` and `%5C` in the path mean (`normalize_path: { escaped_slashes }`).
    pub escaped_slashes: crate::request::escaped_slashes::EscapedSlashes,
    /// Largest request body in bytes (413 past it): the route's own
    /// `max_body`, else the top-level one; `None`: unlimited.
    pub max_body: Option<u64>,
    pub upstream: String,
    pub limits: Vec<String>,
    pub filters: Vec<String>,
}

/// `api.example.com` (exact) or `*.example.com` (any subdomain, not the apex).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostMatch {
    Exact(String),
    /// The suffix including its leading dot: `.example.com`.
    Wildcard(String),
}

/// `retry_budget:`: retries may add at most `ratio` of the requests, and
/// `min_per_second` more.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetSpec {
    pub ratio: f64,
    pub min_per_second: f64,
}

/// `outlier_detection:`: passive health.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierSpec {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejected_percent: u32,
}
