#!/usr/bin/env bash
# Installs what building and testing sluice needs on Debian/Ubuntu, if missing:
# cmake (Pingora's libz-ng-sys), pkg-config and libssl-dev (OpenSSL TLS),
# redis-server / redis-cli, which the shared-limit tests start themselves, and
# curl (with HTTP/2) and nghttp2-client (h2load) for the HTTP/2 tests and benchmarks.
# With SLUICE_WITH_BROWSER=1 (scripts/test.sh sets it, and so does running this
# file directly) also headless Chromium and chromedriver, for the dashboard's
# browser test; run.sh and bench.sh do without them.
# With SLUICE_WITH_FUZZ=1 (scripts/fuzz.sh sets it) also g++, which builds the
# libFuzzer runtime that cargo-fuzz links into each target.
# Sourced by run.sh, test.sh and bench.sh; safe to run again.
set -euo pipefail

SLUICE_BROWSER_PACKAGES=(chromium chromium-driver)
SLUICE_FUZZ_PACKAGES=(g++)
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    SLUICE_WITH_BROWSER=1
fi
SLUICE_PACKAGES=(cmake pkg-config libssl-dev curl redis-server redis-tools nghttp2-client ${SLUICE_EXTRA_PACKAGES:-})
if [ "${SLUICE_WITH_BROWSER:-0}" = 1 ]; then
    SLUICE_PACKAGES+=("${SLUICE_BROWSER_PACKAGES[@]}")
fi
if [ "${SLUICE_WITH_FUZZ:-0}" = 1 ]; then
    SLUICE_PACKAGES+=("${SLUICE_FUZZ_PACKAGES[@]}")
fi

sluice_missing_packages() {
    local missing=()
    for p in "${SLUICE_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    echo "${missing[@]:-}"
}

sluice_setup() {
    local missing
    missing=$(sluice_missing_packages)
    if [ -n "$missing" ]; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "setup: installing $missing" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
    fi
    if ! command -v cargo >/dev/null; then
        echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
        exit 1
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    sluice_setup
fi
