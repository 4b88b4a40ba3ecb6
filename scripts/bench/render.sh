# Sourced by scripts/bench.sh and scripts/instructions.sh (after they define
# `die`): fills the @KEY@ placeholders of the config templates in this folder.

# render TEMPLATE OUT KEY=VALUE...: replaces every @KEY@ in TEMPLATE.
render() {
    local template=$1 out=$2 kv args=()
    shift 2
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$template" >"$out"
    if grep -q '@[A-Z0-9_]*@' "$out"; then die "unfilled placeholder in $out"; fi
}
