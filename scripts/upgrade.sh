#!/usr/bin/env bash
# Zero-downtime upgrade of a running, daemonized sluice: a new process (new
# binary, new config) takes the listening sockets over from the old one.
#
#   scripts/upgrade.sh [-c conf/gateway.yaml] [-b path/to/sluice] [-l LOGFILE] [-w]
#
#   -c FILE  the config the new process runs with (default conf/gateway.yaml)
#   -b BIN   the new sluice binary (default: `sluice` on PATH, else target/release/sluice)
#   -l FILE  append the new process's stdout/stderr to FILE (default: inherit
#            this script's; set `error_log:` in the config for a daemon's log)
#   -w       also wait until the old process has exited
#
# The dance, in the only order that cannot lose the sockets:
#   1. `sluice -t -c FILE`: an invalid config aborts here, the old process untouched;
#   2. start `sluice -u -d -c FILE`: it binds `upgrade_sock` and waits there (up
#      to ~6 s) for the old process's listening sockets;
#   3. once that socket exists, SIGQUIT the old pid (from `pid_file`): it sends
#      its sockets, keeps serving for Pingora's fixed 5 s (answering every
#      response with `Connection: close`), stops accepting, lets in-flight
#      requests finish for `grace_period_seconds`, then exits;
#   4. the new process daemonizes and writes its pid to `pid_file`.
# SIGQUIT is never sent before step 2 is ready: an old process that cannot hand
# its sockets over still shuts down, which would be an outage.
set -euo pipefail

conf=conf/gateway.yaml
bin=
log=
wait_old=false
while getopts "c:b:l:wh" opt; do
    case "$opt" in
        c) conf=$OPTARG ;;
        b) bin=$OPTARG ;;
        l) log=$OPTARG ;;
        w) wait_old=true ;;
        h) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "usage: $0 [-c conf/gateway.yaml] [-b path/to/sluice] [-l LOGFILE] [-w]" >&2; exit 2 ;;
    esac
done

die() { echo "upgrade: $*" >&2; exit 1; }
say() { echo "upgrade: $*"; }

if [[ -z $bin ]]; then
    if command -v sluice >/dev/null 2>&1; then
        bin=$(command -v sluice)
    else
        bin="$(dirname "$0")/../target/release/sluice"
    fi
fi
[[ -x $bin ]] || die "no executable sluice binary at $bin (use -b)"
[[ -r $conf ]] || die "cannot read config $conf"

# A top-level `key: value` of the YAML, quotes and trailing comment removed.
yaml_key() {
    awk -v key="$1" '
        $0 ~ "^" key ":" {
            sub("^" key ":[ \t]*", ""); sub("[ \t]+#.*$", ""); sub("[ \t]+$", "")
            gsub(/^["\x27]|["\x27]$/, ""); print; exit
        }' "$conf"
}
# Pingora's defaults when the keys are absent.
pid_file=$(yaml_key pid_file); pid_file=${pid_file:-/tmp/pingora.pid}
upgrade_sock=$(yaml_key upgrade_sock); upgrade_sock=${upgrade_sock:-/tmp/pingora_upgrade.sock}
admin=$(yaml_key admin)
grace=$(yaml_key grace_period_seconds); grace=${grace:-300}

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }
read_pid() { tr -dc '0-9' <"$pid_file" 2>/dev/null || true; }

# Polls `$1` (a shell command) every 0.1 s until it succeeds or `$2` seconds pass.
poll() {
    local cond=$1 limit=$2 i
    for ((i = 0; i < limit * 10; i++)); do
        if eval "$cond"; then return 0; fi
        sleep 0.1
    done
    return 1
}

[[ -e $pid_file ]] || die "no pid file $pid_file: is sluice running as a daemon (-d) with this config?"
old_pid=$(read_pid)
alive "$old_pid" || die "pid file $pid_file names pid '${old_pid}', which is not running; start sluice with: $bin -d -c $conf"
say "old process: pid $old_pid ($pid_file)"

# 1. Validate first: nothing has happened yet if this fails.
if ! "$bin" -t -c "$conf"; then
    die "config $conf is invalid; nothing changed, pid $old_pid still serves"
fi

# 2. Start the new process. A stale socket file from an aborted attempt would
#    make step 3 fire too early; nothing listens on it, so remove it.
if [[ -S $upgrade_sock ]]; then
    rm -f -- "$upgrade_sock"
fi
if [[ -n $log ]]; then
    "$bin" -u -d -c "$conf" >>"$log" 2>&1 &
else
    "$bin" -u -d -c "$conf" &
fi
launcher=$!
say "started $bin -u -d -c $conf (pid $launcher), waiting for it to listen on $upgrade_sock"
if ! poll '[[ -S $upgrade_sock ]] || ! alive $launcher' 5 || ! [[ -S $upgrade_sock ]]; then
    kill "$launcher" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
    die "the new process did not open $upgrade_sock; nothing changed, pid $old_pid still serves"
fi

# 3. Hand over.
kill -QUIT "$old_pid" || die "cannot signal pid $old_pid"
say "sent SIGQUIT to pid $old_pid: it hands its sockets over and drains"

# 4. The launcher exits once it holds the sockets and has daemonized.
poll '! alive $launcher' 15 || die "the new process (pid $launcher) did not take the sockets over within 15 s"
rc=0
wait "$launcher" || rc=$?
((rc == 0)) || die "the new process exited with status $rc; see its log (error_log:). The old pid $old_pid drains and exits: restart sluice now"

new_pid=
if ! poll 'new_pid=$(read_pid); [[ $new_pid != "$old_pid" ]] && alive $new_pid' 30; then
    die "no new live pid in $pid_file after 30 s (it holds '${new_pid}')"
fi
say "new process: pid $new_pid"

if [[ -n $admin ]]; then
    command -v curl >/dev/null 2>&1 || die "curl is needed to check http://$admin/healthz"
    poll 'curl -fs -o /dev/null "http://$admin/healthz"' 30 ||
        die "http://$admin/healthz did not answer within 30 s"
    say "http://$admin/healthz answers"
fi

if $wait_old; then
    # 5 s hand-over + the grace period + a margin for the runtimes to stop.
    limit=$((5 + grace + 15))
    say "waiting up to ${limit}s for pid $old_pid to finish its in-flight requests and exit"
    poll '! alive $old_pid' "$limit" || die "old pid $old_pid still runs after ${limit}s"
    say "old process $old_pid exited"
else
    say "old pid $old_pid stops accepting in 5 s and exits after grace_period_seconds ($grace s)"
fi
say "done"
