#!/usr/bin/env bash
# Installs the player code that mediad's media listener serves (hls.js, at
# the version web/package-lock.json locks) into web/node_modules, with
# `npm ci`. Node and npm are installed from Debian when missing (as root).
# Run again, it does nothing when the locked version is already there.
#
#   scripts/web-deps.sh
#
# mediad finds web/ next to its working directory or its binary, or where
# --web-dir or MEDIAD_WEB_DIR says; without it the player pages fall back to
# the browser's native HLS.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "web-deps: $*"; }
die() {
	echo "web-deps: $*" >&2
	exit 1
}

lock=web/package-lock.json
installed=web/node_modules/hls.js/package.json
[ -f "$lock" ] || die "$lock not found"

# The version the lockfile locks: the first "version" after the
# "node_modules/hls.js" entry (npm writes lockfiles with this layout).
want=$(awk '/"node_modules\/hls.js": *\{/ { f = 1 } f && /"version":/ { gsub(/[",]/, "", $2); print $2; exit }' "$lock")
[ -n "$want" ] || die "$lock locks no hls.js version"

have=
if [ -f "$installed" ]; then
	have=$(sed -n 's/^  "version": *"\([^"]*\)".*/\1/p' "$installed" | head -1)
fi
if [ "$have" = "$want" ] && [ -f web/node_modules/hls.js/dist/hls.min.js ]; then
	say "hls.js $want already installed in web/node_modules"
	exit 0
fi

# Debian's package for each command that npm ci needs.
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
	[ "$(id -u)" = 0 ] || die "needs ${missing[*]} (Debian packages) to install hls.js $want: run as root to install them with apt-get, or install them yourself"
	say "installing ${missing[*]} (apt-get)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	for c in node npm; do
		command -v "$c" >/dev/null || die "$c still missing after installing ${missing[*]}"
	done
fi

say "installing hls.js $want (npm ci; had ${have:-none})"
npm ci --prefix web --no-audit --no-fund --ignore-scripts --loglevel=error
have=$(sed -n 's/^  "version": *"\([^"]*\)".*/\1/p' "$installed" 2>/dev/null | head -1)
[ "$have" = "$want" ] || die "npm ci left hls.js ${have:-missing} in web/node_modules, want $want"
[ -f web/node_modules/hls.js/dist/hls.min.js ] || die "web/node_modules/hls.js/dist/hls.min.js missing after npm ci"
say "hls.js $have installed in web/node_modules"
