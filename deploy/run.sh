#!/usr/bin/env bash
# Install and run ghimaging with its embedded default database (SQLite in
# ./instance). Works on a fresh Debian 12 or Raspberry Pi OS machine.
#
#   bash deploy/run.sh            # http://<this machine>:8000
#   HOST=127.0.0.1 PORT=8080 bash deploy/run.sh
#   WORKERS=1 THREADS=8 bash deploy/run.sh   # gunicorn processes x threads each
#
# On the first run it creates the user "admin" and prints its password.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
HOST=${HOST:-0.0.0.0}
PORT=${PORT:-8000}
WORKERS=${WORKERS:-1}
THREADS=${THREADS:-8}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

SUDO=()
[[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null 2>&1 && SUDO=(sudo)

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "==> installing python3-venv"
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv python3-pip
fi

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    echo "==> creating .venv"
    rm -rf .venv
    python3 -m venv .venv
fi
echo "==> installing ghimaging into .venv"
.venv/bin/pip install -q --upgrade pip >/dev/null
if [[ ${GHIMAGING_DATABASE_URL:-} == postgresql* ]]; then
    .venv/bin/pip install -q -e '.[postgresql,pdf]'
else
    .venv/bin/pip install -q -e '.[pdf]'
fi

echo "==> preparing the database"
.venv/bin/ghimaging init --create-admin

echo "==> serving on http://${HOST}:${PORT} with ${WORKERS} x ${THREADS} threads  (Ctrl-C stops)"
exec .venv/bin/ghimaging serve --host "$HOST" --port "$PORT" --workers "$WORKERS" --threads "$THREADS"
