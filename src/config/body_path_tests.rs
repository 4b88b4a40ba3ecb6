//! `normalize_path` and `max_body`: defaults, overrides, and refusals by key path.

use super::*;
use crate::filters::Registry;

const BASE: &str = "listen: [127.0.0.1:1]\nupstreams:\n  u: { backends: [127.0.0.1:2] }\n";

fn load_ok(yaml: &str) -> Config {
    match load(yaml, &Registry::builtin()) {
        Ok(l) => l.gateway,
        Err(e) => panic!("{yaml}\n{e:?}"),
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match load(yaml, &Registry::builtin()) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn normalize_path_defaults_to_true_and_may_be_turned_off() {
    let g = load_ok(&format!(
        "{BASE}routes:\n  - {{ upstream: u }}\n  - {{ path_prefix: /raw/, upstream: u, normalize_path: false }}\n"
    ));
    assert!(g.routes[0].normalize_path);
    assert!(!g.routes[1].normalize_path);
    let errs = errors(&format!(
        "{BASE}routes:\n  - {{ upstream: u, normalize_path: sometimes }}\n"
    ));
    assert_eq!(
        errs,
        ["routes[0].normalize_path: expected true or false, found a string"]
    );
}
