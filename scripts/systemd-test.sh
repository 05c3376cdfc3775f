#!/bin/bash
# systemd-test.sh runs mediad under a real systemd (252+) and upgrades it
# with `systemctl reload` while an RTMP publisher streams: every reload must
# move MainPID to the new process and keep the unit active, a broken binary
# must make the reload fail with the old process still serving, the stream
# must never drop, and the recording must be one readable file.
#
# systemd runs as PID 1 of new PID/mount/UTS/IPC/cgroup namespaces, over a
# throw-away overlay of / (see /work/shared/systemd-in-ci.md); the host's
# files are not changed. It shares the host network: the test ports must be
# free. Needs root, unshare/nsenter, ffmpeg/ffprobe, curl, jq, go.
#
#   sudo scripts/systemd-test.sh
#   RTMP_PORT=29450 ADMIN_PORT=29451 sudo scripts/systemd-test.sh
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
RTMP_PORT=${RTMP_PORT:-19450}
ADMIN_PORT=${ADMIN_PORT:-19451}
PUBLISH_SECONDS=${PUBLISH_SECONDS:-30}
U=mediad.service
START=$SECONDS

NAME=systemd-test
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
on_fail() {
	if [ -n "${PID1:-}" ]; then
		echo "--- journal of $U (last 40 lines) ---"
		$IN journalctl -b --no-pager -o short-monotonic -u $U 2>&1 | tail -n 40
	fi
	if [ -s "${W:-/nonexistent}/ffmpeg.log" ]; then
		echo "--- ffmpeg publisher log ---"
		tail -n 20 "$W/ffmpeg.log"
	fi
}

need_root "it boots systemd in namespaces" go ffmpeg ffprobe unshare nsenter curl jq ss
[ -x /lib/systemd/systemd ] || fail "/lib/systemd/systemd not found"
ports_free $RTMP_PORT $ADMIN_PORT

W=$(mktemp -d /tmp/mediad-sdtest.XXXXXX)
CG=/sys/fs/cgroup
[ "$(stat -fc %T $CG)" = cgroup2fs ] || CG=$CG/unified # hybrid host: use its v2 mount
[ "$(stat -fc %T $CG 2>/dev/null)" = cgroup2fs ] || fail "no cgroup v2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified"
CGD=$CG/mediad-sdtest.$$
BOOT= PID1= FF=

cleanup() {
	set +e
	[ -n "$FF" ] && kill "$FF" 2>/dev/null && wait "$FF" 2>/dev/null
	# RTMIN+4 is systemd's power-off; SIGTERM to PID 1 would mean re-execute.
	[ -n "$PID1" ] && kill -s RTMIN+4 "$PID1" 2>/dev/null
	if [ -n "$BOOT" ]; then
		for _ in $(seq 100); do kill -0 "$BOOT" 2>/dev/null || break; sleep 0.1; done
		# Power-off did not finish: end what is left of the instance.
		if kill -0 "$BOOT" 2>/dev/null && [ -d "$CGD" ]; then
			echo 1 >"$CGD/cgroup.kill" 2>/dev/null
		fi
		wait "$BOOT" 2>/dev/null
	fi
	[ -d "$CGD" ] && find "$CGD" -depth -type d -exec rmdir {} \; 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- builds and media ---------------------------------------------------------
say "building mediad sd-a and sd-b"
(cd "$REPO" && go build -ldflags "-X main.version=sd-a" -o "$W/mediad-a" ./cmd/mediad &&
	go build -ldflags "-X main.version=sd-b" -o "$W/mediad-b" ./cmd/mediad) || fail "go build"
printf '#!/bin/sh\n# a binary that cannot start: the upgrade to it must roll back\nexit 3\n' >"$W/mediad-broken"
chmod +x "$W/mediad-broken"
ffmpeg -nostdin -loglevel error -f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
	-t 4 -c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "$W/src.flv" || fail "encode source"

# The unit under test is the shipped one with test ports; DefaultDependencies
# and network-online would pull units of the host image into the container,
# and Restart= would hide a crash behind a restart.
sed -e "s#127\.0\.0\.1:8080#127.0.0.1:$ADMIN_PORT#g" \
	-e '/^After=network-online.target/d' -e '/^Wants=network-online.target/d' \
	-e 's/^\[Unit\]$/[Unit]\nDefaultDependencies=no/' \
	-e 's/^Restart=.*/Restart=no/' \
	"$REPO/scripts/mediad.service" >"$W/$U"
[ "$(grep -c "127.0.0.1:$ADMIN_PORT" "$W/$U")" = 2 ] && grep -q -- '--config /etc/mediad/mediad.toml' "$W/$U" &&
	grep -q '^DefaultDependencies=no' "$W/$U" || fail "test unit: substitutions did not apply to scripts/mediad.service"
# The shipped config, with the test's RTMP port.
sed -e "s#^rtmp = .*#rtmp = \"127.0.0.1:$RTMP_PORT\"#" "$REPO/scripts/mediad.toml" >"$W/mediad.toml"
grep -q "^rtmp = \"127.0.0.1:$RTMP_PORT\"" "$W/mediad.toml" || fail "test config: substitution did not apply to scripts/mediad.toml"
"$W/mediad-a" check-config --config "$W/mediad.toml" >/dev/null || fail "scripts/mediad.toml does not pass check-config"

# --- boot systemd -------------------------------------------------------------
mkdir -p "$W/ovl" "$W/root"
mkdir "$CGD"
(
	echo $BASHPID >"$CGD/cgroup.procs" # this cgroup becomes the container's cgroup root
	exec unshare --mount --propagation private bash -c "set -e
		mount -t tmpfs tmpfs $W/ovl; mkdir $W/ovl/u $W/ovl/w
		mount -t overlay overlay -o lowerdir=/,upperdir=$W/ovl/u,workdir=$W/ovl/w $W/root
		printf '[Unit]\nWants=systemd-journald.service\n' > $W/root/etc/systemd/system/ci.target
		cp $W/$U $W/root/etc/systemd/system/
		mkdir -p $W/root/etc/mediad
		cp $W/mediad.toml $W/root/etc/mediad/
		mkdir -p $W/root/usr/local/bin
		cp $W/mediad-a $W/root/usr/local/bin/mediad
		exec unshare --pid --fork --uts --ipc --cgroup --root=$W/root --wd=/ env -i container=mediad-sdtest \
			/lib/systemd/systemd --unit=ci.target --log-target=journal systemd.unified_cgroup_hierarchy=1"
) </dev/null >"$W/boot.log" 2>&1 &
BOOT=$!
for _ in $(seq 300); do
	for p in $(cat "$CGD/init.scope/cgroup.procs" 2>/dev/null); do # host PID of the namespace's PID 1
		[ "$(awk '/^NSpid/{print $NF}' /proc/$p/status 2>/dev/null)" = 1 ] && PID1=$p
	done
	[ -n "$PID1" ] && break
	kill -0 $BOOT 2>/dev/null || break
	sleep 0.1
done
[ -n "$PID1" ] || fail "systemd did not boot: $(cat "$W/boot.log")"
IN="nsenter -t $PID1 -m -p -u -i -C -r -w"
ROOT=/proc/$PID1/root # the overlay, as the container sees it
timeout 60 $IN systemctl is-system-running --wait >/dev/null || true
state=$($IN systemctl is-system-running || true)
[ "$state" = running ] || fail "systemd is $state, want running"
ok "systemd booted in namespaces (host PID $PID1)"

mainpid() { $IN systemctl show -p MainPID --value $U; }
served_version() { curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/api/status" | jq -r .version; }
# install puts a binary at the unit's path the way an operator must: a new
# file renamed over the old, so a process starting it never sees half.
install_bin() {
	cp "$1" "$ROOT/usr/local/bin/.mediad.new"
	mv -f "$ROOT/usr/local/bin/.mediad.new" "$ROOT/usr/local/bin/mediad"
}

# --- start and publish ----------------------------------------------------------
timeout 30 $IN systemctl start $U || fail "systemctl start $U"
[ "$($IN systemctl is-active $U)" = active ] || fail "$U not active after start"
pid=$(mainpid)
[ "$pid" != 0 ] && [ "$(cat "$ROOT/run/mediad/mediad.pid")" = "$pid" ] || fail "MainPID $pid does not match the PID file"
[ "$(served_version)" = sd-a ] || fail "serving version $(served_version), want sd-a"
ok "start: active (Type=notify saw READY=1), MainPID $pid, version sd-a"

ffmpeg -nostdin -loglevel warning -re -stream_loop -1 -i "$W/src.flv" -t "$PUBLISH_SECONDS" -c copy \
	-f flv "rtmp://127.0.0.1:$RTMP_PORT/live/sd" >"$W/ffmpeg.log" 2>&1 &
FF=$!
REC=$ROOT/var/lib/mediad/recordings/live/sd
live=
for _ in $(seq 100); do
	if [ "$(curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/api/status" | jq '.streams | length')" -ge 1 ] 2>/dev/null &&
		[ -n "$(find "$REC" -type f -size +0 2>/dev/null)" ]; then
		live=1
		break
	fi
	kill -0 $FF 2>/dev/null || break
	sleep 0.1
done
[ -n "$live" ] || fail "publisher did not go live"
ok "publisher live on rtmp://127.0.0.1:$RTMP_PORT/live/sd, recording under /var/lib/mediad/recordings/live/sd"

# --- upgrades ------------------------------------------------------------------
n=0
for v in b a b; do
	n=$((n + 1))
	sleep 2 # let the stream run under each process
	old=$(mainpid)
	install_bin "$W/mediad-$v"
	t0=$(date +%s%N)
	out=$(timeout 120 $IN systemctl reload $U 2>&1) || fail "reload $n (to sd-$v) exited non-zero: $out"
	ms=$((($(date +%s%N) - t0) / 1000000))
	new=$(mainpid)
	[ "$new" != "$old" ] && [ "$new" != 0 ] || fail "reload $n: MainPID stayed $old"
	[ "$(cat "$ROOT/run/mediad/mediad.pid")" = "$new" ] || fail "reload $n: PID file does not name MainPID $new"
	# Re-parented to systemd before it read the PID file: otherwise systemd
	# 252 deems it "not our child" and SIGKILLs it on stop.
	ppid=$($IN awk '/^PPid/{print $2}' /proc/$new/status)
	[ "$ppid" = 1 ] || fail "reload $n: new main process $new has parent $ppid, want systemd (1)"
	[ "$($IN systemctl is-active $U)" = active ] || fail "reload $n: $U not active"
	[ "$(served_version)" = "sd-$v" ] || fail "reload $n: serving $(served_version), want sd-$v"
	kill -0 $FF 2>/dev/null || fail "reload $n: publisher exited"
	ok "reload $n: exit 0 in $ms ms, MainPID $old -> $new (child of systemd), active, serving sd-$v"
done

# Two broken builds. The first cannot even run `mediad upgrade`, so
# ExecReload fails at once. The second has a working upgrade client (a good
# build's) but its server exits 3: the old process starts it, sees it die,
# rolls back and keeps serving, and the client reports the failure.
cp "$W/mediad-b" "$ROOT/usr/local/bin/.mediad-client"
printf '#!/bin/sh\n[ "$1" = upgrade ] && exec /usr/local/bin/.mediad-client "$@"\nexit 3\n' >"$W/mediad-broken-server"
chmod +x "$W/mediad-broken-server"
for broken in broken broken-server; do
	sleep 2
	old=$(mainpid)
	install_bin "$W/mediad-$broken"
	if out=$(timeout 120 $IN systemctl reload $U 2>&1); then
		fail "reload to mediad-$broken exited 0"
	fi
	[ "$(mainpid)" = "$old" ] || fail "failed reload ($broken) moved MainPID $old -> $(mainpid)"
	[ "$($IN systemctl is-active $U)" = active ] || fail "failed reload ($broken) left $U $($IN systemctl is-active $U)"
	[ "$(served_version)" = sd-b ] || fail "after failed reload ($broken) serving $(served_version), want sd-b"
	[ "$(cat "$ROOT/run/mediad/mediad.pid")" = "$old" ] || fail "failed reload ($broken) changed the PID file"
	kill -0 $FF 2>/dev/null || fail "failed reload ($broken): publisher exited"
	ok "reload to mediad-$broken failed, MainPID still $old, active, serving sd-b"
done
last=$(curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/api/status" | jq -r '.upgrades[-1].outcome')
[ "$last" != success ] && [ "$last" != null ] || fail "last upgrade outcome is $last, want the rolled-back one"
ok "the broken server's upgrade was attempted and rolled back (outcome $last)"
install_bin "$W/mediad-b"

# A config that does not parse: the reload is the upgrade, so it fails, the
# verdict in the journal names the line, and the old process serves on.
cp "$ROOT/etc/mediad/mediad.toml" "$W/mediad.toml.good"
printf 'segment = "1h"\nidle-timeout = 30s\n' >"$ROOT/etc/mediad/mediad.toml"
sleep 1
old=$(mainpid)
if out=$(timeout 120 $IN systemctl reload $U 2>&1); then
	fail "reload with a broken config exited 0"
fi
[ "$(mainpid)" = "$old" ] && [ "$($IN systemctl is-active $U)" = active ] ||
	fail "reload with a broken config: MainPID $old -> $(mainpid), $U $($IN systemctl is-active $U)"
kill -0 $FF 2>/dev/null || fail "reload with a broken config: publisher exited"
verdict=$(curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/api/status" | jq -r '.upgrades[-1].error')
case "$verdict" in *"/etc/mediad/mediad.toml"*"line 2"*) ;; *) fail "broken config: last verdict is \"$verdict\", want the parse error" ;; esac
cp "$W/mediad.toml.good" "$ROOT/etc/mediad/mediad.toml"
ok "reload with a broken config failed: MainPID still $old, active, verdict \"${verdict##*: toml: }\""

# --- the stream and its recording -----------------------------------------------
wait $FF && rc=0 || rc=$?
FF=
[ $rc = 0 ] || fail "publisher exited $rc: the stream dropped"
ok "publisher ran ${PUBLISH_SECONDS}s and exited 0"

# The recording is finalised once the server has seen the publisher leave.
for _ in $(seq 100); do
	[ "$(curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/api/status" | jq '.streams | length')" = 0 ] && break
	sleep 0.1
done
mapfile -t files < <(find "$REC" -type f | sort)
[ ${#files[@]} = 1 ] || fail "want one recording under $REC, found ${#files[@]}: ${files[*]}"
perr=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "${files[0]}" 2>&1 >"$W/duration") ||
	fail "ffprobe ${files[0]}: $perr"
[ -z "$perr" ] || fail "ffprobe ${files[0]} reports errors: $perr"
dur=$(cat "$W/duration")
ok "one recording, $(basename "${files[0]}"), ${dur}s, ffprobe reads it without error"

# --- stop ----------------------------------------------------------------------
pid=$(mainpid)
procs=$(cat "$CGD/system.slice/$U/cgroup.procs" 2>/dev/null | tr '\n' ' ')
timeout 60 $IN systemctl stop $U || fail "systemctl stop $U"
res=$($IN systemctl show -p Result --value $U)
[ "$res" = success ] || fail "stop: Result=$res, want success (host PIDs in the unit's cgroup before stop: $procs)"
[ ! -e "$ROOT/run/mediad/mediad.pid" ] || fail "stop left the PID file behind"
ok "stop: MainPID $pid stopped, Result=success"

say "$passed passed, 0 failed ($((SECONDS - START))s)"
