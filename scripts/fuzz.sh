#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the stable toolchain (cargo-fuzz
# with `--sanitizer none`, which needs no `-Z` flag).
#
#   scripts/fuzz.sh TARGET SECONDS   fuzz TARGET for SECONDS from its committed seeds
#   scripts/fuzz.sh TARGET merge     add to fuzz/corpus/TARGET the smallest inputs of
#                                    past sessions that reach code the seeds do not,
#                                    up to SLUICE_FUZZ_MERGE_FILES (100) files and
#                                    SLUICE_FUZZ_MERGE_BYTES (32 KiB)
#   scripts/fuzz.sh list             the targets
#
# Targets are the functions of src/fuzz_targets/ (config, router, keys,
# forwarded, limiter). A session writes the inputs it finds to fuzz/work/TARGET
# and each crash to fuzz/artifacts/TARGET/ (neither is committed); its log,
# with libFuzzer's final stats, goes to fuzz/work/TARGET.log. A crash is a bug:
# fix it, then copy the crashing input into fuzz/corpus/TARGET/ so the replay
# test (tests/fuzz_corpora.rs, run by CI) keeps it fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
SLUICE_WITH_FUZZ=1 source scripts/setup.sh
sluice_setup

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^sluice-fuzz$')
usage() {
    echo "usage: scripts/fuzz.sh TARGET SECONDS | TARGET merge | list" >&2
    echo "targets: $(echo $targets)" >&2
    exit 2
}
[ $# -ge 1 ] || usage
if [ "$1" = list ]; then
    echo "$targets"
    exit 0
fi
[ $# -eq 2 ] || usage
target=$1
echo "$targets" | grep -qx "$target" || usage

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version '^0.13'
fi

seeds=fuzz/corpus/$target
work=fuzz/work/$target
mkdir -p "$work" "fuzz/artifacts/$target"
# The first directory receives what libFuzzer finds; the seeds are read only.
run() { cargo fuzz run --sanitizer none "$target" "$@"; }

if [ "$2" = merge ]; then
    # libFuzzer's set-cover merge picks few inputs covering every edge the
    # seeds and the sessions reached; of those, the new ones join the seeds,
    # smallest first, within a budget of files and bytes, so the committed
    # corpus stays small.
    budget=${SLUICE_FUZZ_MERGE_BYTES:-32768}
    max_files=${SLUICE_FUZZ_MERGE_FILES:-100}
    minimal=$(mktemp -d)
    trap 'rm -rf "$minimal"' EXIT
    run "$minimal" "$seeds" "$work" -- -set_cover_merge=1 -use_counters=0 2>&1 | grep -E '^MERGE-OUTER: [0-9]+ new' || true
    known=$(cat "$seeds"/* /dev/null | wc -c)
    for f in "$seeds"/*; do sha1sum < "$f"; done | cut -d' ' -f1 | sort > "$minimal.seeds"
    added=0 used=0
    while read -r size file; do
        name=$(basename "$file")
        grep -qx "$name" "$minimal.seeds" && continue
        [ $((used + size)) -le "$budget" ] && [ "$added" -lt "$max_files" ] || break
        cp "$file" "$seeds/$name"
        added=$((added + 1)) used=$((used + size))
    done < <(find "$minimal" -type f -printf '%s %p\n' | sort -n)
    rm -f "$minimal.seeds"
    echo "fuzz: $seeds: $added inputs added ($used bytes; it held $known), $(ls "$seeds" | wc -l) files now"
    exit 0
fi

seconds=$2
case "$seconds" in '' | *[!0-9]*) usage ;; esac
log=fuzz/work/$target.log
# -timeout: an input running 10 s is a hang, reported like a crash.
# -rss_limit_mb: a target allocating past 2 GiB is a bug, not a machine to wait on.
set +e
run "$work" "$seeds" -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 | tee "$log" | grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::|^==|panicked|SUMMARY|^artifact_prefix|Test unit written' | tail -n 40
status=${PIPESTATUS[0]}
set -e
crashes=$(ls "fuzz/artifacts/$target" | wc -l)
echo "fuzz: $target: $(ls "$work" | wc -l) inputs in $work, $crashes files in fuzz/artifacts/$target, log $log"
exit "$status"
