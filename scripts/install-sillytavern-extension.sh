#!/usr/bin/env bash
# Install the talkinghead-extras SillyTavern extension (clients/sillytavern/) into a SillyTavern folder.
#
#   scripts/install-sillytavern-extension.sh [--user NAME | --all-users] [--global] ST_DIR
#
# SillyTavern 1.12.x and newer load third-party extensions from the user's data folder,
# <dataRoot>/<user>/extensions/<name>/ (dataRoot from ST_DIR/config.yaml, default ST_DIR/data; user
# default-user). Newer versions also load ST_DIR/public/scripts/extensions/third-party/<name>/ for all
# users: --global installs there. Versions before 1.12 only know that folder, so it is used for them.
# Running it again updates the installed copy. Reload SillyTavern's page afterwards.
set -euo pipefail

NAME=talkinghead-extras
SOURCE="$(cd "$(dirname "$0")/.." && pwd)/clients/sillytavern"
user=default-user
all_users=false
global=false
st_dir=

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --user) [ $# -ge 2 ] || die "--user needs a name"; user="$2"; shift 2 ;;
    --user=*) user="${1#--user=}"; shift ;;
    --all-users) all_users=true; shift ;;
    --global) global=true; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$st_dir" ] || die "one SillyTavern folder only (got '$st_dir' and '$1')"; st_dir="$1"; shift ;;
  esac
done
[ -n "$st_dir" ] || { usage >&2; exit 2; }
[ -f "$SOURCE/manifest.json" ] || die "the extension is missing from $SOURCE"
[ -d "$st_dir" ] || die "$st_dir is not a folder"
st_dir="$(cd "$st_dir" && pwd)"
[ -f "$st_dir/package.json" ] && grep -qi '"name": *"sillytavern"' "$st_dir/package.json" \
  || die "$st_dir does not look like SillyTavern (no package.json naming sillytavern)"

version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$st_dir/package.json" | head -n 1)"
major="$(echo "$version" | cut -d. -f1)"; minor="$(echo "$version" | cut -d. -f2)"
# Per-user extension folders came with multi-user support in 1.12.0.
per_user=true
if [ "${major:-0}" -lt 1 ] 2>/dev/null || { [ "${major:-0}" -eq 1 ] && [ "${minor:-0}" -lt 12 ]; } 2>/dev/null; then
  per_user=false
fi
third_party="$st_dir/public/scripts/extensions/third-party"

# dataRoot from config.yaml (SillyTavern resolves a relative path from its own folder).
data_root="./data"
if [ -f "$st_dir/config.yaml" ]; then
  configured="$(sed -n 's/^dataRoot: *//p' "$st_dir/config.yaml" | head -n 1 | sed 's/ *#.*$//; s/^["'\'']//; s/["'\'']$//; s/ *$//')"
  [ -n "$configured" ] && data_root="$configured"
fi
case "$data_root" in
  /*) ;;
  *) data_root="$st_dir/${data_root#./}" ;;
esac

targets=()
if $global || ! $per_user; then
  if $per_user && [ ! -d "$third_party" ]; then
    die "SillyTavern $version has no $third_party folder: install per user (without --global)"
  fi
  targets+=("$third_party/$NAME")
  why="for all users"
elif $all_users; then
  [ -d "$data_root" ] || die "no user data in $data_root yet: start SillyTavern once, or name a --user"
  for dir in "$data_root"/*/; do
    dir="${dir%/}"
    case "$(basename "$dir")" in _*|.*) continue ;; esac # _storage, _uploads, _cache, …
    [ -f "$dir/settings.json" ] || [ -d "$dir/characters" ] || continue
    targets+=("$dir/extensions/$NAME")
  done
  [ ${#targets[@]} -gt 0 ] || die "no users found in $data_root"
  why="for every user in $data_root"
else
  targets+=("$data_root/$user/extensions/$NAME")
  why="for user $user"
fi

ext_version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$SOURCE/manifest.json" | head -n 1)"
for target in "${targets[@]}"; do
  action=installed
  [ -e "$target" ] && action=updated
  mkdir -p "$(dirname "$target")"
  rm -rf "$target.tmp.$$"
  cp -R "$SOURCE" "$target.tmp.$$"
  rm -rf "$target"
  mv "$target.tmp.$$" "$target"
  echo "$action $NAME $ext_version for SillyTavern ${version:-?} ($why): $target"
done

# One copy is enough: SillyTavern would list (and run) both.
if $per_user && ! $global && [ -d "$third_party/$NAME" ]; then
  echo "note: $third_party/$NAME (an all-users copy) exists too; remove it so only one copy runs"
fi
if $global && [ -d "$data_root" ]; then
  for other in "$data_root"/*/extensions/"$NAME"; do
    [ -d "$other" ] && echo "note: a per-user copy exists too: $other; remove it so only one copy runs"
  done
fi
echo "Reload SillyTavern in the browser (F5); then Extensions (the stacked-cubes icon) → Talkinghead (live avatar)."
