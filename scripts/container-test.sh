#!/bin/bash
# container-test.sh runs mediad the way the image and the Kubernetes
# manifests run it, without a container runtime (none runs here): the
# image's layout (binary in /opt/mediad/bin owned by uid 10001), as uid
# 10001, as PID 1 of a new PID namespace (its tiny init), with
# deploy/mediad.toml and environment overrides, as a pod's env would give.
# Under a live ffmpeg publish it then follows deploy/README.md:
#   - startup probe: /readyz answers 200;
#   - three in-place upgrades as the container user: the new binary copied
#     beside the old, renamed over it, `mediad upgrade`; the namespace, the
#     stream and the recording survive each;
#   - preStop: `mediad drain --wait`, after which /readyz is 503, /healthz
#     200, and the stream still runs;
#   - SIGTERM to PID 1: exit 0 within shutdown-timeout, no process left,
#     the recording whole and readable.
# Needs root (unshare, setpriv), go, ffmpeg, ffprobe, curl, jq.
#
#   scripts/container-test.sh
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

need_root "unshare, setpriv" go ffmpeg ffprobe curl jq unshare setpriv ss
ports_free $RTMP_PORT $ADMIN_PORT

W=$(mktemp -d /tmp/mediad-ct.XXXXXX)
chmod 755 "$W"
NS= FF=
cleanup() {
	set +e
	[ -n "$FF" ] && kill "$FF" 2>/dev/null && wait "$FF" 2>/dev/null
	if [ -n "$NS" ] && kill -0 "$NS" 2>/dev/null; then
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
BIN=$W/opt/mediad/bin
mkdir -p "$BIN" "$W/rec"
cp "$W/mediad-a" "$BIN/mediad"
chown -R $UID_:$UID_ "$W/opt/mediad/bin" "$W/rec"
chmod 755 "$W/opt" "$W/opt/mediad" "$W/mediad-a" "$W/mediad-b"
as_user() { setpriv --reuid $UID_ --regid $UID_ --clear-groups "$@"; }
status() { curl -fsS --max-time 5 "http://$H/api/status"; }
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$H$1"; }

ffmpeg -nostdin -loglevel error -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
	-t 4 -c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "$W/src.flv" || fail "encode source"

# --- start: the image's entrypoint and CMD, as PID 1 ---------------------------------
# The pod's env overrides the ConfigMap's listen addresses and record dir.
"$W/mediad-a" check-config --config "$REPO/deploy/mediad.toml" >/dev/null || fail "deploy/mediad.toml does not pass check-config"
env -i PATH=/usr/bin:/bin MEDIAD_INIT=auto MEDIAD_HTTP=$H MEDIAD_RTMP=127.0.0.1:$RTMP_PORT MEDIAD_RECORD_DIR="$W/rec" \
	unshare --pid --fork --mount-proc setpriv --reuid $UID_ --regid $UID_ --clear-groups \
	"$BIN/mediad" --config "$REPO/deploy/mediad.toml" >"$W/log" 2>&1 </dev/null &
NS=$!
for _ in $(seq 150); do [ "$(code /readyz)" = 200 ] && break; kill -0 $NS 2>/dev/null || break; sleep 0.1; done
[ "$(code /readyz)" = 200 ] || fail "startup probe: /readyz never answered 200"
INIT=$(pgrep -P $NS) || fail "no process in the namespace"
[ "$(awk '/^NSpid/{print $NF}' /proc/$INIT/status)" = 1 ] || fail "mediad (host PID $INIT) is not PID 1 of its namespace"
[ "$(awk '/^Uid/{print $2}' /proc/$INIT/status)" = $UID_ ] || fail "mediad runs as uid $(awk '/^Uid/{print $2}' /proc/$INIT/status), want $UID_"
[ "$(status | jq -r .version)" = ct-a ] || fail "serving $(status | jq -r .version), want ct-a"
ok "startup probe passed: mediad is PID 1 of its namespace as uid $UID_, serving ct-a"

pub0=$(date +%s%N)
ffmpeg -nostdin -loglevel warning -re -stream_loop -1 -i "$W/src.flv" -t 60 -c copy \
	-f flv "rtmp://127.0.0.1:$RTMP_PORT/live/ct" >"$W/ffmpeg.log" 2>&1 &
FF=$!
for _ in $(seq 100); do
	[ "$(status | jq '[.streams[] | select(.live)] | length')" = 1 ] 2>/dev/null && break
	sleep 0.1
done
[ "$(status | jq '[.streams[] | select(.live)] | length')" = 1 ] || fail "publisher did not go live"
ok "publisher live on rtmp://127.0.0.1:$RTMP_PORT/live/ct"

# --- in-place upgrades, as deploy/README.md does them -----------------------------------
n=0
for v in b a b; do
	n=$((n + 1))
	sleep 2
	old=$(status | jq .pid)
	frames=$(status | jq '.streams[0].stats.video_frames')
	as_user sh -c "cp '$W/mediad-$v' '$BIN/mediad.new' && mv '$BIN/mediad.new' '$BIN/mediad'" || fail "upgrade $n: installing as uid $UID_"
	out=$(as_user "$BIN/mediad" upgrade --http $H 2>&1) || fail "upgrade $n: $out"
	new=$(status | jq .pid)
	for _ in $(seq 50); do [ "$new" != "$old" ] && break; sleep 0.1; new=$(status | jq .pid); done
	[ "$new" != "$old" ] && [ "$(status | jq -r .version)" = "ct-$v" ] || fail "upgrade $n: serving pid $new $(status | jq -r .version)"
	kill -0 $INIT 2>/dev/null || fail "upgrade $n: PID 1 of the namespace is gone"
	kill -0 $FF 2>/dev/null || fail "upgrade $n: publisher exited"
	for _ in $(seq 50); do [ "$(status | jq '.streams[0].stats.video_frames')" -gt "$frames" ] && break; sleep 0.1; done
	[ "$(status | jq '.streams[0].stats.video_frames')" -gt "$frames" ] || fail "upgrade $n: the stream stopped"
	ok "in-place upgrade $n as uid $UID_: $out"
done
[ "$(status | jq .generation)" = 4 ] && [ "$(status | jq .upgrade_counts.success)" = 3 ] ||
	fail "after three upgrades: generation $(status | jq .generation), upgrades $(status | jq -c .upgrade_counts)"
ok "namespace alive, generation 4, history of 3 successful upgrades"

# --- preStop, then SIGTERM --------------------------------------------------------
sleep 1
out=$("$BIN/mediad" drain --http $H --wait 2s 2>&1) || fail "preStop drain: $out"
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
