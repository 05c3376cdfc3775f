#!/usr/bin/env bash
# Installs what the tests need (ffmpeg, jq, ... from Debian when missing) and
# runs every test, end-to-end included. CI runs exactly this (.ci/run).
#
#   scripts/test.sh            # everything
#   scripts/test.sh -run E2E   # extra flags go to `go test`
#
# It first checks what it assumes of the host and stops within seconds,
# naming what is missing: root (the systemd and container tests make
# namespaces), cgroup v2, namespaces and overlay mounts, the host's basic
# device nodes, the fixed ports of those two tests, Go. Then it installs
# missing tools, and runs each stage; the time of each is printed at the end,
# whether it passed or not.
set -euo pipefail
cd "$(dirname "$0")/.."

stage_names=() stage_secs=()
stage_name= stage_t0=
# stage NAME: ends the stage that ran (recording its time) and starts NAME.
stage() {
	local now=${EPOCHREALTIME/./}
	if [ -n "$stage_name" ]; then
		stage_names+=("$stage_name")
		stage_secs+=("$(((now - stage_t0) / 1000000)).$((((now - stage_t0) / 100000) % 10))")
	fi
	stage_name=$1 stage_t0=$now
	[ -z "$1" ] || echo "==> $1"
}
report() {
	local rc=$? i failed=$stage_name
	stage ""
	echo "==> stage times (s)"
	for i in "${!stage_names[@]}"; do
		printf '    %6s  %s\n' "${stage_secs[$i]}" "${stage_names[$i]}"
	done
	if [ $rc = 0 ]; then
		echo "==> all passed in ${SECONDS}s"
	else
		echo "==> FAILED in stage \"$failed\" (exit $rc) after ${SECONDS}s" >&2
	fi
}
trap report EXIT

stage "preconditions: root, cgroup v2, namespaces, /dev, free ports, Go"
[ "$(id -u)" = 0 ] || {
	echo "test.sh: must run as root: the systemd and container tests make namespaces and mounts, and missing tools are installed with apt-get" >&2
	exit 1
}
command -v go >/dev/null || {
	echo "test.sh: go not found on PATH (install Go $(awk '/^go /{print $2}' go.mod) or newer)" >&2
	exit 1
}
# Each script checks what it assumes of the host and says what is missing.
scripts/systemd-test.sh --preflight
scripts/container-test.sh --preflight

stage "install missing tools"
# Each tool the tests run, and the Debian package that has it: installed
# when missing, so that a clean machine needs nothing done by hand.
tools=(ffmpeg:ffmpeg ffprobe:ffmpeg curl:curl git:git jq:jq ss:iproute2 pgrep:procps
	unshare:util-linux nsenter:util-linux setpriv:util-linux findmnt:util-linux
	/lib/systemd/systemd:systemd systemctl:systemd journalctl:systemd
	chromium:chromium node:nodejs npm:npm /usr/sbin/nginx:nginx)
# Files that are not programs (command -v cannot find them), and their
# packages: nginx-rtmp, the downstream of the push relay tests, is a module
# that nginx loads. The tests look for it at this path too
# (cmd/mediad/e2e_nginx_test.go).
nginx_rtmp_module=/usr/lib/nginx/modules/ngx_rtmp_module.so
files=("$nginx_rtmp_module:libnginx-mod-rtmp")
need_install=()
for t in "${tools[@]}"; do
	command -v "${t%%:*}" >/dev/null 2>&1 || need_install+=("${t##*:}")
done
for f in "${files[@]}"; do
	[ -f "${f%%:*}" ] || need_install+=("${f##*:}")
done
# policy_rc_d_refuse: Debian's nginx package starts the nginx service (on
# port 80) when installed. Debian asks /usr/sbin/policy-rc.d whether a
# package may start its service: one that exits 101 says no. Any
# policy-rc.d already there (container images ship one) is put back after.
policy_rc_d=/usr/sbin/policy-rc.d
policy_rc_d_refuse() {
	if [ -e "$policy_rc_d" ] && [ ! -e "$policy_rc_d.mediad-test" ]; then
		mv "$policy_rc_d" "$policy_rc_d.mediad-test"
	fi
	printf '#!/bin/sh\n# scripts/test.sh: no service starts while it installs packages\nexit 101\n' >"$policy_rc_d"
	chmod 755 "$policy_rc_d"
}
policy_rc_d_restore() {
	rm -f "$policy_rc_d"
	if [ -e "$policy_rc_d.mediad-test" ]; then
		mv "$policy_rc_d.mediad-test" "$policy_rc_d"
	fi
}
if ((${#need_install[@]})); then
	mapfile -t need_install < <(printf '%s\n' "${need_install[@]}" | sort -u)
	echo "==> installing ${need_install[*]} (apt-get)"
	apt-get update -qq
	policy_rc_d_refuse
	rc=0
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_install[@]}" >/dev/null || rc=$?
	policy_rc_d_restore
	((rc == 0)) || exit $rc
fi
# No nginx of the system's may serve: the tests start their own, each
# under its own prefix. One the package started anyway (a host where
# policy-rc.d is not asked) is stopped through its own PID file, the only
# nginx that file names.
if [ -s /run/nginx.pid ] && [ -x /usr/sbin/nginx ] &&
	[ "$(readlink "/proc/$(cat /run/nginx.pid)/exe" 2>/dev/null)" = /usr/sbin/nginx ]; then
	echo "==> stopping the nginx service that the package started (pid $(cat /run/nginx.pid))"
	/usr/sbin/nginx -s stop
	# nginx removes its PID file as it exits.
	for _ in $(seq 100); do
		[ -e /run/nginx.pid ] || break
		sleep 0.1
	done
	[ ! -e /run/nginx.pid ] || {
		echo "test.sh: the nginx service (pid $(cat /run/nginx.pid)) did not stop within 10 s of nginx -s stop" >&2
		exit 1
	}
fi
for t in "${tools[@]}"; do
	command -v "${t%%:*}" >/dev/null || {
		echo "${t%%:*} still missing after installing ${t##*:}" >&2
		exit 1
	}
done
for f in "${files[@]}"; do
	[ -f "${f%%:*}" ] || {
		echo "${f%%:*} still missing after installing ${f##*:}; the package holds:" >&2
		dpkg -L "${f##*:}" 2>&1 | grep -E '\.so$' >&2 || true
		exit 1
	}
done
echo "==> $(go version); $(ffmpeg -version | head -1); $(/usr/sbin/nginx -v 2>&1)"
# The player code the browser test loads (hls.js, locked in web/).
scripts/web-deps.sh

stage "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-clean:" >&2
	echo "$unformatted" >&2
	exit 1
fi

stage "go vet"
go vet ./...
go vet -tags faultinject ./...

if [ "${STATICCHECK:-1}" = 1 ]; then
	stage "staticcheck"
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags faultinject ./...
fi

stage "go test (unit, race detector)"
go test -race -count=1 "$@" $(go list ./... | grep -v /cmd/mediad)

stage "go test (fault injection: the handoff's fault points and the upgrade engine's, race detector)"
go test -race -count=1 -tags faultinject "$@" ./handoff/...

stage "go test (end-to-end: real mediad binary, real ffmpeg)"
go test -count=1 -timeout 15m "$@" ./cmd/mediad/

stage "cross-release upgrades (every state version in testdata/releases)"
scripts/cross-release.sh

stage "systemd: reload is the upgrade (a real systemd booted in namespaces)"
scripts/systemd-test.sh

stage "container: the image's layout and the pod's lifecycle, mediad as PID 1 as uid 10001"
scripts/container-test.sh
