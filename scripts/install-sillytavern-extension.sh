#!/usr/bin/env bash
# Install the talkinghead-extras SillyTavern extension (clients/sillytavern/) into SillyTavern.
#
#   scripts/install-sillytavern-extension.sh [--user NAME | --all-users] [--global] [--data-root DIR] [ST_DIR]
#
# SillyTavern 1.12 and newer load third-party extensions from the user's data folder,
# <data root>/<user>/extensions/<name>/ (user: default-user). The data root, first found wins:
#   --data-root DIR; $SILLYTAVERN_DATAROOT; dataRoot in ST_DIR/config.yaml; for a git checkout (or a
#   copy started with `node server.js`/start.sh) ST_DIR/data; for an npm install run as `sillytavern`
#   or `npx sillytavern` ("global mode") the user's data folder: ~/.local/share/SillyTavern/data on Linux
#   ($XDG_DATA_HOME/SillyTavern/data), ~/Library/Application Support/SillyTavern/data on macOS.
# Without ST_DIR: $SILLYTAVERN_DATAROOT, else that user data folder when it exists, else ~/SillyTavern.
# --global installs into ST_DIR/public/scripts/extensions/third-party/<name>/ (all users); versions
# before 1.12 only know that folder, so it is used for them. It says what it found and where it installed.
# Running it again updates the installed copy. Reload SillyTavern's page afterwards.
set -euo pipefail

NAME=talkinghead-extras
SOURCE="$(cd "$(dirname "$0")/.." && pwd)/clients/sillytavern"
user=default-user
all_users=false
global=false
st_dir=
data_root_arg=

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --user) [ $# -ge 2 ] || die "--user needs a name"; user="$2"; shift 2 ;;
    --user=*) user="${1#--user=}"; shift ;;
    --all-users) all_users=true; shift ;;
    --global) global=true; shift ;;
    --data-root) [ $# -ge 2 ] || die "--data-root needs a folder"; data_root_arg="$2"; shift 2 ;;
    --data-root=*) data_root_arg="${1#--data-root=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$st_dir" ] || die "one SillyTavern folder only (got '$st_dir' and '$1')"; st_dir="$1"; shift ;;
  esac
done
[ -f "$SOURCE/manifest.json" ] || die "the extension is missing from $SOURCE"

# The user data folder of SillyTavern's global mode (npm's `sillytavern` command, npx): env-paths' data
# folder for "SillyTavern", then data/.
global_data_root() {
  case "$(uname -s 2>/dev/null)" in
    Darwin) echo "$HOME/Library/Application Support/SillyTavern/data" ;;
    MINGW*|MSYS*|CYGWIN*) echo "${LOCALAPPDATA:-$HOME/AppData/Local}/SillyTavern/Data/data" ;;
    *) echo "${XDG_DATA_HOME:-$HOME/.local/share}/SillyTavern/data" ;;
  esac
}
# A relative data root is SillyTavern's folder's (or, without one, the current folder's).
absolute() {
  case "$1" in
    /*) echo "$1" ;;
    *) echo "${2:-$PWD}/${1#./}" ;;
  esac
}

if [ -z "$st_dir" ] && [ -z "$data_root_arg" ] && [ -z "${SILLYTAVERN_DATAROOT:-}" ]; then
  if [ -d "$(global_data_root)" ]; then
    :  # an npm / npx install's data: found below
  elif [ -f "$HOME/SillyTavern/package.json" ]; then
    st_dir="$HOME/SillyTavern"
  else
    usage >&2
    die "no SillyTavern found: name its folder (ST_DIR) or its data folder (--data-root DIR)"
  fi
fi

version=
layout=
third_party=
if [ -n "$st_dir" ]; then
  [ -d "$st_dir" ] || die "$st_dir is not a folder"
  st_dir="$(cd "$st_dir" && pwd)"
  [ -f "$st_dir/package.json" ] && grep -qi '"name": *"sillytavern"' "$st_dir/package.json" \
    || die "$st_dir does not look like SillyTavern (no package.json naming sillytavern)"
  version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$st_dir/package.json" | head -n 1)"
  third_party="$st_dir/public/scripts/extensions/third-party"
  if [ -e "$st_dir/.git" ]; then
    layout="a git checkout"
  elif [ "$(basename "$(dirname "$st_dir")")" = node_modules ]; then
    layout="an npm install"
  else
    layout="a release folder"
  fi
fi
major="$(echo "$version" | cut -d. -f1)"; minor="$(echo "$version" | cut -d. -f2)"
# Per-user extension folders came with multi-user support in 1.12.0 (unknown version: assume newer).
per_user=true
if [ -n "$version" ] && { [ "${major:-0}" -lt 1 ] 2>/dev/null || { [ "${major:-0}" -eq 1 ] && [ "${minor:-0}" -lt 12 ]; } 2>/dev/null; }; then
  per_user=false
fi

configured=
if [ -n "$st_dir" ] && [ -f "$st_dir/config.yaml" ]; then
  configured="$(sed -n 's/^dataRoot: *//p' "$st_dir/config.yaml" | head -n 1 | sed 's/ *#.*$//; s/^["'\'']//; s/["'\'']$//; s/ *$//')"
fi
if [ -n "$data_root_arg" ]; then
  data_root="$(absolute "$data_root_arg")"; found="--data-root"
elif [ -n "${SILLYTAVERN_DATAROOT:-}" ]; then
  data_root="$(absolute "$SILLYTAVERN_DATAROOT" "$st_dir")"; found="\$SILLYTAVERN_DATAROOT"
elif [ -n "$configured" ]; then
  data_root="$(absolute "$configured" "$st_dir")"; found="dataRoot in $st_dir/config.yaml"
elif [ -z "$st_dir" ]; then
  data_root="$(global_data_root)"; found="the user data folder the \`sillytavern\` command (npm install -g, npx) uses"
elif [ "$layout" = "an npm install" ] && [ ! -d "$st_dir/data/default-user" ]; then
  data_root="$(global_data_root)"
  found="an npm install: the \`sillytavern\` command keeps data there; started with \`node server.js\` in its folder instead? then --data-root $st_dir/data"
else
  data_root="$st_dir/data"; found="the default of $layout"
fi
if [ -n "$st_dir" ]; then
  echo "found SillyTavern ${version:-?} in $st_dir ($layout)"
fi
if $per_user && ! $global; then
  echo "data root: $data_root (from $found)"
fi

targets=()
if $global || ! $per_user; then
  [ -n "$st_dir" ] || die "--global needs SillyTavern's folder (ST_DIR)"
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
  echo "$action $NAME $ext_version ${version:+for SillyTavern $version }($why): $target"
done

# One copy is enough: SillyTavern would list (and run) both.
if $per_user && ! $global && [ -n "$third_party" ] && [ -d "$third_party/$NAME" ]; then
  echo "note: $third_party/$NAME (an all-users copy) exists too; remove it so only one copy runs"
fi
if $global && [ -d "$data_root" ]; then
  for other in "$data_root"/*/extensions/"$NAME"; do
    [ -d "$other" ] && echo "note: a per-user copy exists too: $other; remove it so only one copy runs"
  done
fi
echo "Reload SillyTavern in the browser (F5); then Extensions (the stacked-cubes icon) → Talkinghead (live avatar)."
