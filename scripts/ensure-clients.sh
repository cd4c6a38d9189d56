#!/usr/bin/env bash
# Make sure the JavaScript clients the tests run for real are installed: tests/clients
# (@ag-ui/client, the AI SDK), with `npm ci` from its committed package-lock.json.
# Idempotent: nothing is done while node_modules is newer than the lock file. Needs Node.js 20
# or newer and npm (`make system-deps` installs Debian's when missing).
set -euo pipefail
cd "$(dirname "$0")/../tests/clients"

give_up() {
    echo "ensure-clients: $1; the agent front-end tests (tests/gateway/test_agent_clients.py)" \
        "run the AG-UI and AI SDK clients in Node.js" >&2
    exit 1
}

command -v node >/dev/null 2>&1 || give_up "node is not installed (Node.js 20 or newer is needed)"
command -v npm >/dev/null 2>&1 || give_up "npm is not installed"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || give_up "node $(node --version) is too old (Node.js 20 or newer is needed)"

stamp=node_modules/.package-lock.json   # written by npm at the end of an install
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
    npm ci --loglevel=error >&2 || give_up "npm ci failed in tests/clients"
fi
