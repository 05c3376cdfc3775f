#!/bin/bash
# systemd-test.sh runs mediad under a real systemd (252+) and upgrades it
# with `systemctl reload` while an RTMP publisher streams: every reload must
# move MainPID to the new process and keep the unit active, a broken binary
# must make the reload fail with the old process still serving, the stream
# must never drop, and the recording must be one readable file.
#
# systemd runs as PID 1 of new PID/mount/UTS/IPC/cgroup namespaces, over a
# throw-away overlay of / (see /work/shared/systemd-in-ci.md); the host's
# files are not changed. What it assumes of the host is checked first, each
# by name: root; cgroup v2 (a unified host, or a hybrid one's v2 mount at
# /sys/fs/cgroup/unified); namespaces and overlay mounts allowed; the host's
# /dev/null, zero, full, random, urandom and tty, which the container's own
# minimal /dev binds (nothing else of the host's /dev, /run or /tmp is seen
# inside); systemd's binaries on the root filesystem; the test ports free
# (it shares the host network). Every step waits for what it uses (PID 1,
# systemd's bus, MainPID, the PID file, the ports) with a deadline, and a
# failure prints PID 1's console log and journal. Needs go, ffmpeg/ffprobe,
# curl, jq, unshare/nsenter.
#
#   sudo scripts/systemd-test.sh
#   sudo scripts/systemd-test.sh --preflight   # only check what it assumes of the host
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
	# PID 1's own log: on its console (boot.log) until journald runs, in the
	# journal after; the journal files are in $W, readable with PID 1 gone.
	if [ -s "${W:-/nonexistent}/boot.log" ]; then
		echo "--- systemd's console: PID 1's log before journald ran (last 40 lines) ---"
		tail -n 40 "$W/boot.log"
	fi
	[ -d "${W:-/nonexistent}/journal" ] || return 0 # systemd was not started
	mapfile -t jf < <(find "$W/journal" -name '*.journal')
	if ((${#jf[@]})); then
		local f args=()
		for f in "${jf[@]}"; do args+=(--file "$f"); done
		echo "--- PID 1's journal (last 40 lines) ---"
		journalctl "${args[@]}" --no-pager -o short-monotonic _PID=1 2>&1 | tail -n 40
		echo "--- journal of $U (last 40 lines) ---"
		journalctl "${args[@]}" --no-pager -o short-monotonic -u $U 2>&1 | tail -n 40
	else
		echo "--- no journal: journald never wrote one to /run/log/journal ---"
	fi
	if [ -n "${PID1:-}" ] && kill -0 "$PID1" 2>/dev/null; then
		echo "--- jobs and failed units ---"
		$IN systemctl list-jobs --no-pager 2>&1 | tail -n 10
		$IN systemctl --failed --no-pager 2>&1 | tail -n 10
	fi
	if [ -s "${W:-/nonexistent}/ffmpeg.log" ]; then
		echo "--- ffmpeg publisher log ---"
		tail -n 20 "$W/ffmpeg.log"
	fi
}

# What this test assumes of the host, checked first (--preflight stops here).
need_root "it boots systemd in namespaces"
host_devices
CG=$(cgroup2_dir)
namespaces_work
ports_free $RTMP_PORT $ADMIN_PORT
[ "${1:-}" != --preflight ] || exit 0
need_tools go ffmpeg ffprobe unshare nsenter curl jq systemctl journalctl
[ -x /lib/systemd/systemd ] || fail "/lib/systemd/systemd not found (Debian package systemd)"
# Run inside the container, from the overlay of /: they must be on the root
# filesystem, not on a mount of their own that the overlay would not show.
on_root_fs /lib/systemd/systemd /bin/sh /bin/kill "$(command -v systemctl)" "$(command -v journalctl)" "$(command -v awk)"

W=$(mktemp -d /tmp/mediad-sdtest.XXXXXX)
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
# The container gets its own /dev, /run and /tmp (container_fs), whatever the
# host mounts there, and its cgroup root is a fresh cgroup under the host's v2
# mount. Its journal lives in /run/log/journal, a directory of $W bound in, so
# that a failure report can read it from the host even when PID 1 is gone.
mkdir "$CGD" "$W/journal"
(
	echo $BASHPID >"$CGD/cgroup.procs" # this cgroup becomes the container's cgroup root
	exec unshare --mount --propagation private bash -c "set -e
		NAME=$NAME; . '$REPO/scripts/lib.sh'
		overlay_root $W
		container_fs $W/root
		mkdir -p $W/root/run/log/journal
		mount --bind $W/journal $W/root/run/log/journal
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
boot0=${EPOCHREALTIME/./}
since_boot() { echo "$(((${EPOCHREALTIME/./} - boot0) / 1000)) ms"; }

# pid1_found: the host PID of the namespace's PID 1, once it is in its cgroup.
pid1_found() {
	PID1=$(ns_init $(cat "$CGD/init.scope/cgroup.procs" 2>/dev/null)) || return 1
	IN="nsenter -t $PID1 -m -p -u -i -C -r -w"
	ROOT=/proc/$PID1/root # the overlay, as the container sees it
}
wait_until -p $BOOT 30 "systemd to start as PID 1 of the namespace (in $CGD/init.scope)" pid1_found
t_pid1=$(since_boot)
# PID 1 existing is not systemd answering: its private bus socket comes a
# moment later, and a systemctl that runs first fails at once ("Failed to
# connect to bus"), --wait or not.
wait_until -p $PID1 30 "systemd's bus socket /run/systemd/private" test -S "$ROOT/run/systemd/private"
t_bus=$(since_boot)
state=$(timeout 60 $IN systemctl is-system-running --wait 2>&1) || true
[ "$state" = running ] || fail "systemd is \"$state\" after is-system-running --wait, want running; failed units: $($IN systemctl --failed --plain --no-legend 2>&1 | tr '\n' ';')"
ok "systemd booted in namespaces (host PID $PID1): PID 1 after $t_pid1, bus after $t_bus, running after $(since_boot)"

mainpid() { $IN systemctl show -p MainPID --value $U; }
status() { curl -fsS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/api/status"; }
served_version() { status | jq -r .version; }
# main_moved OLD: MainPID names a process other than OLD (set in $pid).
main_moved() { pid=$(mainpid) && [ -n "$pid" ] && [ "$pid" != 0 ] && [ "$pid" != "$1" ]; }
pidfile_names() { [ "$(cat "$ROOT/run/mediad/mediad.pid" 2>/dev/null)" = "$1" ]; }
serves() { [ "$(served_version 2>/dev/null)" = "$1" ]; }
# A successor is re-parented to systemd once its parent, the old process, has
# exited; until then systemd 252 deems it "not our child" and SIGKILLs it on
# stop. ExecReload waits for that exit before it returns.
parent_is_systemd() { [ "$($IN awk '/^PPid/{print $2}' /proc/$1/status 2>/dev/null)" = 1 ]; }
# install puts a binary at the unit's path the way an operator must: a new
# file renamed over the old, so a process starting it never sees half.
install_bin() {
	cp "$1" "$ROOT/usr/local/bin/.mediad.new"
	mv -f "$ROOT/usr/local/bin/.mediad.new" "$ROOT/usr/local/bin/mediad"
}

# --- start and publish ----------------------------------------------------------
out=$(timeout 30 $IN systemctl start $U 2>&1) || fail "systemctl start $U: $out"
[ "$($IN systemctl is-active $U)" = active ] || fail "$U not active after start"
wait_until 10 "the MainPID of $U" main_moved 0
wait_until -p "$BOOT" 10 "the PID file /run/mediad/mediad.pid to name MainPID $pid" pidfile_names "$pid"
wait_until 10 "mediad to listen on :$RTMP_PORT (RTMP) and :$ADMIN_PORT (admin)" eval "listening $RTMP_PORT && listening $ADMIN_PORT"
serves sd-a || fail "serving version $(served_version), want sd-a"
ok "start: active (Type=notify saw READY=1), MainPID $pid, version sd-a"

ffmpeg -nostdin -loglevel warning -re -stream_loop -1 -i "$W/src.flv" -t "$PUBLISH_SECONDS" -c copy \
	-f flv "rtmp://127.0.0.1:$RTMP_PORT/live/sd" >"$W/ffmpeg.log" 2>&1 &
FF=$!
REC=$ROOT/var/lib/mediad/recordings/live/sd
is_live() {
	[ "$(status | jq '[.streams[] | select(.live)] | length')" -ge 1 ] 2>/dev/null &&
		[ -n "$(find "$REC" -type f -size +0 2>/dev/null)" ]
}
wait_until -p $FF 10 "live/sd to be live in /api/status with a non-empty recording under $REC" is_live
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
	wait_until 10 "reload $n: MainPID to move from $old" main_moved "$old"
	new=$pid
	wait_until 10 "reload $n: the PID file to name MainPID $new" pidfile_names "$new"
	wait_until 10 "reload $n: the new main process $new to be a child of systemd (PID 1)" parent_is_systemd "$new"
	[ "$($IN systemctl is-active $U)" = active ] || fail "reload $n: $U not active"
	wait_until 10 "reload $n: /api/status to report version sd-$v (it says $(served_version))" serves "sd-$v"
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
	serves sd-b || fail "after failed reload ($broken) serving $(served_version), want sd-b"
	[ "$(cat "$ROOT/run/mediad/mediad.pid")" = "$old" ] || fail "failed reload ($broken) changed the PID file"
	kill -0 $FF 2>/dev/null || fail "failed reload ($broken): publisher exited"
	ok "reload to mediad-$broken failed, MainPID still $old, active, serving sd-b"
done
last=$(status | jq -r '.upgrades[-1].outcome')
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
verdict=$(status | jq -r '.upgrades[-1].error')
case "$verdict" in *"/etc/mediad/mediad.toml"*"line 2"*) ;; *) fail "broken config: last verdict is \"$verdict\", want the parse error" ;; esac
cp "$W/mediad.toml.good" "$ROOT/etc/mediad/mediad.toml"
ok "reload with a broken config failed: MainPID still $old, active, verdict \"${verdict##*: toml: }\""

# --- the stream and its recording -----------------------------------------------
wait $FF && rc=0 || rc=$?
FF=
[ $rc = 0 ] || fail "publisher exited $rc: the stream dropped"
ok "publisher ran ${PUBLISH_SECONDS}s and exited 0"

# The recording is finalised once the server has seen the publisher leave.
no_streams() { [ "$(status | jq '.streams | length')" = 0 ]; }
wait_until 10 "live/sd to leave /api/status after the publisher exited (the recording is finalised then)" no_streams
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
