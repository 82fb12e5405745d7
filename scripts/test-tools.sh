#!/usr/bin/env bash
# The programs the tests need, from Debian packages (scripts/setup.sh --test runs this).
#   scripts/test-tools.sh           installs the missing ones with apt-get (needs root)
#   scripts/test-tools.sh --check   only checks
# Exits with 3, naming the missing programs and why they could not be installed: under CI=true the tests
# that need them fail rather than skip, so a setup that cannot provide them must say so first.
set -euo pipefail
check_only=false
[ "${1:-}" = "--check" ] && check_only=true
say() { printf '[setup] %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 3; }

# program (or a file a package installs)  Debian package  (what needs it). Add a line for a new tool.
TOOLS="
chromium      chromium         browser tests
chromedriver  chromium-driver  browser tests
espeak-ng     espeak-ng        lip-sync tests (speech)
ffmpeg        ffmpeg           lip-sync and stream tests (formats, MJPEG reader)
node          nodejs           SillyTavern extension test
npm           npm              SillyTavern extension test
festival      festival         lip-sync tests (voices from recorded speech)
/usr/share/festival/voices/czech/czech_dita           festvox-czech-dita    lip-sync tests (Czech female)
/usr/share/festival/voices/czech/czech_machac         festvox-czech-machac  lip-sync tests (Czech male)
/usr/share/festival/voices/czech/czech_krb            festvox-czech-krb     lip-sync tests (Czech child)
/usr/share/festival/czech-debug.scm                   festival-czech        lip-sync tests (Czech)
/usr/share/festival/voices/english/ked_diphone        festvox-kdlpc16k      lip-sync tests (US English male)
/usr/share/festival/voices/finnish/suo_fi_lj_diphone  festvox-suopuhe-lj    lip-sync tests (Finnish female)
/usr/share/festival/voices/finnish/hy_fi_mv_diphone   festvox-suopuhe-mv    lip-sync tests (Finnish male)
"

present() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}
missing_programs() {
  local program package why
  while read -r program package why; do
    [ -n "$program" ] && ! present "$program" && printf '%s ' "$program"
  done <<<"$TOOLS"
  return 0
}
packages_for() {
  local program package why wanted=" $* "
  while read -r program package why; do
    [ -n "$program" ] && [[ "$wanted" == *" $program "* ]] && printf '%s ' "$package"
  done <<<"$TOOLS"
  return 0
}

missing=$(missing_programs)
[ -z "$missing" ] && { say "test tools present"; exit 0; }
packages=$(packages_for $missing)
$check_only && fail "test tools missing: ${missing% } (apt-get install ${packages% })"
[ "$(id -u)" = 0 ] || fail "test tools missing: ${missing% }; installing them needs root: sudo apt-get install ${packages% }"
command -v apt-get >/dev/null 2>&1 || fail "test tools missing: ${missing% }; no apt-get here: install ${packages% } by hand"
say "installing ${packages% } for the tests (missing: ${missing% })"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null \
  || fail "apt-get install ${packages% } failed; test tools missing: ${missing% }"
missing=$(missing_programs)
[ -z "$missing" ] || fail "test tools still missing after apt-get install: ${missing% }"
say "test tools installed"
