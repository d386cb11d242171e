#!/usr/bin/env bash
# Before/after for one change: two wsedge binaries and raw fastwebsockets as
# a common reference, measured in the same run (interleaved, server pinned
# to core 0, load to core 1), plus each wsedge's idle memory over ws and
# over wss, each on a freshly started server. Read the ratios, not the
# absolute figures. The records
# are kept in bench/results/runs/compare-*.json (git-ignored).
#
#   bench/compare.sh OLD_WSEDGE NEW_WSEDGE [SCENARIOS]
#
# ROUNDS=N (default 1) runs the scenarios N times over, each round against
# the three servers in turn, and ends with each server's mean per
# measurement and its ratio to raw's (`wsedge-bench means`): one round of a
# lone-message measurement moves by 10-30% here, the mean of several is
# what to read a before/after from.
#
# e.g. build the old commit into another target directory first:
#   git worktree add /tmp/old OLD_COMMIT && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release)
#   bench/compare.sh /tmp/old-target/release/wsedge target/release/wsedge
set -euo pipefail

old=$1 new=$2 scenarios=${3:-echo,fanout} rounds=${ROUNDS:-1}
repeated=$scenarios
for ((round = 1; round < rounds; round++)); do repeated+=",$scenarios"; done
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
root=$(dirname "$here")
bin=${CARGO_TARGET_DIR:-$root/target}/release
base=${BENCH_PORT_BASE:-29300}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

(cd "$root" && cargo build --release --quiet -p wsedge-bench --bins)
# The fan-out holds 10,000 connections per server and in the load generator.
raise_file_limit

# config PLAIN_PORT TLS_PORT
config() {
    printf '[server]\nplain = ["127.0.0.1:%s"]\nlisten = ["127.0.0.1:%s"]\n\n' "$1" "$2"
    printf '[server.tls]\nself_signed = ["localhost", "127.0.0.1"]\n\n'
    wsedge_channels
}
config $((base + 1)) $((base + 4)) >"$work/old.toml"
config $((base + 2)) $((base + 5)) >"$work/new.toml"

# wait_or_fail PORT: until something listens there (bounded).
wait_or_fail() {
    wait_port "$1" || { echo "nothing listens on $1" >&2; exit 1; }
}

taskset -c 0 "$old" run -c "$work/old.toml" 2>/dev/null & pids+=($!); old_pid=$!
taskset -c 0 "$new" run -c "$work/new.toml" 2>/dev/null & pids+=($!); new_pid=$!
taskset -c 0 "$bin/raw-fastwebsockets" --listen 127.0.0.1:$((base + 3)) 2>/dev/null & pids+=($!); raw_pid=$!
for port in $((base + 1)) $((base + 2)) $((base + 3)); do wait_or_fail "$port"; done
timeout $((600 * rounds)) taskset -c 1 "$bin/wsedge-bench" run --profile quick --scenarios "$repeated" \
    --target "old,$old_pid,ws://127.0.0.1:$((base + 1))" \
    --target "new,$new_pid,ws://127.0.0.1:$((base + 2))" \
    --target "raw,$raw_pid,ws://127.0.0.1:$((base + 3))" --out "$work/load.json"
kill "${pids[@]}"; wait 2>/dev/null || true; pids=()

for which in old new; do
    binary=$old port=$((base + 1)) tls_port=$((base + 4))
    [[ $which == new ]] && binary=$new port=$((base + 2)) tls_port=$((base + 5))
    for url in "ws://127.0.0.1:$port" "wss://127.0.0.1:$tls_port"; do
        scheme=${url%%:*}
        taskset -c 0 "$binary" run -c "$work/$which.toml" 2>/dev/null & pids=($!)
        wait_or_fail "$port"
        timeout 300 taskset -c 1 "$bin/wsedge-bench" run --profile quick --scenarios capacity \
            --target "$which,${pids[0]},$url" --out "$work/capacity-$which-$scheme.json"
        kill "${pids[@]}"; wait 2>/dev/null || true; pids=()
    done
done
# Keep the records (git-ignored) for a table: the console lines above are
# the summary.
mkdir -p "$here/results/runs"
for file in "$work"/load.json "$work"/capacity-*.json; do
    cp "$file" "$here/results/runs/compare-$(basename "$file")"
done
echo "records: $here/results/runs/compare-{load,capacity-{old,new}-{ws,wss}}.json"
if ((rounds > 1)); then
    "$bin/wsedge-bench" means --reference raw "$work/load.json"
fi
