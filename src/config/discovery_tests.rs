//! `resolver:`, backends given by name, and `dns_refresh`.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::filters::Registry;

fn load_ok(yaml: &str) -> Config {
    match load(yaml, &Registry::builtin()) {
        Ok(l) => l.gateway,
        Err(errs) => panic!("{errs:?}"),
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml, &Registry::builtin()) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

fn with(top: &str, backends: &str, extra: &str) -> String {
    format!("listen: [127.0.0.1:1]\n{top}upstreams:\n  u:\n    backends: {backends}\n{extra}routes:\n  - upstream: u\n")
}

#[test]
fn names_are_kept_as_names_with_their_weight_and_refresh() {
    let c = load_ok(&with(
        "resolver: [10.0.0.2:53, 10.0.0.3]\n",
        "[127.0.0.1:2, API.Internal:8080, { address: db.internal.:5432, weight: 3 }]",
        "    dns_refresh: 2s\n",
    ));
    assert_eq!(
        c.resolver,
        vec![
            "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
            "10.0.0.3:53".parse().unwrap()
        ]
    );
    let u = &c.upstreams["u"];
    assert_eq!(u.backends.len(), 1);
    assert_eq!(
        u.named,
        vec![
            NamedBackend {
                host: "api.internal".into(),
                port: 8080,
                weight: 1
            },
            NamedBackend {
                host: "db.internal".into(),
                port: 5432,
                weight: 3
            },
        ]
    );
    assert_eq!(u.dns_refresh, Some(Duration::from_secs(2)));
}

#[test]
fn dns_refresh_defaults_to_5s_and_off_means_once() {
    let c = load_ok(&with("", "[api:80]", ""));
    assert_eq!(c.upstreams["u"].dns_refresh, Some(Duration::from_secs(5)));
    assert!(c.resolver.is_empty(), "no resolver: the system's");
    let c = load_ok(&with("", "[api:80]", "    dns_refresh: off\n"));
    assert_eq!(c.upstreams["u"].dns_refresh, None);
}

#[test]
fn bad_names_and_resolvers_are_errors_at_their_key_path() {
    let errs = errors(&with(
        "resolver: [10.0.0.2:53, not a server]\n",
        "[api, 'bad host:80', api:99999, api:80, api:80]",
        "    dns_refresh: soon\n",
    ));
    for expected in [
        "resolver[1]: `not a server` is not a DNS server address",
        "upstreams.u.backends[0]: `api` needs a port",
        "upstreams.u.backends[1]: `bad host:80` is not an address or a host name",
        "upstreams.u.backends[2]: `api:99999`: `99999` is not a port",
        "upstreams.u.backends[4]: api:80 is listed twice",
        "upstreams.u.dns_refresh:",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(expected)),
            "no `{expected}` in {errs:?}"
        );
    }
}
