#!/usr/bin/env bash
# Reproducible proxy benchmark: nginx, HAProxy, bare Pingora and sluice, each
# with one worker, in front of two sluice-echo backends, all on loopback.
#
#   scripts/bench.sh                       # 3 rounds of 10 s each, 64 connections
#   ROUNDS=1 DURATION=2 scripts/bench.sh   # a quick trial
#
# Installs nginx, haproxy and wrk (Debian packages) if missing, builds sluice in
# release mode, and writes target/bench/results.csv (every round), docs/bench.svg
# and the section of BENCHMARKS.md between `<!-- bench.sh:begin -->` and
# `<!-- bench.sh:end -->` (the rest of that file is left alone).
#
# Environment:
#   ROUNDS (3)           rounds; each runs every scenario and proxy once, in turn
#   DURATION (10s)       per measurement; a bare number means seconds
#   CONNECTIONS (64)     wrk connections
#   WRK_THREADS          wrk threads: 1 when one CPU is left for load, else 2
#   H2_CONNECTIONS (10)  h2load connections, scenarios (h) and (i)
#   H2_STREAMS (10)      h2load concurrent streams per connection, scenarios (h) and (i)
#   SLUICE_WORK_STEALING (false) Pingora's work_stealing for sluice and bare Pingora
#   SCENARIOS            subset of: a_small b_16k c_admit d_reject e_load_aware f_slow_backend g_redis h_h2 i_grpc
#   PROXIES              subset of: nginx haproxy pingora sluice
#   SKIP_BUILD           set to use the release binaries already in target/release
#
# Scenarios (a) and (b) run all four proxies; (c), (d) and (e) only sluice.
# Scenario (f) puts sluice in front of three backends, one of them ten times
# slower (SLOW_MS, default 10 ms, against FAST_MS, 1 ms), and compares the tail
# latency of round_robin, least_conn and load_aware.
# Scenario (g) is (c) with both limits kept in a local redis-server
# (`store: redis`), and also times single decisions against that Redis
# (`cargo bench --bench redis_store`: p50/p99 per algorithm, into the notes).
# Scenario (h) is HTTP/2 with prior knowledge (h2c) from h2load, H2_CONNECTIONS x
# H2_STREAMS, to nginx, bare Pingora and sluice (HTTP/1.1 to the backends, as in
# (a)); HAProxy is not in it. Scenario (i) is gRPC unary calls
# (grpc.health.v1.Health/Check) from h2load, the same shape, through nginx
# (grpc_pass), bare Pingora and sluice, h2c on both sides, to two gRPC backends
# (examples/grpc_backend.rs).
# With two or more CPUs, every proxy runs on CPU 0 and wrk and the backends on
# the others, so the proxies compete for one core and nothing else does.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
[[ $DURATION =~ ^[0-9]+$ ]] && DURATION="${DURATION}s"
CONNECTIONS=${CONNECTIONS:-64}
# With threads: 1, `work_stealing: false` gives Pingora a current-thread tokio
# runtime instead of a one-worker multi-thread one: no cross-thread wake-ups.
# In an A/B trial on 2 cores (scenarios a and c, two rounds each, twice), `false`
# served more requests per second in every pair, for sluice and bare Pingora.
if [ -z "${SLUICE_WORK_STEALING:-}" ]; then
    SLUICE_WORK_STEALING=false
    WORK_STEALING_WHY="a current-thread runtime, which beat a one-worker work-stealing runtime for both in an A/B trial"
else
    WORK_STEALING_WHY="set by SLUICE_WORK_STEALING"
fi
SCENARIOS=${SCENARIOS:-a_small b_16k c_admit d_reject e_load_aware f_slow_backend g_redis h_h2 i_grpc}
H2_CONNECTIONS=${H2_CONNECTIONS:-10}
H2_STREAMS=${H2_STREAMS:-10}
FAST_MS=${FAST_MS:-1}
SLOW_MS=${SLOW_MS:-10}
PROXIES=${PROXIES:-nginx haproxy pingora sluice}
HERE=scripts/bench
OUT=${CARGO_TARGET_DIR:-target}/bench
BIN=${CARGO_TARGET_DIR:-target}/release
SMALL_PATH="/bench?size=128"
LARGE_PATH="/bench?size=16384"
API_KEY_HEADER="x-api-key: bench"
GRPC_PATH=/grpc.health.v1.Health/Check

die() {
    echo "bench: $*" >&2
    exit 1
}
has() { [[ " $1 " == *" $2 "* ]]; }

# --- set-up ---------------------------------------------------------------------
packages="nginx haproxy wrk"
command -v python3 >/dev/null || packages+=" python3"
SLUICE_EXTRA_PACKAGES="$packages" source scripts/setup.sh
sluice_setup
# Debian installs the daemons in /usr/sbin, which a non-root PATH may lack.
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release --bins --examples
fi

NPROC=$(nproc)
PROXY_PIN=()
LOAD_PIN=()
LOAD_CPUS=$NPROC
PINNING="none (a single CPU)"
if [ "$NPROC" -ge 2 ]; then
    load_set=1
    [ "$NPROC" -gt 2 ] && load_set="1-$((NPROC - 1))"
    PROXY_PIN=(taskset -c 0)
    LOAD_PIN=(taskset -c "$load_set")
    LOAD_CPUS=$((NPROC - 1))
    PINNING="each proxy on CPU 0 (\`taskset -c 0\`); wrk and both backends on CPU $load_set"
fi
if [ -z "${WRK_THREADS:-}" ]; then
    WRK_THREADS=1
    [ "$LOAD_CPUS" -ge 2 ] && WRK_THREADS=2
fi

RUN=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
chmod 755 "$RUN" # nginx's workers may run as another user
mkdir -p "$OUT/raw" "$OUT/logs" docs
rm -f "$OUT"/raw/*.txt "$OUT"/logs/*.log

# --- processes, and stopping every one of them on exit ---------------------------
pids=()
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    cp "$RUN"/*.log "$OUT/logs/" 2>/dev/null || true
    rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, its output in $RUN/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$RUN/$name.log" 2>&1 &
    pids+=($!)
    eval "PID_${name//-/_}=$!"
}

# check NAME URL STATUS [CURL_ARGS...]: polls (bounded) until URL answers STATUS.
check() {
    local name=$1 url=$2 want=$3 pidvar="PID_${1//-/_}" code=""
    shift 3
    for _ in $(seq 200); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" || true)
        [ "$code" = "$want" ] && return 0
        if ! alive "${!pidvar}"; then
            tail -n 20 "$RUN/$name.log" >&2 || true
            die "$name exited (its log is above)"
        fi
        sleep 0.1
    done
    tail -n 20 "$RUN/$name.log" >&2 || true
    die "$name did not answer $want at $url within 20 s (last status: ${code:-none})"
}

source "$HERE/render.sh"

# --- backends ---------------------------------------------------------------------
mapfile -t PORTS < <(python3 "$HERE/free_ports.py" 25)
BACKEND1=127.0.0.1:${PORTS[0]}
BACKEND2=127.0.0.1:${PORTS[1]}
start echo-1 "${LOAD_PIN[@]}" "$BIN/sluice-echo" "$BACKEND1" echo-1
start echo-2 "${LOAD_PIN[@]}" "$BIN/sluice-echo" "$BACKEND2" echo-2
check echo-1 "http://$BACKEND1/health" 200
check echo-2 "http://$BACKEND2/health" 200
GRPC1=127.0.0.1:${PORTS[20]}
GRPC2=127.0.0.1:${PORTS[21]}
# A framed, empty HealthCheckRequest: the whole server's health.
printf '\0\0\0\0\0' >"$RUN/grpc-check.bin"
GRPC_CURL=(--http2-prior-knowledge -X POST -H "content-type: application/grpc" -H "te: trailers"
    --data-binary "@$RUN/grpc-check.bin")
if has "$SCENARIOS" i_grpc; then
    start grpc-1 "${LOAD_PIN[@]}" "$BIN/examples/grpc_backend" "$GRPC1"
    start grpc-2 "${LOAD_PIN[@]}" "$BIN/examples/grpc_backend" "$GRPC2"
    check grpc-1 "http://$GRPC1$GRPC_PATH" 200 "${GRPC_CURL[@]}"
    check grpc-2 "http://$GRPC2$GRPC_PATH" 200 "${GRPC_CURL[@]}"
fi

# --- proxies: every instance a scenario needs, started once, idle between runs ----
declare -A ADDR # instance -> listen address
NOTES=()
common=(RUN="$RUN" BACKEND1="$BACKEND1" BACKEND2="$BACKEND2" GRPC1="$GRPC1" GRPC2="$GRPC2")

sluice_config() { # NAME PORT BALANCE ROUTE_LIMITS [REDIS_ADDR [LISTEN_ITEM]]
    local redis="# no shared store" per_ip="# -" per_key="# -"
    if [ -n "${5:-}" ]; then
        redis="redis: { url: 'redis://$5/0', decision_timeout: 50ms }"
        per_ip="shared_per_ip: { algorithm: token_bucket, key: client_ip, capacity: 1000000000, fill_rate: 1000000000, store: redis }"
        per_key="shared_per_key: { algorithm: sliding_window, key: 'header:x-api-key', limit: 4000000000, window: 60s, store: redis }"
    fi
    render "$HERE/sluice.yaml.in" "$RUN/sluice-$1.yaml" "${common[@]}" NAME="$1" \
        LISTEN="${6:-127.0.0.1:$2}" BALANCE="$3" ROUTE_LIMITS="$4" \
        WORK_STEALING="$SLUICE_WORK_STEALING" REDIS="$redis" SHARED_PER_IP="$per_ip" \
        SHARED_PER_KEY="$per_key"
}
start_sluice() { # NAME PORT BALANCE ROUTE_LIMITS [REDIS_ADDR [LISTEN_ITEM]]
    sluice_config "$@"
    "$BIN/sluice" -t -c "$RUN/sluice-$1.yaml" >/dev/null || die "sluice -t refused $RUN/sluice-$1.yaml"
    RUST_LOG=warn start "sluice-$1" "${PROXY_PIN[@]}" "$BIN/sluice" -c "$RUN/sluice-$1.yaml"
    ADDR[sluice-$1]=127.0.0.1:$2
}

# nginx 1.25.1 replaced `listen ... http2` with `http2 on`; on plaintext both
# mean HTTP/2 with prior knowledge (the older form: HTTP/2 only on that port).
NGINX_H2_LISTEN="127.0.0.1:${PORTS[17]} http2"
NGINX_GRPC_LISTEN="127.0.0.1:${PORTS[22]} http2"
NGINX_HTTP2_ON=""
nginx_version=$("$NGINX" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p' | head -n1 || true)
if [ -n "$nginx_version" ] && [ "$(printf '%s\n1.25.1\n' "$nginx_version" | sort -V | head -n1)" = 1.25.1 ]; then
    NGINX_H2_LISTEN="127.0.0.1:${PORTS[17]}"
    NGINX_GRPC_LISTEN="127.0.0.1:${PORTS[22]}"
    NGINX_HTTP2_ON="http2 on;"
fi

if has "$SCENARIOS" a_small || has "$SCENARIOS" b_16k || has "$SCENARIOS" h_h2 ||
    has "$SCENARIOS" i_grpc; then
    if has "$PROXIES" nginx; then
        mkdir -p "$RUN/nginx-tmp"
        render "$HERE/nginx.conf.in" "$RUN/nginx.conf" "${common[@]}" LISTEN="127.0.0.1:${PORTS[2]}" \
            LISTEN_H2="$NGINX_H2_LISTEN" LISTEN_GRPC="$NGINX_GRPC_LISTEN" HTTP2_ON="$NGINX_HTTP2_ON"
        "$NGINX" -t -q -p "$RUN" -e "$RUN/nginx-error.log" -c "$RUN/nginx.conf"
        start nginx "${PROXY_PIN[@]}" "$NGINX" -p "$RUN" -e "$RUN/nginx-error.log" -c "$RUN/nginx.conf"
        ADDR[nginx]=127.0.0.1:${PORTS[2]}
        ADDR[nginx-h2]=127.0.0.1:${PORTS[17]}
        ADDR[nginx-grpc]=127.0.0.1:${PORTS[22]}
        PID_nginx_h2=$PID_nginx
        PID_nginx_grpc=$PID_nginx
    fi
    if has "$PROXIES" haproxy; then
        render "$HERE/haproxy.cfg.in" "$RUN/haproxy.cfg" "${common[@]}" LISTEN="127.0.0.1:${PORTS[3]}"
        "$HAPROXY" -q -c -f "$RUN/haproxy.cfg"
        start haproxy "${PROXY_PIN[@]}" "$HAPROXY" -db -f "$RUN/haproxy.cfg"
        ADDR[haproxy]=127.0.0.1:${PORTS[3]}
    fi
    if has "$PROXIES" pingora; then
        render "$HERE/pingora.yaml.in" "$RUN/pingora.yaml" "${common[@]}" \
            WORK_STEALING="$SLUICE_WORK_STEALING"
        BARE_LISTEN=127.0.0.1:${PORTS[4]} BARE_BACKENDS="$BACKEND1,$BACKEND2" RUST_LOG=warn \
            start pingora "${PROXY_PIN[@]}" "$BIN/examples/bare_pingora" -c "$RUN/pingora.yaml"
        ADDR[pingora]=127.0.0.1:${PORTS[4]}
    fi
    has "$PROXIES" sluice && start_sluice plain "${PORTS[5]}" round_robin ""
fi
if has "$SCENARIOS" h_h2; then
    if has "$PROXIES" pingora; then
        render "$HERE/pingora.yaml.in" "$RUN/pingora-h2.yaml" "${common[@]}" \
            WORK_STEALING="$SLUICE_WORK_STEALING"
        sed -i "s|$RUN/pingora\.|$RUN/pingora-h2.|g" "$RUN/pingora-h2.yaml"
        BARE_LISTEN=127.0.0.1:${PORTS[18]} BARE_BACKENDS="$BACKEND1,$BACKEND2" BARE_H2C=1 \
            RUST_LOG=warn start pingora-h2 "${PROXY_PIN[@]}" "$BIN/examples/bare_pingora" \
            -c "$RUN/pingora-h2.yaml"
        ADDR[pingora-h2]=127.0.0.1:${PORTS[18]}
    fi
    if has "$PROXIES" sluice; then
        # (a)'s gateway, its listener taking HTTP/2 with prior knowledge too.
        start_sluice h2 "${PORTS[19]}" round_robin "" "" \
            "{ address: 127.0.0.1:${PORTS[19]}, h2c: true }"
    fi
fi
if has "$SCENARIOS" i_grpc; then
    if has "$PROXIES" pingora; then
        render "$HERE/pingora.yaml.in" "$RUN/pingora-grpc.yaml" "${common[@]}" \
            WORK_STEALING="$SLUICE_WORK_STEALING"
        sed -i "s|$RUN/pingora\.|$RUN/pingora-grpc.|g" "$RUN/pingora-grpc.yaml"
        BARE_LISTEN=127.0.0.1:${PORTS[23]} BARE_BACKENDS="$GRPC1,$GRPC2" BARE_H2C=1 \
            BARE_UPSTREAM_H2C=1 RUST_LOG=warn start pingora-grpc "${PROXY_PIN[@]}" \
            "$BIN/examples/bare_pingora" -c "$RUN/pingora-grpc.yaml"
        ADDR[pingora-grpc]=127.0.0.1:${PORTS[23]}
    fi
    if has "$PROXIES" sluice; then
        render "$HERE/sluice-grpc.yaml.in" "$RUN/sluice-grpc.yaml" "${common[@]}" \
            LISTEN="127.0.0.1:${PORTS[24]}" WORK_STEALING="$SLUICE_WORK_STEALING"
        "$BIN/sluice" -t -c "$RUN/sluice-grpc.yaml" >/dev/null || die "sluice -t refused $RUN/sluice-grpc.yaml"
        RUST_LOG=warn start sluice-grpc "${PROXY_PIN[@]}" "$BIN/sluice" -c "$RUN/sluice-grpc.yaml"
        ADDR[sluice-grpc]=127.0.0.1:${PORTS[24]}
    fi
fi
if has "$PROXIES" sluice; then
    has "$SCENARIOS" c_admit && start_sluice admit "${PORTS[6]}" round_robin "admit_per_ip, admit_per_key"
    has "$SCENARIOS" d_reject && start_sluice reject "${PORTS[7]}" round_robin "reject_all"
    if has "$SCENARIOS" g_redis; then
        REDIS=127.0.0.1:${PORTS[15]}
        start redis "${LOAD_PIN[@]}" redis-server --port "${PORTS[15]}" --bind 127.0.0.1 \
            --save "" --appendonly no
        for _ in $(seq 100); do
            [ "$(redis-cli -p "${PORTS[15]}" ping 2>/dev/null)" = PONG ] && break
            sleep 0.1
        done
        start_sluice redis "${PORTS[16]}" round_robin "shared_per_ip, shared_per_key" "$REDIS"
    fi
    if has "$SCENARIOS" f_slow_backend; then
        FAST1=127.0.0.1:${PORTS[9]}
        FAST2=127.0.0.1:${PORTS[10]}
        SLOW=127.0.0.1:${PORTS[11]}
        start echo-fast-1 "${LOAD_PIN[@]}" "$BIN/sluice-echo" "$FAST1" fast-1 "$FAST_MS"
        start echo-fast-2 "${LOAD_PIN[@]}" "$BIN/sluice-echo" "$FAST2" fast-2 "$FAST_MS"
        start echo-slow "${LOAD_PIN[@]}" "$BIN/sluice-echo" "$SLOW" slow "$SLOW_MS"
        for b in fast-1 fast-2 slow; do
            addr=$FAST1
            [ "$b" = fast-2 ] && addr=$FAST2
            [ "$b" = slow ] && addr=$SLOW
            check "echo-$b" "http://$addr/health" 200
        done
        port=12
        for balance in round_robin least_conn load_aware; do
            name=f_$balance
            render "$HERE/sluice-balance.yaml.in" "$RUN/sluice-$name.yaml" RUN="$RUN" \
                NAME="$name" LISTEN="127.0.0.1:${PORTS[$port]}" BALANCE="$balance" \
                FAST1="$FAST1" FAST2="$FAST2" SLOW="$SLOW" WORK_STEALING="$SLUICE_WORK_STEALING"
            "$BIN/sluice" -t -c "$RUN/sluice-$name.yaml" >/dev/null ||
                die "sluice -t refused $RUN/sluice-$name.yaml"
            RUST_LOG=warn start "sluice-$name" "${PROXY_PIN[@]}" "$BIN/sluice" -c "$RUN/sluice-$name.yaml"
            ADDR[sluice-$name]=127.0.0.1:${PORTS[$port]}
            port=$((port + 1))
        done
    fi
    if has "$SCENARIOS" e_load_aware; then
        # Offered only when this build's own validation accepts the algorithm.
        sluice_config probe "${PORTS[8]}" load_aware ""
        if refusal=$("$BIN/sluice" -t -c "$RUN/sluice-probe.yaml" 2>&1); then
            start_sluice load_aware "${PORTS[8]}" load_aware ""
        else
            reason=$(grep -m1 'balance' <<<"$refusal" | sed 's/^ *//' || true)
            NOTES+=("(e) skipped: \`sluice -t\` refuses \`balance: load_aware\` in this build (${reason:-see sluice -t})")
            echo "bench: ${NOTES[-1]}" >&2
        fi
    fi
fi

# --- the plan: what each scenario measures, and through which instance -----------
# scenario proxy instance path expected-status extra-curl/wrk-header
plan=()
for scenario in $SCENARIOS; do
    case $scenario in
    a_small | b_16k)
        path=$SMALL_PATH
        [ "$scenario" = b_16k ] && path=$LARGE_PATH
        for proxy in $PROXIES; do
            instance=$proxy
            [ "$proxy" = sluice ] && instance=sluice-plain
            plan+=("$scenario $proxy $instance $path 200 -")
        done
        ;;
    c_admit) plan+=("c_admit sluice sluice-admit $SMALL_PATH 200 key") ;;
    g_redis) plan+=("g_redis sluice sluice-redis $SMALL_PATH 200 key") ;;
    h_h2)
        for proxy in $PROXIES; do
            [ "$proxy" = haproxy ] && continue
            plan+=("h_h2 $proxy $proxy-h2 $SMALL_PATH 200 h2")
        done
        ;;
    i_grpc)
        for proxy in $PROXIES; do
            [ "$proxy" = haproxy ] && continue
            plan+=("i_grpc $proxy $proxy-grpc $GRPC_PATH 200 grpc")
        done
        ;;
    d_reject) plan+=("d_reject sluice sluice-reject $SMALL_PATH 429 -") ;;
    e_load_aware) plan+=("e_load_aware sluice sluice-load_aware $SMALL_PATH 200 -") ;;
    f_slow_backend)
        plan+=("f_slow_backend sluice_rr sluice-f_round_robin $SMALL_PATH 200 -")
        plan+=("f_slow_backend sluice_lc sluice-f_least_conn $SMALL_PATH 200 -")
        plan+=("f_slow_backend sluice_la sluice-f_load_aware $SMALL_PATH 200 -")
        ;;
    *) die "unknown scenario $scenario (a_small b_16k c_admit d_reject e_load_aware f_slow_backend g_redis h_h2 i_grpc)" ;;
    esac
done

# --- machine, versions, method ----------------------------------------------------
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$NPROC"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
    echo "kernel=$(uname -sr)"
    echo "nginx=$("$NGINX" -v 2>&1 | sed -n 's|.*nginx/|nginx |p' | head -n1 || true)"
    echo "haproxy=$("$HAPROXY" -v 2>&1 | head -n1 | awk '{print "HAProxy " $3}' || true)"
    echo "wrk=$(wrk -v 2>&1 | head -n1 | awk '{print "wrk " $2}' || true)"
    echo "h2load=$(h2load --version 2>&1 | head -n1 | awk '{print "h2load " $2}' || true)"
    echo "h2_connections=$H2_CONNECTIONS"
    echo "h2_streams=$H2_STREAMS"
    echo "rustc=$(rustc -V)"
    echo "pingora=$(awk '$0 == "name = \"pingora\"" {getline; gsub(/"/, "", $3); print $3}' Cargo.lock)"
    echo "sluice=$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
    echo "pinning=$PINNING"
    echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rounds=$ROUNDS"
    echo "duration=$DURATION"
    echo "connections=$CONNECTIONS"
    echo "wrk_threads=$WRK_THREADS"
    echo "work_stealing=$SLUICE_WORK_STEALING"
    echo "work_stealing_why=$WORK_STEALING_WHY"
    echo "allocator=mimalloc"
    echo "small_path=$SMALL_PATH"
    echo "large_path=$LARGE_PATH"
    echo "slow_backend=(f): backends answer after $FAST_MS ms, $FAST_MS ms and $SLOW_MS ms"
} >"$OUT/meta.txt"

# --- measurements: round after round, every proxy of a scenario in turn -----------
python3 "$HERE/parse_wrk.py" --header >"$OUT/results.csv"
for round in $(seq "$ROUNDS"); do
    for entry in "${plan[@]}"; do
        read -r scenario proxy instance path want header <<<"$entry"
        [ -n "${ADDR[$instance]:-}" ] || continue
        url="http://${ADDR[$instance]}$path"
        extra=()
        [ "$header" = key ] && extra=(-H "$API_KEY_HEADER")
        [ "$header" = h2 ] && extra=(--http2-prior-knowledge)
        [ "$header" = grpc ] && extra=("${GRPC_CURL[@]}")
        check "$instance" "$url" "$want" "${extra[@]}"
        pidvar="PID_${instance//-/_}"
        raw="$OUT/raw/r$round-$scenario-$proxy.txt"
        echo "bench: round $round/$ROUNDS, $scenario, $proxy" >&2
        cpu0=$(python3 "$HERE/proc_cpu.py" "${!pidvar}")
        t0=$(date +%s.%N)
        if [ "$header" = h2 ] || [ "$header" = grpc ]; then
            grpc_args=()
            [ "$header" = grpc ] && grpc_args=(-d "$RUN/grpc-check.bin"
                -H "content-type: application/grpc" -H "te: trailers")
            "${LOAD_PIN[@]}" h2load -t"$WRK_THREADS" -c"$H2_CONNECTIONS" -m"$H2_STREAMS" \
                -D"$DURATION" --log-file="$raw.log" "${grpc_args[@]}" "$url" >"$raw" 2>&1 ||
                die "h2load failed; see $raw"
        else
            "${LOAD_PIN[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
                "${extra[@]}" "$url" >"$raw" 2>&1 || die "wrk failed; see $raw"
        fi
        t1=$(date +%s.%N)
        cpu1=$(python3 "$HERE/proc_cpu.py" "${!pidvar}")
        cpu_pct=$(awk -v a="$cpu0" -v b="$cpu1" -v s="$t0" -v e="$t1" \
            'BEGIN { printf "%.1f", 100 * (b - a) / (e - s) }')
        if [ "$header" = h2 ] || [ "$header" = grpc ]; then
            python3 "$HERE/parse_h2load.py" "$raw" "$raw.log" "$round" "$scenario" "$proxy" \
                "$cpu_pct" >>"$OUT/results.csv"
            rm -f "$raw.log"
        else
            python3 "$HERE/parse_wrk.py" "$raw" "$round" "$scenario" "$proxy" "$cpu_pct" \
                >>"$OUT/results.csv"
        fi
    done
done

# --- (g): single decisions against the same Redis, each algorithm --------------------
if has "$SCENARIOS" g_redis; then
    rm -f "$OUT/redis_store.csv"
    "${LOAD_PIN[@]}" cargo bench --bench redis_store -- --csv "$OUT/redis_store.csv" >&2 ||
        die "cargo bench --bench redis_store failed"
    while IFS=, read -r alg p50 p99 rate; do
        NOTES+=("(g) \`store: redis\` decisions, $alg, on one thread against a local redis-server: p50 $p50 ms, p99 $p99 ms, $rate decisions/s (\`cargo bench --bench redis_store\`)")
    done <"$OUT/redis_store.csv"
fi
for note in "${NOTES[@]}"; do echo "note=$note"; done >>"$OUT/meta.txt"

# --- report -----------------------------------------------------------------------
# Other work on the machine slows every proxy alike but lowers all numbers:
# the report says how busy the machine was.
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
python3 "$HERE/chart.py" "$OUT/results.csv" docs/bench.svg
python3 "$HERE/report.py" "$OUT/results.csv" "$OUT/meta.txt" BENCHMARKS.md docs/bench.svg
echo "bench: wrote BENCHMARKS.md, docs/bench.svg and $OUT/results.csv" >&2
