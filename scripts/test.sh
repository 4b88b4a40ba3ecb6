#!/usr/bin/env bash
# Installs what the build needs, then runs every check CI runs: formatting,
# clippy with warnings as errors, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
sluice_setup

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --lib --bins --tests --examples
# Doc examples are not covered by --all-targets.
cargo test --doc
