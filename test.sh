#!/usr/bin/env bash
# Set up (idempotent, with test tools) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
# setup.sh exits with 3 when it could not provide a test tool (it says which): outside CI the tests that need
# it skip with the reason; under CI=true they would fail, so stop here.
scripts/setup.sh --test || { rc=$?; [ "$rc" = 3 ] && [ "${CI:-}" != true ] \
  && echo "[test] going on without them: their tests skip (under CI=true they fail)" >&2; } || exit "$rc"
exec .venv/bin/python -m pytest "$@"
