#!/bin/bash
# install.sh builds mediad and installs it with its systemd unit on this
# machine (run as root from the repository), with /etc/mediad/mediad.toml
# unless one exists. Re-running it on a machine where
# mediad already runs upgrades it in place: the binary is replaced
# atomically and `systemctl reload` hands every session to it.
#
#   sudo scripts/install.sh            # build, install, enable, start/upgrade
#   PREFIX=/opt/mediad sudo scripts/install.sh
set -euo pipefail

cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
BIN=$PREFIX/bin/mediad
UNIT=/etc/systemd/system/mediad.service
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}

[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "building mediad $VERSION"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$tmp/mediad" ./cmd/mediad
"$tmp/mediad" --version

# Same directory, then rename: a running mediad upgrading at this moment
# starts either the old file or the new one, never half of one.
install -d "$PREFIX/bin"
install -m 0755 "$tmp/mediad" "$BIN.new"
mv -f "$BIN.new" "$BIN"

sed "s#/usr/local/bin/mediad#$BIN#g" scripts/mediad.service > "$tmp/mediad.service"
install -m 0644 "$tmp/mediad.service" "$UNIT"
install -d -m 0755 /var/lib/mediad/recordings
# The config is the operator's once installed: never overwritten. A new
# default goes beside it for comparison.
install -d -m 0755 /etc/mediad
if [ -e /etc/mediad/mediad.toml ]; then
	install -m 0644 scripts/mediad.toml /etc/mediad/mediad.toml.default
else
	install -m 0644 scripts/mediad.toml /etc/mediad/mediad.toml
fi
"$BIN" check-config --config /etc/mediad/mediad.toml >/dev/null
systemctl daemon-reload
systemctl enable mediad.service

if systemctl is-active --quiet mediad.service; then
	echo "mediad is running: upgrading in place"
	systemctl reload mediad.service
else
	systemctl start mediad.service
fi
systemctl --no-pager status mediad.service | head -n 5
