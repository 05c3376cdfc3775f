#!/usr/bin/env bash
# Installs what the tests need (ffmpeg, jq, ... from Debian when missing) and
# runs every test, end-to-end included. CI runs exactly this (.ci/run).
#
#   scripts/test.sh            # everything
#   scripts/test.sh -run E2E   # extra flags go to `go test`
set -euo pipefail
cd "$(dirname "$0")/.."

# Each tool the tests run, and the Debian package that has it: installed
# when missing, so that a clean machine needs nothing done by hand.
tools=(ffmpeg:ffmpeg ffprobe:ffmpeg curl:curl git:git jq:jq ss:iproute2
	unshare:util-linux nsenter:util-linux setpriv:util-linux /lib/systemd/systemd:systemd)
need_install=()
for t in "${tools[@]}"; do
	command -v "${t%%:*}" >/dev/null 2>&1 || need_install+=("${t##*:}")
done
if ((${#need_install[@]})); then
	mapfile -t need_install < <(printf '%s\n' "${need_install[@]}" | sort -u)
	echo "==> installing ${need_install[*]} (apt-get)"
	SUDO=""
	if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_install[@]}" >/dev/null
fi
for t in "${tools[@]}"; do
	command -v "${t%%:*}" >/dev/null || {
		echo "${t%%:*} still missing after installing ${t##*:}" >&2
		exit 1
	}
done
echo "==> $(go version); $(ffmpeg -version | head -1)"

echo "==> gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-clean:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "==> go vet"
go vet ./...
go vet -tags faultinject ./...

if [ "${STATICCHECK:-1}" = 1 ]; then
	echo "==> staticcheck"
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags faultinject ./...
fi

echo "==> go test (unit, race detector)"
go test -race -count=1 "$@" $(go list ./... | grep -v /cmd/mediad)

echo "==> go test (fault injection: the handoff's fault points, race detector)"
go test -race -count=1 -tags faultinject "$@" ./handoff/

echo "==> go test (end-to-end: real mediad binary, real ffmpeg)"
go test -count=1 -timeout 15m "$@" ./cmd/mediad/

echo "==> cross-release upgrades (every state version in testdata/releases)"
scripts/cross-release.sh

echo "==> systemd: reload is the upgrade (a real systemd booted in namespaces)"
scripts/systemd-test.sh

echo "==> container: the image's layout and the pod's lifecycle, mediad as PID 1 as uid 10001"
scripts/container-test.sh
