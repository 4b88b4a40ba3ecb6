#!/usr/bin/env bash
# Goodput and p99 against offered load for no limit, a static concurrency limit
# at the true capacity, and adaptive_concurrency, in front of one backend of
# fixed capacity (benches/adaptive.rs). Writes docs/adaptive.svg and its
# section of BENCHMARKS.md. Takes about two minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
sluice_setup
OUT=${CARGO_TARGET_DIR:-target}/bench
mkdir -p "$OUT" docs
cargo build --release --bin sluice
cargo bench --bench adaptive -- --csv "$OUT/adaptive.csv"
meta="$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, sluice $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
python3 scripts/bench/adaptive_report.py "$OUT/adaptive.csv" BENCHMARKS.md docs/adaptive.svg "$meta"
echo "bench-adaptive: wrote BENCHMARKS.md and docs/adaptive.svg" >&2
