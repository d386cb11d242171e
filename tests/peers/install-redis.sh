#!/usr/bin/env bash
# Installs Debian's redis-server and redis-cli (Redis 7 or later: sharded
# pub/sub) for tests/cluster_link.rs, only when they are missing, and makes
# sure no system Redis service is left running: the tests start their own
# servers on free ports and must never talk to a shared one on 6379.
# Idempotent; tests/peers/install.sh calls it.
set -euo pipefail

step() { echo "== redis: $*"; }

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then
        step "installing redis-server with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y redis-server
    else
        echo "NOTE: redis-server is missing and this is not root: run as root, or 'apt-get install redis-server'." >&2
        echo "      The cluster link tests are skipped locally and fail under CI." >&2
        exit 0
    fi
fi

# The package enables and starts a service on 6379 where systemd runs.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
    service redis-server stop >/dev/null 2>&1 || true
fi

version=$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
if [[ -z "$version" || "$version" -lt 7 ]]; then
    echo "redis-server $(redis-server --version) is too old: sharded pub/sub needs Redis 7" >&2
    exit 1
fi
step "$(redis-server --version)"
