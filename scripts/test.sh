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
	chromium:chromium node:nodejs npm:npm)
need_install=()
for t in "${tools[@]}"; do
	command -v "${t%%:*}" >/dev/null 2>&1 || need_install+=("${t##*:}")
done
if ((${#need_install[@]})); then
	mapfile -t need_install < <(printf '%s\n' "${need_install[@]}" | sort -u)
	echo "==> installing ${need_install[*]} (apt-get)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_install[@]}" >/dev/null
fi
for t in "${tools[@]}"; do
	command -v "${t%%:*}" >/dev/null || {
		echo "${t%%:*} still missing after installing ${t##*:}" >&2
		exit 1
	}
done
echo "==> $(go version); $(ffmpeg -version | head -1)"
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

stage "go test (fault injection: the handoff's fault points, race detector)"
go test -race -count=1 -tags faultinject "$@" ./handoff/

stage "go test (end-to-end: real mediad binary, real ffmpeg)"
go test -count=1 -timeout 15m "$@" ./cmd/mediad/

stage "cross-release upgrades (every state version in testdata/releases)"
scripts/cross-release.sh

stage "systemd: reload is the upgrade (a real systemd booted in namespaces)"
scripts/systemd-test.sh

stage "container: the image's layout and the pod's lifecycle, mediad as PID 1 as uid 10001"
scripts/container-test.sh
