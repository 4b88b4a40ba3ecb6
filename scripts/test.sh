#!/usr/bin/env bash
# Installs what the build needs, then runs every check CI runs: formatting,
# clippy with warnings as errors, and the whole test suite (whose dashboard
# test drives headless Chromium, so setup installs it too).
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE_WITH_BROWSER=1 source scripts/setup.sh
sluice_setup

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

# tests/panics.rs runs examples/panicking_filter as the gateway, so the examples
# must exist as programs; `cargo test --examples` builds them as test harnesses.
cargo build --examples

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --lib --bins --tests --examples 2>&1 | tee "$log"

# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) passed += $(i - 1)
            if ($(i) ~ /^failed;?$/) failed += $(i - 1)
        }
     }
     END { printf "sluice: %d passed, %d failed\n", passed, failed }' "$log"
