#!/usr/bin/env bash
# Benchmarks wsedge against two peers, raw fastwebsockets and Node ws, on
# loopback, measures permessage-deflate on realistic JSON (wsedge alone,
# compression on and off), and writes bench/results/latest.{json,md,svg}.
# Two more modes put wsedge alone under long or reload-heavy load.
#
#   bench/run.sh quick           # ~3 minutes: short runs, 5,000 idle connections
#   bench/run.sh full            # ~20 minutes: longer runs, 19,900 idle connections
#   bench/run.sh soak [MINUTES]  # default 30: churn, traffic, slow consumers and a
#                                # reload every 10 s; bench/results/soak.{json,md}
#   bench/run.sh reload          # 10,000 connections through 1,000 reloads;
#                                # bench/results/reload.{json,md}
#   bench/run.sh auth            # ~1.5 minutes: handshakes with HS256, RS256, ES256,
#                                # EdDSA tokens and without; bench/results/auth.{json,md}
#   bench/run.sh hub             # ~2 minutes: the rooms load over the hub channel
#                                # next to the room channel; bench/results/hub.{json,md}
#   bench/run.sh presence        # ~4 minutes: a room of 100,000 members on 6 nodes
#                                # sharing a redis-server, its presence count and
#                                # list; bench/results/presence.{json,md}
#   bench/run.sh cluster         # ~1.5 minutes: two nodes on one redis-server
#                                # against one node, wsedge and Socket.IO's
#                                # Redis adapter; bench/results/cluster.{json,md}
#
# Environment: CARGO_TARGET_DIR (where to build), BENCH_PORT_BASE (servers
# listen on 127.0.0.1, ports BASE+1 to BASE+4, wsedge's admin API on BASE+5,
# soak and reload also BASE+6 and BASE+7; default 29180, below the kernel's
# ephemeral port range so that no client socket of another program holds
# one), WSEDGE_BIN (a wsedge binary to measure instead of building the work
# tree, e.g. one built from a clean checkout of a commit) and WSEDGE_LABEL
# (how the report names it). The cluster mode uses ports BASE+1 to BASE+14
# (see run_cluster).
#
# Each server runs alone, pinned to core 0; the load generator is pinned to
# core 1. Memory is measured on a freshly started server. Builds go to
# $CARGO_TARGET_DIR (default: target/ in the repository).
set -euo pipefail

usage() {
    echo "usage: $0 quick|full|soak [MINUTES]|reload|auth|hub|presence|cluster" >&2
    exit 2
}
profile=${1:-quick}
minutes=
case "$profile" in
quick) per_run_limit=300 ;;
full) per_run_limit=1800 ;;
soak)
    minutes=${2:-30}
    [[ "$minutes" =~ ^[0-9]+$ ]] && ((minutes >= 2 && minutes <= 240)) || {
        echo "error: MINUTES must be a whole number from 2 to 240" >&2
        usage
    }
    # The run, then the cool-down, the build-up of the held connections
    # and the report.
    per_run_limit=$((minutes * 60 + 300))
    ;;
reload) per_run_limit=900 ;;
auth) per_run_limit=300 ;;
hub) per_run_limit=600 ;;
presence) per_run_limit=900 ;;
cluster) per_run_limit=600 ;;
*) usage ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
root=$(dirname "$here")
target_dir=${CARGO_TARGET_DIR:-$root/target}
bin=$target_dir/release
wsedge_bin=${WSEDGE_BIN:-$bin/wsedge}
results=$here/results
runs=$results/runs
# Ports: BENCH_PORT_BASE+1 .. +7 on 127.0.0.1.
base=${BENCH_PORT_BASE:-29180}
wsedge_port=$((base + 1))
wsedge_tls_port=$((base + 2))
raw_port=$((base + 3))
node_port=$((base + 4))
wsedge_admin_port=$((base + 5))
# Listeners only the reload configurations have (see reload_configs).
reload_ports="$((base + 6)) $((base + 7))"
started_at=$(date +%s)

work=$(mktemp -d)
# Servers this script started and has not stopped yet.
declare -A pids=()
stop_all() {
    local name
    for name in "${!pids[@]}"; do kill -TERM "${pids[$name]}" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for name in "${!pids[@]}"; do kill -0 "${pids[$name]}" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for name in "${!pids[@]}"; do
        kill -KILL "${pids[$name]}" 2>/dev/null || true
        wait "${pids[$name]}" 2>/dev/null || true
        unset "pids[$name]"
    done
}
cleanup() {
    local status=$?
    stop_all
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tools="cargo taskset"
case "$profile" in
quick | full) tools="$tools node npm" ;;
hub) ;;
presence) tools="$tools openssl redis-server" ;;
cluster) tools="$tools node npm redis-server" ;;
*) tools="$tools openssl" ;;
esac
for tool in $tools; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is required" >&2
        exit 1
    }
done
if (($(nproc) < 2)); then
    echo "error: needs 2 cores (server on core 0, load on core 1)" >&2
    exit 1
fi
# Each process may hold up to ~20,000 sockets (capacity scenario).
raise_file_limit
for port in $wsedge_port $wsedge_tls_port $raw_port $node_port $wsedge_admin_port $reload_ports; do
    if (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "error: 127.0.0.1:$port is already in use" >&2
        exit 1
    fi
done

load=$(cut -d' ' -f1 /proc/loadavg)
if awk "BEGIN { exit !($load > 0.5) }"; then
    echo "warning: load average $load before starting: other work shares these cores and will skew results" >&2
fi

echo "== building release binaries ($target_dir)"
# Separately, so that wsedge is built with its own features, as it ships.
if [[ -z "${WSEDGE_BIN:-}" ]]; then (cd "$root" && cargo build --release --quiet -p wsedge); fi
(cd "$root" && cargo build --release --quiet -p wsedge-bench --bins)

# machine: one line about what measured, for the reports.
machine() {
    local cpu commit
    cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
    if [[ -n "${WSEDGE_BIN:-}" ]]; then
        commit=${WSEDGE_LABEL:-"binary $WSEDGE_BIN"}
    else
        commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
        if [[ -n "$(git -C "$root" status --porcelain -- src Cargo.toml 2>/dev/null)" ]]; then commit="$commit with uncommitted changes"; fi
    fi
    local node=""
    command -v node >/dev/null && node=", Node $(node --version)"
    echo "$(nproc) cores, $cpu, Linux $(uname -r), $(rustc --version | cut -d' ' -f1-2)$node, wsedge $commit"
}

mkdir -p "$runs"

# start NAME PORT COMMAND...: starts a server on core 0 (or on $CORE) and
# waits for its port.
start() {
    local name=$1 port=$2
    shift 2
    taskset -c "${CORE:-0}" "$@" >>"$runs/$name.log" 2>&1 &
    pids[$name]=$!
    wait_port "$port" "${pids[$name]}" && return 0
    echo "error: $name did not start; see $runs/$name.log" >&2
    exit 1
}

# run_cluster: wsedge and Socket.IO, each as two nodes sharing one
# redis-server and as one node alone, all on core 0 (a setup's nodes and
# Redis share that core, so two nodes have the CPU of one), the load
# generator on core 1; and two more wsedge nodes, A on core 0 and B on
# core 1 beside the load generator, for latency in the shape of a
# deployment (a core each). Ports: wsedge nodes A, B and alone
# BASE+1..+3, their admin listeners (readiness) BASE+7, BASE+8; Socket.IO
# A, B and alone BASE+4..+6; redis-server BASE+10 (no persistence); the
# own-core wsedge nodes BASE+11, BASE+12, admin BASE+13, BASE+14.
run_cluster() {
    local wa=$((base + 1)) wb=$((base + 2)) w1=$((base + 3))
    local sa=$((base + 4)) sb=$((base + 5)) s1=$((base + 6))
    local admin_a=$((base + 7)) admin_b=$((base + 8)) redis_port=$((base + 10))
    local oa=$((base + 11)) ob=$((base + 12)) admin_oa=$((base + 13)) admin_ob=$((base + 14))
    local port node
    for port in $wa $wb $w1 $sa $sb $s1 $admin_a $admin_b $redis_port $oa $ob $admin_oa $admin_ob; do
        if (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
            echo "error: 127.0.0.1:$port is already in use" >&2
            exit 1
        fi
    done
    echo "== installing the Socket.IO peer's packages"
    (
        cd "$here/peers/socketio"
        if [[ ! -d node_modules/socket.io || package-lock.json -nt node_modules/.package-lock.json ]]; then
            npm ci --no-audit --no-fund --loglevel=error
        fi
    )
    rm -f "$runs"/cluster-*.log
    start cluster-redis $redis_port redis-server --bind 127.0.0.1 --port $redis_port \
        --save '' --appendonly no --protected-mode yes --dir "$work"
    local redis_url=redis://127.0.0.1:$redis_port
    for node in a b 1 oa ob; do
        local listen=$w1 admin="" cluster="" core=0
        case $node in
        a) listen=$wa admin=$admin_a ;;
        b) listen=$wb admin=$admin_b ;;
        oa) listen=$oa admin=$admin_oa ;;
        ob) listen=$ob admin=$admin_ob core=1 ;;
        esac
        {
            printf '[server]\nplain = ["127.0.0.1:%s"]\n\n' "$listen"
            wsedge_channels
            if [[ -n "$admin" ]]; then
                printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$admin"
                printf '\n[cluster]\nurl = "%s"\nnode_name = "bench-%s"\n' "$redis_url" "$node"
            fi
        } >"$work/cluster-$node.toml"
        "$wsedge_bin" check -c "$work/cluster-$node.toml" >/dev/null
        CORE=$core start "cluster-wsedge-$node" "$listen" "$wsedge_bin" run -c "$work/cluster-$node.toml"
    done
    for admin in $admin_a $admin_b $admin_oa $admin_ob; do
        wait_ready "$admin" || {
            echo "error: wsedge on admin port $admin never became ready (cluster link); see $runs/cluster-wsedge-*.log" >&2
            exit 1
        }
    done
    local sio=$here/peers/socketio/server.js
    start cluster-socketio-a $sa node "$sio" --listen 127.0.0.1:$sa --redis "$redis_url"
    start cluster-socketio-b $sb node "$sio" --listen 127.0.0.1:$sb --redis "$redis_url"
    start cluster-socketio-1 $s1 node "$sio" --listen 127.0.0.1:$s1
    local versions
    versions=$(cd "$here/peers/socketio" && node -e '
        const v = (p) => require(p + "/package.json").version;
        console.log(`socket.io ${v("socket.io")}, @socket.io/redis-adapter ${v("@socket.io/redis-adapter")}, redis (node-redis) ${v("redis")}`)')
    local notes="every server (the wsedge nodes, the Socket.IO nodes, redis-server $(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-), no persistence) on core 0 (taskset -c 0), the load generator on core 1 (taskset -c 1), except node B of wsedge-2-nodes-own-cores, on core 1 beside the load generator; $versions, Node $(node --version)."
    echo "== cluster: two nodes on one Redis against one node, wsedge and Socket.IO"
    timeout "$per_run_limit" taskset -c 1 "$bin/wsedge-bench" cluster \
        --redis-pid "${pids[cluster-redis]}" \
        --link-metrics "wsedge-a,127.0.0.1:$admin_a" --link-metrics "wsedge-b,127.0.0.1:$admin_b" \
        --setup "wsedge-2-nodes,websocket,${pids[cluster-wsedge-a]}@ws://127.0.0.1:$wa,${pids[cluster-wsedge-b]}@ws://127.0.0.1:$wb" \
        --setup "wsedge-1-node,websocket,${pids[cluster-wsedge-1]}@ws://127.0.0.1:$w1" \
        --setup "wsedge-2-nodes-own-cores,websocket,${pids[cluster-wsedge-oa]}@ws://127.0.0.1:$oa,${pids[cluster-wsedge-ob]}@ws://127.0.0.1:$ob" \
        --setup "socket.io-2-nodes,socket.io,${pids[cluster-socketio-a]}@ws://127.0.0.1:$sa,${pids[cluster-socketio-b]}@ws://127.0.0.1:$sb" \
        --setup "socket.io-1-node,socket.io,${pids[cluster-socketio-1]}@ws://127.0.0.1:$s1" \
        --out-dir "$results" --machine "$(machine)" --setup-notes "$notes" \
        --command "bench/run.sh cluster" >/dev/null
}

if [[ "$profile" == cluster ]]; then
    run_cluster
    stop_all
    echo "== done in $(($(date +%s) - started_at))s: $results/cluster.md, cluster.json"
    exit 0
fi

if [[ "$profile" == soak || "$profile" == reload ]]; then
    # wsedge alone, started on configuration A and reloaded between A and B.
    reload_configs "$work" "$base"
    for which in a b; do "$wsedge_bin" check -c "$work/$which.toml" >/dev/null; done
    cp "$work/a.toml" "$work/wsedge.toml"
    rm -f "$runs/$profile-wsedge.log"
    start "$profile-wsedge" $wsedge_port "$wsedge_bin" run -c "$work/wsedge.toml"
    what=(--minutes "$minutes")
    [[ "$profile" == reload ]] && what=(--reloads 1000 --connections 10000)
    echo "== $profile: wsedge on 127.0.0.1:$wsedge_port, log in $runs/$profile-wsedge.log"
    timeout "$per_run_limit" taskset -c 1 "$bin/wsedge-bench" "$profile" \
        --target "wsedge,${pids[$profile-wsedge]},ws://127.0.0.1:$wsedge_port" \
        --metrics "127.0.0.1:$wsedge_admin_port" --config "$work/wsedge.toml" \
        --alternate "$work/a.toml" --alternate "$work/b.toml" "${what[@]}" \
        --out-dir "$results" --machine "$(machine)" --command "bench/run.sh $profile${minutes:+ $minutes}"
    stop_all
    echo "== done in $(($(date +%s) - started_at))s: $results/$profile.md, $profile.json"
    exit 0
fi

if [[ "$profile" == auth ]]; then
    # wsedge alone: its unauthenticated and authenticated handshakes in the
    # same run, over ws (five rounds) and wss (one).
    auth_config "$work" "$base"
    "$wsedge_bin" check -c "$work/auth.toml" >/dev/null
    rm -f "$runs/auth-wsedge.log"
    start auth-wsedge $wsedge_port "$wsedge_bin" run -c "$work/auth.toml"
    echo "== auth: wsedge on 127.0.0.1:$wsedge_port, log in $runs/auth-wsedge.log"
    timeout "$per_run_limit" taskset -c 1 "$bin/wsedge-bench" auth \
        --target "wsedge,${pids[auth-wsedge]},ws://127.0.0.1:$wsedge_port" \
        --tls "wss://127.0.0.1:$wsedge_tls_port" --metrics "127.0.0.1:$wsedge_admin_port" \
        --keys "$work" --out-dir "$results" --machine "$(machine)" --command "bench/run.sh auth"
    stop_all
    echo "== done in $(($(date +%s) - started_at))s: $results/auth.md, auth.json"
    exit 0
fi

if [[ "$profile" == hub ]]; then
    # wsedge alone: the same rooms load over /chat/{room} and over /hub,
    # back to back in one load generator run (full profile: 10 s each).
    {
        printf '[server]\nlisten = []\nplain = ["127.0.0.1:%s"]\n\n' "$wsedge_port"
        wsedge_channels
    } >"$work/wsedge.toml"
    "$wsedge_bin" check -c "$work/wsedge.toml" >/dev/null
    rm -f "$runs/hub-wsedge.log"
    start hub-wsedge $wsedge_port "$wsedge_bin" run -c "$work/wsedge.toml"
    echo "== hub: wsedge on 127.0.0.1:$wsedge_port, log in $runs/hub-wsedge.log"
    timeout "$per_run_limit" taskset -c 1 "$bin/wsedge-bench" run --profile full \
        --scenarios hub-rooms --out "$runs/hub.json" \
        --target "wsedge,${pids[hub-wsedge]},ws://127.0.0.1:$wsedge_port"
    stop_all
    "$bin/wsedge-bench" hub-report --out-dir "$results" --machine "$(machine)" \
        --command "bench/run.sh hub" "$runs/hub.json" >/dev/null
    echo "== done in $(($(date +%s) - started_at))s: $results/hub.md, hub.json"
    exit 0
fi

if [[ "$profile" == presence ]]; then
    # One room of 100,000 members, each its own user, spread over 6 nodes
    # (a process may open 20,000 files here) that share a redis-server,
    # each node with its own holder process; then the presence count, a
    # page and the whole list from one node's admin API; then the same
    # questions to one node without [cluster] holding one node's share.
    # Ports: redis BASE+8, node i's WebSocket BASE+10+i, admin BASE+20+i.
    nodes=6 members=100000 room=/chat/big
    redis_port=$((base + 8))
    for port in $redis_port $(seq $((base + 10)) $((base + 16))) $(seq $((base + 20)) $((base + 26))); do
        if (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
            echo "error: 127.0.0.1:$port is already in use" >&2
            exit 1
        fi
    done
    openssl rand -hex 32 >"$work/jwt.secret"
    openssl rand -hex 16 >"$work/admin.token"
    chmod 600 "$work/jwt.secret" "$work/admin.token"
    # node_config NAME INDEX [CLUSTER]: a node holding the room, each member
    # identified by an HS256 token in the query string.
    node_config() {
        cat <<TOML
[server]
listen = []
plain = ["127.0.0.1:$((base + 10 + $2))"]

[limits]
max_connections = 1000000
max_connections_per_ip = 1000000
handshake_rate = { per_second = 1000000000, burst = 1000000000 }
message_rate = { per_second = 1000000000, burst = 1000000000 }
idle_timeout = "5m"

[admin]
listen = "127.0.0.1:$((base + 20 + $2))"
token_file = "admin.token"

[auth]
algorithms = ["HS256"]
secret_file = "jwt.secret"
sources = ["query"]
absent_grants = "allow_all"

[[channel]]
name = "chat"
path = "/chat/{room}"
kind = "room"
max_members = 100000
TOML
        if [[ -n "${3:-}" ]]; then
            printf '\n[cluster]\nurl = "redis://127.0.0.1:%s"\nnode_name = "%s"\n' "$redis_port" "$1"
        fi
    }
    # hold NAME INDEX COUNT FIRST: members u{FIRST}.. on node INDEX, from core 1.
    hold() {
        taskset -c 1 "$bin/wsedge-bench" presence-hold --target "ws://127.0.0.1:$((base + 10 + $2))" \
            --path "$room" --connections "$3" --first-user "$4" --secret-file "$work/jwt.secret" \
            --hold-seconds "$per_run_limit" >"$work/$1.out" 2>"$runs/$1.log" &
        pids[$1]=$!
    }
    # wait_holders NAME...: until each holder printed its line (or died).
    wait_holders() {
        local name
        for name in "$@"; do
            while [[ ! -s "$work/$name.out" ]]; do
                kill -0 "${pids[$name]}" 2>/dev/null || {
                    echo "error: $name stopped; see $runs/$name.log" >&2
                    exit 1
                }
                sleep 0.5
            done
            echo "   $name: $(cat "$work/$name.out")"
        done
    }
    query() {
        timeout 300 taskset -c 1 "$bin/wsedge-bench" presence-query --admin "127.0.0.1:$((base + 20 + $1))" \
            --token-file "$work/admin.token" --path "/presence/chat/${room#/chat/}" \
            --pid "${pids[$2]}" --users "$3" --scope "$4" --label "$5" ${6:+--redis-pid "$6"} \
            --out "$runs/presence.json"
    }
    rm -f "$runs/presence.json" "$runs"/presence-*.log
    taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        >"$runs/presence-redis.log" 2>&1 &
    pids[presence-redis]=$!
    wait_port "$redis_port" "${pids[presence-redis]}" || {
        echo "error: redis-server did not start; see $runs/presence-redis.log" >&2
        exit 1
    }
    share=$(((members + nodes - 1) / nodes))
    holders=()
    echo "== presence: $members members of $room on $nodes nodes sharing redis on 127.0.0.1:$redis_port"
    for i in $(seq 0 $((nodes - 1))); do
        node_config "node-$i" "$i" cluster >"$work/node-$i.toml"
        "$wsedge_bin" check -c "$work/node-$i.toml" >/dev/null
        start "presence-node-$i" $((base + 10 + i)) "$wsedge_bin" run -c "$work/node-$i.toml"
        count=$((members - i * share < share ? members - i * share : share))
        hold "presence-hold-$i" "$i" "$count" $((i * share))
        holders+=("presence-hold-$i")
    done
    wait_holders "${holders[@]}"
    notes=()
    for name in "${holders[@]}"; do notes+=(--note "$name: $(cat "$work/$name.out")"); done
    query 0 presence-node-0 "$members" cluster "$nodes nodes (cluster)" "${pids[presence-redis]}"
    stop_all
    echo "== presence: one node without [cluster], $share members"
    node_config node-alone 6 >"$work/node-alone.toml"
    start presence-node-alone $((base + 16)) "$wsedge_bin" run -c "$work/node-alone.toml"
    hold presence-hold-alone 6 "$share" 0
    wait_holders presence-hold-alone
    notes+=(--note "presence-hold-alone: $(cat "$work/presence-hold-alone.out")")
    query 6 presence-node-alone "$share" node "1 node (no cluster)"
    stop_all
    "$bin/wsedge-bench" presence-report --out-dir "$results" --machine "$(machine)" \
        --command "bench/run.sh presence" "${notes[@]}" "$runs/presence.json" >/dev/null
    echo "== done in $(($(date +%s) - started_at))s: $results/presence.md, presence.json"
    exit 0
fi

echo "== installing the Node peer's packages"
(
    cd "$here/peers/node"
    if [[ ! -d node_modules/ws || package-lock.json -nt node_modules/.package-lock.json ]]; then
        npm ci --no-audit --no-fund --loglevel=error
    fi
)

rm -f "$runs"/*.json "$runs"/*.log

{
    cat <<EOF
[server]
listen = ["127.0.0.1:$wsedge_tls_port"]
plain = ["127.0.0.1:$wsedge_port"]

[server.tls]
self_signed = ["localhost", "127.0.0.1"]

EOF
    wsedge_channels
    cat <<EOF

# The compression scenario: /echo (dedicated) and /news (shared) compress
# with the defaults of [compression]; these two are the same channels with
# compression off, for the side-by-side comparison.
[[channel]]
name = "echo-uncompressed"
path = "/echo-uncompressed"
kind = "echo"
[channel.compression]
enabled = false

[[channel]]
name = "news-uncompressed"
path = "/news-uncompressed"
kind = "broadcast"
publish = "clients"
[channel.compression]
enabled = false

# /metrics: the compression scenario reads the compression byte counters.
[admin]
listen = "127.0.0.1:$wsedge_admin_port"
EOF
} >"$work/wsedge.toml"

"$wsedge_bin" check -c "$work/wsedge.toml" >/dev/null

start_wsedge() { start wsedge $wsedge_port "$wsedge_bin" run -c "$work/wsedge.toml"; }
start_raw() { start raw-fastwebsockets $raw_port "$bin/raw-fastwebsockets" --listen 127.0.0.1:$raw_port; }
# start_node [--deflate]
start_node() { start node-ws $node_port node "$here/peers/node/server.js" --listen 127.0.0.1:$node_port "$@"; }

# load OUT SCENARIOS NAME,URL...: runs the load generator on core 1 against
# the named running servers, interleaving them measurement by measurement.
load() {
    local out=$1 scenarios=$2 target name
    shift 2
    local targets=()
    for target in "$@"; do
        name=${target%%,*}
        targets+=(--target "$name,${pids[$name]},${target#*,}")
    done
    timeout "$per_run_limit" taskset -c 1 "$bin/wsedge-bench" run --profile "$profile" \
        --scenarios "$scenarios" --out "$runs/$out.json" "${targets[@]}" \
        --metrics "wsedge,127.0.0.1:$wsedge_admin_port"
}

wsedge_ws=wsedge,ws://127.0.0.1:$wsedge_port
wsedge_wss=wsedge,wss://127.0.0.1:$wsedge_tls_port
raw_ws=raw-fastwebsockets,ws://127.0.0.1:$raw_port
node_ws=node-ws,ws://127.0.0.1:$node_port

echo "== memory: idle connections, each on a freshly started server"
start_wsedge
load capacity-wsedge-ws capacity "$wsedge_ws"
stop_all
start_wsedge
load capacity-wsedge-wss capacity "$wsedge_wss"
stop_all
start_raw
load capacity-raw capacity "$raw_ws"
stop_all
start_node
load capacity-node capacity "$node_ws"
stop_all
echo "== memory with permessage-deflate: idle connections offering it on /echo and /news"
# Node's ws with permessage-deflate on is the peer here (raw fastwebsockets
# has no permessage-deflate).
for channel in echo news; do
    start_wsedge
    load "capacity-deflate-$channel-wsedge" "capacity-deflate-$channel" "$wsedge_ws"
    stop_all
    start_node --deflate
    load "capacity-deflate-$channel-node" "capacity-deflate-$channel" "$node_ws"
    stop_all
done

echo "== load: every measurement against the three servers in turn"
start_wsedge
start_raw
start_node
load main echo,fanout,rooms,handshakes,burst "$wsedge_ws" "$raw_ws" "$node_ws"
load handshakes-wss handshakes "$wsedge_wss"
echo "== compression: permessage-deflate on and off, realistic JSON (wsedge only)"
load compression compression "$wsedge_ws"
stop_all

wall=$(($(date +%s) - started_at))
"$bin/wsedge-bench" report --out-dir "$results" --machine "$(machine)" \
    --command "bench/run.sh $profile" --wall-seconds "$wall" "$runs"/main.json "$runs"/capacity-*.json "$runs"/handshakes-wss.json \
    "$runs"/compression.json >/dev/null
echo "== done in ${wall}s: $results/latest.md, latest.json, latest.svg"
