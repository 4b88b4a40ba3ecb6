//! Replays every committed fuzz corpus (`fuzz/corpus/TARGET/`) through its
//! target, so CI keeps every seed and every crash once found passing without
//! running a fuzzer. A session (`scripts/fuzz.sh TARGET SECONDS`) explores
//! further from the same files.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use sluice::fuzz_targets::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs every file of `target`'s corpus; fails naming each file that panics.
fn replay(target: &str) {
    let Some(&(_, run)) = TARGETS.iter().find(|(name, _)| *name == target) else {
        panic!("no fuzz target named {target}");
    };
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    // A corpus that went missing would pass vacuously.
    assert!(
        files.len() >= 10,
        "{}: only {} seeds",
        dir.display(),
        files.len()
    );
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).unwrap();
            catch_unwind(AssertUnwindSafe(|| run(&data))).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(failed.is_empty(), "inputs that panic {target}: {failed:#?}");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn router_corpus() {
    replay("router");
}

#[test]
fn keys_corpus() {
    replay("keys");
}

#[test]
fn forwarded_corpus() {
    replay("forwarded");
}

#[test]
fn limiter_corpus() {
    replay("limiter");
}

#[test]
fn every_corpus_has_a_target_and_every_target_a_corpus() {
    let on_disk: Vec<String> = std::fs::read_dir(corpus_dir(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for (name, _) in TARGETS {
        assert!(on_disk.iter().any(|d| d == name), "no corpus for {name}");
    }
    for dir in &on_disk {
        assert!(
            TARGETS.iter().any(|(name, _)| name == dir),
            "fuzz/corpus/{dir} has no target"
        );
    }
    let fuzz_manifest = std::fs::read_to_string(corpus_dir("../Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(
            fuzz_manifest.contains(&format!("path = \"fuzz_targets/{name}.rs\"")),
            "fuzz/Cargo.toml has no binary for {name}"
        );
    }
}
