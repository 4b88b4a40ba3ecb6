//! Configuration: one YAML file holds Pingora's server keys at the top level
//! and the gateway's sections (`listen`, `upstreams`, `limits`, `routes`, ...).
//!
//! What users write (YAML) is kept apart from what the proxy runs on
//! ([`Config`]): [`load`] reads the text, checks every key it finds, and
//! returns either a fully typed config or *all* the errors, each with its key
//! path, so one `sluice -t` run lists everything to fix. Pingora's keys are
//! handed to Pingora's own `ServerConf` parser and `validate()`.

mod admin;
mod clients;
mod gateway;
mod health_check;
mod limits;
mod model;
mod node;
mod redis;
mod routes;
mod upstreams;

use pingora_core::server::configuration::ServerConf;
use serde_yaml::Value;

pub use model::*;
pub use node::{ConfigError, Errors, Node};
pub use upstreams::parse_ca;

use crate::filters::Registry;

/// The gateway's own top-level sections.
pub const GATEWAY_KEYS: &[&str] = &[
    "listen",
    "admin",
    "trusted_proxies",
    "max_request_header_size",
    "max_body",
    "h2_max_streams",
    "request_header_timeout",
    "keepalive_timeout",
    "max_connections",
    "max_connections_per_ip",
    "tls_handshake_timeout",
    "upstreams",
    "limits",
    "routes",
    "filters",
    "access_log",
    "redis",
    "resolver",
];

/// A loaded file: Pingora's server settings and the gateway's.
pub struct Loaded {
    pub server: ServerConf,
    pub gateway: Config,
}

/// Reads and validates a config file.
pub fn load_file(path: &str, registry: &Registry) -> Result<Loaded, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {path}: {e}"),
        }]
    })?;
    load(&text, registry)
}

/// Validates config text; on failure returns every error found.
pub fn load(text: &str, registry: &Registry) -> Result<Loaded, Vec<ConfigError>> {
    let mut errs = Errors::default();
    let root: Value = match serde_yaml::from_str(text) {
        Ok(Value::Null) => Value::Mapping(Default::default()),
        Ok(v) => v,
        Err(e) => {
            errs.push("", format!("not valid YAML: {e}"));
            return Err(errs.0);
        }
    };
    let Value::Mapping(top) = &root else {
        errs.push("", "the file must be a YAML mapping of sections");
        return Err(errs.0);
    };

    let server = server_conf(top, &mut errs);
    let gateway = gateway::validate(top, registry, &mut errs);
    match (server, gateway) {
        (Some(server), Some(gateway)) if errs.0.is_empty() => Ok(Loaded { server, gateway }),
        _ => Err(errs.0),
    }
}

/// Pingora's keys: every top-level key that is not the gateway's must be one
/// Pingora knows (its `ServerConf` ignores unknown keys, we do not).
fn server_conf(top: &serde_yaml::Mapping, errs: &mut Errors) -> Option<ServerConf> {
    let known: Vec<String> = match serde_yaml::to_value(ServerConf::default()) {
        Ok(Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let mut pingora = serde_yaml::Mapping::new();
    for (k, v) in top {
        let Some(key) = k.as_str() else {
            errs.push("", "top-level keys must be strings");
            continue;
        };
        if GATEWAY_KEYS.contains(&key) {
            continue;
        }
        if known.iter().any(|n| n == key) {
            pingora.insert(k.clone(), v.clone());
        } else {
            errs.push(
                key,
                format!(
                    "unknown key (gateway sections: {}; or one of Pingora's server keys)",
                    GATEWAY_KEYS.join(", ")
                ),
            );
        }
    }
    let conf: ServerConf = match serde_yaml::from_value(Value::Mapping(pingora)) {
        Ok(c) => c,
        Err(e) => {
            errs.push("", format!("Pingora server settings: {e}"));
            return None;
        }
    };
    match conf.validate() {
        Ok(c) => Some(c),
        Err(e) => {
            errs.push("", format!("Pingora server settings: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod body_path_tests;
#[cfg(test)]
mod discovery_tests;
#[cfg(test)]
mod h2_tests;
#[cfg(test)]
mod tests;
