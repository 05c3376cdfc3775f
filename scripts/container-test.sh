#!/bin/bash
# container-test.sh runs mediad the way the image and the Kubernetes
# manifests run it, without a container runtime (none runs here): a root
# filesystem laid out as the image lays it out (binary in /opt/mediad/bin
# owned by uid 10001, /etc/mediad/mediad.toml from deploy/, the recordings
# volume at /var/lib/mediad/recordings) over a throw-away overlay of the
# host's / (Debian 12, as the image's bookworm-slim base), with its own
# minimal /dev, tmpfs /run and /tmp and a fresh /proc whatever the host
# mounts there; mediad runs as uid 10001, as PID 1 of a new PID namespace
# (its tiny init), with environment overrides as a pod's env would give.
# Under a live ffmpeg publish it then follows deploy/README.md, running each
# command inside the container as `kubectl exec` would (nsenter, uid 10001):
#   - startup probe: /readyz answers 200;
#   - three in-place upgrades: the new binary copied beside the old, renamed
#     over it, `mediad upgrade`; the namespace, the stream and the recording
#     survive each;
#   - preStop: `mediad drain --wait`, after which /readyz is 503, /healthz
#     200, and the stream still runs;
#   - SIGTERM to PID 1: exit 0 within shutdown-timeout, no process left,
#     the recording whole and readable.
# It shares the host's network (a pod's loopback here): the test ports must
# be free. Needs root (unshare, nsenter, setpriv), go, ffmpeg, ffprobe, curl,
# jq.
#
#   scripts/container-test.sh
#   scripts/container-test.sh --preflight   # only check what it assumes of the host
#   RTMP_PORT=29460 ADMIN_PORT=29461 scripts/container-test.sh
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RTMP_PORT=${RTMP_PORT:-19460}
ADMIN_PORT=${ADMIN_PORT:-19461}
UID_=10001
START=$SECONDS
H=127.0.0.1:$ADMIN_PORT

NAME=container-test
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
on_fail() {
	if [ -s "${W:-/nonexistent}/log" ]; then
		echo "--- mediad log (last 30 lines) ---"
		tail -n 30 "$W/log"
	fi
}

# What this test assumes of the host, checked first (--preflight stops here).
need_root "it makes namespaces and mounts"
host_devices
namespaces_work
ports_free $RTMP_PORT $ADMIN_PORT
[ "${1:-}" != --preflight ] || exit 0
need_tools go ffmpeg ffprobe curl jq unshare nsenter setpriv pgrep findmnt
# What runs inside the container comes from the overlay of /.
on_root_fs /bin/sh /bin/cp /bin/mv /bin/chmod

W=$(mktemp -d /tmp/mediad-ct.XXXXXX)
chmod 755 "$W"
NS= FF= INIT=
cleanup() {
	set +e
	[ -n "$FF" ] && kill "$FF" 2>/dev/null && wait "$FF" 2>/dev/null
	if [ -n "$NS" ] && kill -0 "$NS" 2>/dev/null; then
		# The kernel ends every process of a PID namespace with its PID 1.
		[ -n "$INIT" ] && kill -KILL "$INIT" 2>/dev/null
		pkill -KILL -P "$NS"
		wait "$NS" 2>/dev/null
	fi
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the image, as the Dockerfile builds it ---------------------------------------
say "building ct-a and ct-b as the Dockerfile does (static, trimpath)"
for v in a b; do
	(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=ct-$v" -o "$W/mediad-$v" ./cmd/mediad) ||
		fail "go build ct-$v"
done
# The recordings volume: a host directory, so it outlives the container.
mkdir -p "$W/rec"
chown $UID_:$UID_ "$W/rec"
status() { curl -fsS --max-time 5 "http://$H/api/status"; }
code() { http_code "http://$H$1"; }
# in_pod CMD...: CMD inside the container as its user, as `kubectl exec`
# runs it (the container's mount and PID namespaces, root and working
# directory; the image's PATH).
in_pod() {
	nsenter -t "$INIT" -m -p -r -w env -i PATH=/usr/bin:/bin \
		setpriv --reuid $UID_ --regid $UID_ --clear-groups "$@"
}

ffmpeg -nostdin -loglevel error -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
	-t 4 -c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "$W/src.flv" || fail "encode source"

# --- start: the image's entrypoint and CMD, as PID 1 ---------------------------------
# The pod's env (MEDIAD_*) overrides the ConfigMap's listen addresses; the
# record dir is the image's, with the volume mounted on it.
"$W/mediad-a" check-config --config "$REPO/deploy/mediad.toml" >/dev/null || fail "deploy/mediad.toml does not pass check-config"
env -i PATH=/usr/bin:/bin MEDIAD_INIT=auto MEDIAD_HTTP=$H MEDIAD_RTMP=127.0.0.1:$RTMP_PORT \
	unshare --mount --propagation private bash -c "set -e
		NAME=$NAME; . '$REPO/scripts/lib.sh'
		overlay_root $W
		container_fs $W/root
		R=$W/root
		mkdir -p \$R/opt/mediad/bin \$R/etc/mediad \$R/var/lib/mediad/recordings
		cp $W/mediad-a \$R/opt/mediad/bin/mediad
		chmod 755 \$R/opt/mediad/bin/mediad
		cp $REPO/deploy/mediad.toml \$R/etc/mediad/mediad.toml
		chown -R $UID_:$UID_ \$R/opt/mediad/bin \$R/var/lib/mediad
		mount --bind $W/rec \$R/var/lib/mediad/recordings
		exec unshare --pid --fork --mount-proc --root=\$R --wd=/var/lib/mediad \
			setpriv --reuid $UID_ --regid $UID_ --clear-groups \
			/opt/mediad/bin/mediad --config /etc/mediad/mediad.toml" >"$W/log" 2>&1 </dev/null &
NS=$!
# init_found: the host PID of the container's PID 1. Until unshare forks it,
# NS's children are the set-up commands (mount, cp, ...): what counts is a
# child that is PID 1 of a namespace of its own.
init_found() { INIT=$(ns_init $(pgrep -P "$NS")); }
wait_until -p $NS 10 "the container's PID 1 (a child of $NS that is PID 1 of its own namespace)" init_found
ready() { [ "$(code /readyz)" = 200 ]; }
wait_until -p $NS 15 "the startup probe: /readyz on $H answering 200" ready
[ "$(awk '/^NSpid/{print $NF}' /proc/$INIT/status)" = 1 ] || fail "mediad (host PID $INIT) is not PID 1 of its namespace"
[ "$(awk '/^Uid/{print $2}' /proc/$INIT/status)" = $UID_ ] || fail "mediad runs as uid $(awk '/^Uid/{print $2}' /proc/$INIT/status), want $UID_"
for m in /:overlay /dev:tmpfs /run:tmpfs /tmp:tmpfs /var/lib/mediad/recordings:; do
	fs=$(findmnt -N "$INIT" -no FSTYPE "${m%%:*}") || fail "no mount at ${m%%:*} in the container"
	[ -z "${m#*:}" ] || [ "$fs" = "${m#*:}" ] || fail "the container's ${m%%:*} is $fs, want ${m#*:}"
done
wait_until 10 "mediad to listen on :$RTMP_PORT (RTMP)" listening $RTMP_PORT
[ "$(status | jq -r .version)" = ct-a ] || fail "serving $(status | jq -r .version), want ct-a"
ok "startup probe passed: mediad is PID 1 of its namespace as uid $UID_, in the image's layout, serving ct-a"

pub0=$(date +%s%N)
ffmpeg -nostdin -loglevel warning -re -stream_loop -1 -i "$W/src.flv" -t 60 -c copy \
	-f flv "rtmp://127.0.0.1:$RTMP_PORT/live/ct" >"$W/ffmpeg.log" 2>&1 &
FF=$!
one_live() { [ "$(status | jq '[.streams[] | select(.live)] | length')" = 1 ] 2>/dev/null; }
wait_until -p $FF 10 "live/ct to be live in /api/status" one_live
ok "publisher live on rtmp://127.0.0.1:$RTMP_PORT/live/ct"

# --- in-place upgrades, as deploy/README.md does them -----------------------------------
n=0
for v in b a b; do
	n=$((n + 1))
	sleep 2
	old=$(status | jq .pid)
	frames=$(status | jq '.streams[0].stats.video_frames')
	# kubectl cp (a file written in the container as its user), then exec mv.
	in_pod sh -c 'cat >/opt/mediad/bin/mediad.new && chmod 755 /opt/mediad/bin/mediad.new' <"$W/mediad-$v" ||
		fail "upgrade $n: copying ct-$v into the container as uid $UID_"
	in_pod mv /opt/mediad/bin/mediad.new /opt/mediad/bin/mediad || fail "upgrade $n: mv as uid $UID_"
	out=$(in_pod /opt/mediad/bin/mediad upgrade --http $H 2>&1) || fail "upgrade $n: $out"
	serves_new() { local s; s=$(status) && [ "$(jq .pid <<<"$s")" != "$old" ] && [ "$(jq -r .version <<<"$s")" = "ct-$v" ]; }
	wait_until 10 "upgrade $n: /api/status to report a new pid (not $old) serving ct-$v" serves_new
	kill -0 $INIT 2>/dev/null || fail "upgrade $n: PID 1 of the namespace is gone"
	kill -0 $FF 2>/dev/null || fail "upgrade $n: publisher exited"
	frames_past() { [ "$(status | jq '.streams[0].stats.video_frames')" -gt "$1" ]; }
	wait_until -p $FF 5 "upgrade $n: the stream's video frames to pass $frames (the stream stopped)" frames_past "$frames"
	ok "in-place upgrade $n as uid $UID_: $out"
done
[ "$(status | jq .generation)" = 4 ] && [ "$(status | jq .upgrade_counts.success)" = 3 ] ||
	fail "after three upgrades: generation $(status | jq .generation), upgrades $(status | jq -c .upgrade_counts)"
ok "namespace alive, generation 4, history of 3 successful upgrades"

# --- preStop, then SIGTERM --------------------------------------------------------
sleep 1
out=$(in_pod /opt/mediad/bin/mediad drain --http $H --wait 2s 2>&1) || fail "preStop drain: $out"
[ "$(code /readyz)" = 503 ] && [ "$(code /healthz)" = 200 ] || fail "after drain: /readyz $(code /readyz), /healthz $(code /healthz)"
kill -0 $FF 2>/dev/null || fail "drain cut the publisher"
ok "preStop: $out; /readyz 503, /healthz 200, publisher still streaming"

timeout=$("$W/mediad-a" check-config --config "$REPO/deploy/mediad.toml" | awk -F'"' '/^shutdown-timeout/{print $2}')
t0=$(date +%s%N)
published_ms=$(((t0 - pub0) / 1000000))
kill -TERM $INIT
rc=0
wait $NS || rc=$?
NS=
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 0 ] || fail "SIGTERM: the namespace's PID 1 exited $rc, want 0"
ok "SIGTERM to PID 1: exit 0 in $ms ms (shutdown-timeout $timeout)"
wait $FF 2>/dev/null || true
FF=

mapfile -t files < <(find "$W/rec" -type f -name '*.flv' | sort)
[ ${#files[@]} = 1 ] || fail "want one recording, found ${#files[@]}: ${files[*]}"
[ "$(stat -c %u "${files[0]}")" = $UID_ ] || fail "recording owned by uid $(stat -c %u "${files[0]}")"
perr=$(ffprobe -v error -select_streams v -show_entries packet=pts_time -of csv=p=0 "${files[0]}" 2>&1 >"$W/pts") || fail "ffprobe: $perr"
[ -z "$perr" ] || fail "ffprobe reports errors: $perr"
last_ms=$(awk -F, 'NF{t=$1} END{printf "%d", t*1000}' "$W/pts")
# ffmpeg started publishing at pub0, in real time from pts 0: the last
# frame recorded is what it had sent when the signal came, less its start.
gap=$((published_ms - last_ms))
[ $gap -ge -100 ] && [ $gap -le 2000 ] || fail "last recorded frame at ${last_ms} ms, the signal came ${published_ms} ms after ffmpeg started"
ok "one recording across three upgrades: $(wc -l <"$W/pts") video frames, the last at ${last_ms} ms, signal at ${published_ms} ms after ffmpeg started; ffprobe reads it without error"

say "$passed passed, 0 failed ($((SECONDS - START))s)"
