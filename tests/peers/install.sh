#!/usr/bin/env bash
# Installs the third-party WebSocket peers that tests/deflate_peers.rs runs
# against the server: Python's `websockets` (in tests/peers/.venv), Node's
# `ws` and `playwright-core` (in tests/peers/node_modules) and Debian's
# headless Chromium. Idempotent: what is already there is kept, so a second
# run takes seconds. .ci/run calls it before `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

# Exact versions, so that every machine tests against the same peers.
WEBSOCKETS_VERSION=17.4

step() { echo "== peers: $*"; }

step "python websockets ${WEBSOCKETS_VERSION} in tests/peers/.venv"
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import sys, websockets; sys.exit(websockets.__version__ != '${WEBSOCKETS_VERSION}')" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "websockets==${WEBSOCKETS_VERSION}"
fi
.venv/bin/python -c "import websockets; print('websockets', websockets.__version__)"

step "node ws and playwright-core in tests/peers/node_modules"
npm install --no-audit --no-fund
node -e "for (const p of ['ws', 'playwright-core']) console.log(p, JSON.parse(require('fs').readFileSync('node_modules/' + p + '/package.json')).version)"

step "chromium"
if [[ ! -x /usr/bin/chromium ]]; then
    if [[ $(id -u) -eq 0 ]]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y chromium
    else
        echo "NOTE: /usr/bin/chromium is missing and this is not root: run as root, or 'apt-get install chromium'." >&2
        echo "      The Chromium test is skipped locally and fails under CI." >&2
    fi
fi
if [[ -x /usr/bin/chromium ]]; then
    /usr/bin/chromium --version 2>/dev/null || true
fi
step "done"
