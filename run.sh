#!/usr/bin/env bash
# Set up (idempotent) and start the server with both modules on the default character.
# Extra arguments go to server.py, e.g. ./run.sh --port 5101 --listen
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/python server.py --enable-modules=classify,talkinghead "$@"
