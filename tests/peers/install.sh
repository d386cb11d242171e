#!/usr/bin/env bash
# Installs the third-party peers and tools the tests run against the
# server: Python's `websockets` and PyJWT with `cryptography` (the auth
# tests' independent token signer, sign_jwt.py) in tests/peers/.venv, Node's
# `ws` and `playwright-core` (in tests/peers/node_modules), Debian's headless
# Chromium, iproute2's `ss`, and Debian's redis-server for
# tests/cluster_link.rs (install-redis.sh). Idempotent: what is already there is kept, so a second
# run takes seconds. .ci/run calls it before `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

# Exact versions, so that every machine tests against the same peers.
WEBSOCKETS_VERSION=17.4
PYJWT_VERSION=2.15.1
CRYPTOGRAPHY_VERSION=50.0.2

step() { echo "== peers: $*"; }

step "python websockets ${WEBSOCKETS_VERSION} in tests/peers/.venv"
if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import sys, websockets; sys.exit(websockets.__version__ != '${WEBSOCKETS_VERSION}')" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "websockets==${WEBSOCKETS_VERSION}"
fi
.venv/bin/python -c "import websockets; print('websockets', websockets.__version__)"

step "python PyJWT ${PYJWT_VERSION} and cryptography ${CRYPTOGRAPHY_VERSION} in tests/peers/.venv"
if ! .venv/bin/python -c "import sys, jwt, cryptography; sys.exit(jwt.__version__ != '${PYJWT_VERSION}' or cryptography.__version__ != '${CRYPTOGRAPHY_VERSION}')" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "pyjwt==${PYJWT_VERSION}" "cryptography==${CRYPTOGRAPHY_VERSION}"
fi
.venv/bin/python -c "import jwt, cryptography; print('pyjwt', jwt.__version__, 'cryptography', cryptography.__version__)"

step "node ws and playwright-core in tests/peers/node_modules"
npm install --no-audit --no-fund
node -e "for (const p of ['ws', 'playwright-core']) console.log(p, JSON.parse(require('fs').readFileSync('node_modules/' + p + '/package.json')).version)"

# Debian packages the tests need, installed only when their command is
# missing (one `apt-get update` for all of them).
apt_updated=0
apt_install() {
    local package=$1 command=$2
    step "$package ($command)"
    if command -v "$command" >/dev/null 2>&1; then
        return
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "NOTE: $command is missing and this is not root: run as root, or 'apt-get install $package'." >&2
        echo "      The tests that need it are skipped locally and fail under CI." >&2
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ((!apt_updated)); then
        apt-get update
        apt_updated=1
    fi
    apt-get install -y "$package"
}

# Headless Chromium for the browser tests.
apt_install chromium /usr/bin/chromium
if [[ -x /usr/bin/chromium ]]; then
    /usr/bin/chromium --version 2>/dev/null || true
fi
# `ss`, which reads a listening socket's backlog (tests/limits.rs).
apt_install iproute2 ss
step "redis-server (tests/cluster_link.rs)"
bash ./install-redis.sh
step "done"
