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

#[test]
fn escaped_slashes_is_chosen_by_the_mapping_form() {
    use crate::request::escaped_slashes::EscapedSlashes;
    let g = load_ok(&format!(
        "{BASE}routes:
  - {{ upstream: u }}
  - {{ path_prefix: /k/, upstream: u, normalize_path: {{ escaped_slashes: keep }} }}
  - {{ path_prefix: /r/, upstream: u, normalize_path: {{ escaped_slashes: reject }} }}
  - {{ path_prefix: /x/, upstream: u, normalize_path: {{ escaped_slashes: unescape }} }}
  - {{ path_prefix: /d/, upstream: u, normalize_path: {{}} }}
"
    ));
    let got: Vec<_> = g
        .routes
        .iter()
        .map(|r| (r.normalize_path, r.escaped_slashes))
        .collect();
    assert_eq!(
        got,
        [
            (true, EscapedSlashes::Keep),
            (true, EscapedSlashes::Keep),
            (true, EscapedSlashes::Reject),
            (true, EscapedSlashes::Unescape),
            (true, EscapedSlashes::Keep),
        ]
    );
    let errs = errors(&format!(
        "{BASE}routes:
  - {{ upstream: u, normalize_path: {{ escaped_slashes: KEEP_UNCHANGED }} }}
  - {{ path_prefix: /b/, upstream: u, normalize_path: {{ escaped_slash: keep }} }}
"
    ));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(
        errs[0],
        "routes[0].normalize_path.escaped_slashes: expected keep, reject or unescape, found `KEEP_UNCHANGED`"
    );
    assert!(
        errs[1].starts_with("routes[1].normalize_path.escaped_slash: unknown key"),
        "{errs:?}"
    );
}

#[test]
fn a_prefix_that_no_normalised_path_starts_with_is_refused() {
    // Such a route used to be accepted and then never matched (seen while
    // writing the config fuzz target's every-route-is-reachable check).
    for (prefix, clean) in [
        ("/api//", "/api/"),
        ("/a/./b/", "/a/b/"),
        ("/%7euser/", "/~user/"),
    ] {
        let errs = errors(&format!(
            "{BASE}routes:\n  - {{ path_prefix: \"{prefix}\", upstream: u }}\n"
        ));
        assert_eq!(errs.len(), 1, "{prefix}: {errs:?}");
        assert!(
            errs[0].starts_with("routes[0].path_prefix: ")
                && errs[0].contains(&format!("`{clean}`")),
            "{prefix}: {errs:?}"
        );
    }
    let errs = errors(&format!(
        "{BASE}routes:\n  - {{ path_prefix: /../x, upstream: u }}\n"
    ));
    assert_eq!(errs, ["routes[0].path_prefix: climbs above the root"]);
    // Without normalisation the raw path is matched, so any prefix can match.
    load_ok(&format!(
        "{BASE}routes:\n  - {{ path_prefix: /api//, upstream: u, normalize_path: false }}\n"
    ));
}

#[test]
fn max_body_takes_the_written_forms() {
    for (written, bytes) in [
        ("512", 512),
        ("\"512\"", 512),
        ("64KiB", 64 * 1024),
        ("10MiB", 10 << 20),
        ("1GiB", 1 << 30),
        ("64KB", 64_000),
        ("1TiB", 1 << 40),
        ("0", 0),
    ] {
        let g = load_ok(&format!(
            "max_body: {written}\n{BASE}routes:\n  - {{ upstream: u }}\n"
        ));
        assert_eq!(g.max_body, Some(bytes), "{written}");
        assert_eq!(
            g.routes[0].max_body,
            Some(bytes),
            "{written}: the route's default"
        );
    }
}

#[test]
fn a_route_overrides_the_top_level_max_body() {
    let g = load_ok(&format!(
        "max_body: 1KiB\n{BASE}routes:
  - {{ path_prefix: /a/, upstream: u }}
  - {{ path_prefix: /b/, upstream: u, max_body: 4KiB }}
  - {{ path_prefix: /c/, upstream: u, max_body: off }}
"
    ));
    let limits: Vec<_> = g.routes.iter().map(|r| r.max_body).collect();
    assert_eq!(limits, [Some(1024), Some(4096), None]);
    let unset = load_ok(&format!("{BASE}routes:\n  - {{ upstream: u }}\n"));
    assert_eq!(unset.max_body, None, "unset means unlimited");
    assert_eq!(unset.routes[0].max_body, None);
}

#[test]
fn nonsense_sizes_are_refused_with_their_key_path() {
    for (written, message) in [
        ("ten", "max_body: `ten` is not a size"),
        ("-1", "max_body: must be at least 0"),
        ("\"-1KiB\"", "max_body: `-1KiB` is not a size"),
        ("10m", "max_body: `10m` is ambiguous"),
        ("2TiB", "max_body: must be at most 1TiB"),
        (
            "99999999999999999999EiB",
            "max_body: `99999999999999999999EiB` is not a size",
        ),
        ("2199023255552", "max_body: must be at most 1099511627776"),
        (
            "[1]",
            "max_body: expected a size such as `64KiB`, found a list",
        ),
        ("1.5", "max_body: expected a whole number"),
    ] {
        let top = errors(&format!(
            "max_body: {written}\n{BASE}routes:\n  - {{ upstream: u }}\n"
        ));
        assert!(
            top.iter().any(|e| e.starts_with(message)),
            "{written}: {top:?}"
        );
        let route = errors(&format!(
            "{BASE}routes:\n  - upstream: u\n    max_body: {written}\n"
        ));
        let at_route = format!("routes[0].{message}");
        assert!(
            route.iter().any(|e| e.starts_with(&at_route)),
            "{written}: {route:?}"
        );
    }
}
