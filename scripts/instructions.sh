#!/usr/bin/env bash
# CPU instructions per proxied request, counted by valgrind's callgrind, for
# bare Pingora (examples/bare_pingora.rs) and sluice in the configurations of
# scripts/bench.sh's scenarios (a) and (c).
#
#   scripts/instructions.sh               # 8 s of load per proxy
#   DURATION=3 scripts/instructions.sh    # quicker, a little less steady
#
# Requests per second move with whatever else the machine runs; instruction
# counts do not, so a change of a few percent in sluice's own per-request work
# shows here when bench.sh cannot tell it from noise. The count covers every
# thread of the proxy (Pingora's timer thread included) and excludes the kernel.
# It says nothing about cache misses or system calls: read it beside bench.sh.
#
# Writes target/bench/instructions.md. Needs valgrind and wrk (installed if
# missing) and the release binaries (built unless SKIP_BUILD is set).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8}
HERE=scripts/bench
OUT=${CARGO_TARGET_DIR:-target}/bench
BIN=${CARGO_TARGET_DIR:-target}/release
URL_PATH="/bench?size=128"

die() {
    echo "instructions: $*" >&2
    exit 1
}

packages="valgrind wrk"
command -v python3 >/dev/null || packages+=" python3"
SLUICE_EXTRA_PACKAGES="$packages" source scripts/setup.sh
sluice_setup
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --bins --examples

RUN=$(mktemp -d "${TMPDIR:-/tmp}/sluice-instr.XXXXXX")
mkdir -p "$OUT"
pids=()
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for URL: polls (bounded, 60 s: valgrind starts slowly) until URL answers 200.
wait_for() {
    for _ in $(seq 600); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)" = 200 ] && return 0
        sleep 0.1
    done
    die "nothing answered 200 at $1 within 60 s"
}

source "$HERE/render.sh"

mapfile -t PORTS < <(python3 "$HERE/free_ports.py" 5)
B1=127.0.0.1:${PORTS[0]}
B2=127.0.0.1:${PORTS[1]}
"$BIN/sluice-echo" "$B1" echo-1 >"$RUN/echo-1.log" 2>&1 &
pids+=($!)
"$BIN/sluice-echo" "$B2" echo-2 >"$RUN/echo-2.log" 2>&1 &
pids+=($!)
wait_for "http://$B1/health"
wait_for "http://$B2/health"

# measure NAME ADDR HEADER CMD...: runs CMD under callgrind, loads it with wrk
# (sending HEADER unless it is "-"), and prints "NAME REQUESTS INSTRUCTIONS".
measure() {
    local name=$1 addr=$2 header=$3 vpid requests total extra=()
    shift 3
    [ "$header" = - ] || extra=(-H "$header")
    valgrind --tool=callgrind --callgrind-out-file="$RUN/$name.cg" "$@" >"$RUN/$name.log" 2>&1 &
    vpid=$!
    pids+=("$vpid")
    wait_for "http://$addr$URL_PATH"
    # Warm up (connection pools, allocator, lazily built state), then count
    # from zero over a fixed stretch of load.
    wrk -t1 -c8 -d2s "${extra[@]}" "http://$addr$URL_PATH" >/dev/null
    callgrind_control --zero "$vpid" >/dev/null 2>&1
    requests=$(wrk -t1 -c8 -d"${DURATION}s" "${extra[@]}" "http://$addr$URL_PATH" | awk '/requests in/ {print $1}')
    callgrind_control --dump "$vpid" >/dev/null 2>&1
    kill -INT "$vpid"
    wait "$vpid" 2>/dev/null || true
    total=$(callgrind_annotate "$RUN/$name.cg.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    [ -n "$total" ] && [ "${requests:-0}" -gt 0 ] || die "no count for $name (see $RUN/$name.log)"
    echo "$name $requests $total"
}

render "$HERE/pingora.yaml.in" "$RUN/pingora.yaml" RUN="$RUN" WORK_STEALING=false
sluice_yaml() { # NAME PORT ROUTE_LIMITS
    render "$HERE/sluice.yaml.in" "$RUN/sluice-$1.yaml" RUN="$RUN" NAME="$1" \
        LISTEN="127.0.0.1:$2" BALANCE=round_robin ROUTE_LIMITS="$3" \
        BACKEND1="$B1" BACKEND2="$B2" WORK_STEALING=false \
        REDIS="# no shared store" SHARED_PER_IP="# -" SHARED_PER_KEY="# -"
}
sluice_yaml a "${PORTS[3]}" ""
sluice_yaml c "${PORTS[4]}" "admit_per_ip, admit_per_key"

results=()
results+=("$(BARE_LISTEN="127.0.0.1:${PORTS[2]}" BARE_BACKENDS="$B1,$B2" \
    measure "bare Pingora" "127.0.0.1:${PORTS[2]}" - "$BIN/examples/bare_pingora" -c "$RUN/pingora.yaml")")
results+=("$(RUST_LOG=warn measure "sluice (a)" "127.0.0.1:${PORTS[3]}" - "$BIN/sluice" -c "$RUN/sluice-a.yaml")")
results+=("$(RUST_LOG=warn measure "sluice (c)" "127.0.0.1:${PORTS[4]}" "x-api-key: bench" "$BIN/sluice" -c "$RUN/sluice-c.yaml")")

{
    echo "| proxy | requests counted | instructions per request | vs bare Pingora |"
    echo "|---|--:|--:|--:|"
    base=""
    for line in "${results[@]}"; do
        read -r -a f <<<"$line"
        n=${#f[@]}
        name="${f[*]:0:n-2}" requests=${f[n-2]} total=${f[n-1]}
        per=$((total / requests))
        [ -n "$base" ] || base=$per
        echo "| $name | $requests | $per | $(python3 -c "print(f'{$per/$base:.2f}')") |"
    done
    echo
    echo "callgrind, \`wrk -t1 -c8 -d${DURATION}s\` after a 2 s warm-up, $(date -u '+%Y-%m-%d %H:%M UTC'), sluice $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
} | tee "$OUT/instructions.md"
