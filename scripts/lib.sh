# lib.sh: what the scripts that run mediad in namespaces share
# (systemd-test.sh, container-test.sh). Source it after setting NAME; a
# script that has more to show on failure defines on_fail.
passed=0

say() { echo "$NAME: $*"; }
ok() { passed=$((passed + 1)); say "ok $passed: $*"; }
fail() {
	say "FAIL: $*" >&2
	if declare -F on_fail >/dev/null; then on_fail >&2 || true; fi
	say "$passed passed, 1 failed" >&2
	exit 1
}

# need_root WHY TOOL...: running as root, with every tool on PATH.
need_root() {
	local why=$1
	shift
	[ "$(id -u)" = 0 ] || fail "must run as root ($why)"
	for c in "$@"; do
		command -v "$c" >/dev/null || fail "$c not found"
	done
}

# ports_free PORT...: the fixed test ports are free.
ports_free() {
	for p in "$@"; do
		[ -z "$(ss -Hltn "sport = :$p")" ] || fail "port $p is in use; set RTMP_PORT/ADMIN_PORT"
	done
}
