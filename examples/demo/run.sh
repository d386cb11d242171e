#!/usr/bin/env bash
# The demo in one command: wsedge serving config.example.toml, the demo page
# on http://127.0.0.1:8000/, and a ticker that publishes a line to the
# broadcast channel /news every 2 s through the admin API. Ctrl-C stops all.
#
#   examples/demo/run.sh                       # builds the release binary if needed
#   WSEDGE=/usr/bin/wsedge examples/demo/run.sh  # or runs this one (the Debian package's)
#
# The configuration is config.example.toml as it is, plus the [admin] table
# its comments describe (127.0.0.1:9090, a fresh random token), written to a
# temporary directory. Needs python3 (the static file server) and curl.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

HTTP=127.0.0.1:${DEMO_HTTP_PORT:-8000}
ADMIN=127.0.0.1:9090
# Seconds between ticker lines.
TICK=2
# How long wsedge may take to answer /readyz after starting.
START_TIMEOUT=30

for tool in python3 curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is needed" >&2; exit 1; }
done
if [ -n "${WSEDGE:-}" ]; then
    wsedge=$WSEDGE
else
    echo "+ cargo build --release --bin wsedge"
    cargo build --release --quiet --bin wsedge
    wsedge=target/release/wsedge
fi

dir=$(mktemp -d)
pids=()
cleanup() {
    if [ ${#pids[@]} -gt 0 ]; then
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

umask 077
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/admin.token"
token=$(cat "$dir/admin.token")
cat config.example.toml - >"$dir/wsedge.toml" <<EOF

# Added by examples/demo/run.sh: the admin listener, for the ticker.
[admin]
listen = "$ADMIN"
token_file = "admin.token"
EOF

"$wsedge" run -c "$dir/wsedge.toml" &
pids+=($!)
for ((waited = 0; ; waited++)); do
    if curl -sf "http://$ADMIN/readyz" >/dev/null 2>&1; then break; fi
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        echo "error: wsedge exited (is another server on 8080, 8443 or 9090?)" >&2
        exit 1
    fi
    if [ "$waited" -ge $((START_TIMEOUT * 10)) ]; then
        echo "error: wsedge is not ready after ${START_TIMEOUT}s" >&2
        exit 1
    fi
    sleep 0.1
done

python3 -m http.server "${HTTP##*:}" --bind "${HTTP%:*}" --directory examples/demo \
    >"$dir/http.log" 2>&1 &
pids+=($!)

cat <<EOF

  Demo page:   http://$HTTP/              (open it in two windows and chat)
               http://$HTTP/?room=dev&name=bob   (another room, another name)
  WebSockets:  ws://127.0.0.1:8080/chat/{room}  and  ws://127.0.0.1:8080/news
  Admin API:   http://$ADMIN/  token: $token
  Publish:     curl -H "Authorization: Bearer $token" -H 'Content-Type: text/plain' \\
                    --data 'hello' http://$ADMIN/publish/news

  Ticker: a line to /news every ${TICK}s. Ctrl-C stops everything.

EOF

# A random walk of three made-up quotes, one line per tick.
symbols=(ACME GLOBX INITECH)
prices=(10000 4200 7350) # cents
for ((tick = 0; ; tick++)); do
    sleep "$TICK"
    i=$((tick % ${#symbols[@]}))
    delta=$((RANDOM % 61 - 30))
    prices[i]=$((prices[i] + delta))
    line=$(awk -v t="$(date +%T)" -v s="${symbols[i]}" -v p="${prices[i]}" -v d="$delta" \
        'BEGIN { printf "%s  %-8s %8.2f  %s %.2f%%", t, s, p / 100, (d >= 0 ? "▲" : "▼"), (d < 0 ? -d : d) * 100 / p }')
    if ! curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: text/plain; charset=utf-8' \
        --data "$line" "http://$ADMIN/publish/news" >/dev/null; then
        echo "warning: publishing to /news failed" >&2
    fi
done
