#!/usr/bin/env bash
# Builds sluice, starts three demo backends and the gateway on conf/gateway.yaml.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
sluice_setup

cargo build --release --bins
BIN=${CARGO_TARGET_DIR:-target}/release

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for port in 9001 9002 9003; do
    "$BIN/sluice-echo" "127.0.0.1:$port" "echo-$port" &
    pids+=($!)
done

"$BIN/sluice" -t -c conf/gateway.yaml
"$BIN/sluice" -c conf/gateway.yaml &
gw=$!
pids+=($gw)

# Wait (bounded) until the admin listener answers.
for _ in $(seq 1 100); do
    curl -fs http://127.0.0.1:9901/healthz >/dev/null 2>&1 && break
    kill -0 "$gw" 2>/dev/null || { echo "sluice exited; see its log above" >&2; exit 1; }
    sleep 0.1
done

cat <<'TRY'

sluice is listening on http://127.0.0.1:8080 (admin on 127.0.0.1:9901). Try:

  curl -i http://127.0.0.1:8080/api/hello                      # round robin 1:3, prefix stripped
  curl -i -H 'x-user-id: 42' http://127.0.0.1:8080/sticky/x    # consistent hash on a header
  curl -i http://127.0.0.1:8080/anything                       # default route
  curl -s http://127.0.0.1:9901/status                         # routes, backends, health, limits
  open http://127.0.0.1:9901/ in a browser                     # the live dashboard
  for i in $(seq 200); do curl -s -o /dev/null -w '%{http_code} ' http://127.0.0.1:8080/api/x; done   # see 429s

Ctrl-C stops the gateway and the backends.
TRY
wait "$gw"
