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

# --- what these scripts assume of the host, each checked by name ------------

# need_root WHY: running as root.
need_root() { [ "$(id -u)" = 0 ] || fail "must run as root ($1)"; }

# need_tools TOOL...: every tool is on PATH.
need_tools() {
	for c in "$@"; do
		command -v "$c" >/dev/null || fail "$c not found (scripts/test.sh installs it)"
	done
}

# ports_free PORT...: the fixed test ports are free (the namespaces share
# the host's network).
ports_free() {
	for p in "$@"; do
		! listening "$p" || fail "port $p is in use (a TCP socket listens on it); set RTMP_PORT/ADMIN_PORT to free ones"
	done
}

# cgroup2_dir: the host's cgroup v2 mount: /sys/fs/cgroup on a unified host,
# /sys/fs/cgroup/unified on a hybrid one. Fails naming both when neither is.
cgroup2_dir() {
	local d
	for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
		if [ "$(stat -fc %T $d 2>/dev/null)" = cgroup2fs ]; then
			[ -w "$d" ] || fail "cgroup v2 mount $d is not writable (read-only /sys/fs/cgroup?)"
			echo "$d"
			return
		fi
	done
	fail "no cgroup v2 mount: neither /sys/fs/cgroup nor /sys/fs/cgroup/unified is cgroup2fs (a v1-only host)"
}

# host_devices: the device nodes a container's /dev gets from the host.
CONTAINER_DEVICES="null zero full random urandom tty"
host_devices() {
	local n
	for n in $CONTAINER_DEVICES; do
		[ -c "/dev/$n" ] || fail "host /dev/$n is not a character device; a container's minimal /dev binds it"
	done
}

# on_root_fs PATH...: each path (after symlinks) lives on the filesystem
# mounted at /, so an overlay of / shows it (an overlay does not include
# the host's other mounts).
on_root_fs() {
	local p m
	for p in "$@"; do
		m=$(stat -c %m "$(readlink -f "$p")" 2>/dev/null) || fail "$p not found"
		[ "$m" = / ] || fail "$p lives on the mount $m, which an overlay of / does not show inside the container"
	done
}

# namespaces_work: this kernel and its seccomp/LSM policy let root make the
# namespaces and the overlay the containers use.
namespaces_work() {
	local out
	out=$(unshare --mount --pid --fork --uts --ipc --cgroup --propagation private sh -c '
		d=$(mktemp -d) && mkdir "$d/l" "$d/u" "$d/w" "$d/m" &&
		mount -t tmpfs tmpfs "$d/u" && mkdir "$d/u/u" "$d/u/w" &&
		mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u/u,workdir=$d/u/w" "$d/m"
		rc=$?; umount "$d/m" 2>/dev/null; umount "$d/u" 2>/dev/null; rm -rf "$d"; exit $rc' 2>&1) ||
		fail "cannot make mount/PID/UTS/IPC/cgroup namespaces with an overlay mount: ${out:-unshare failed}"
}

# --- waiting: for the thing itself, with a deadline -------------------------

# wait_until [-p PID] SECONDS WHAT CMD...: runs CMD every 0.1 s until it
# succeeds. Fails naming WHAT once SECONDS have passed, or at once when
# process PID, the one that would provide it, has exited.
wait_until() {
	# Locals are prefixed: CMD runs in this function's scope and may set
	# globals of its own (bash scoping is dynamic).
	local _w_pid=
	if [ "$1" = -p ]; then
		_w_pid=$2
		shift 2
	fi
	local _w_secs=$1 _w_what=$2
	shift 2
	local _w_end=$((${EPOCHREALTIME/./} + _w_secs * 1000000))
	until "$@"; do
		if [ -n "$_w_pid" ] && ! kill -0 "$_w_pid" 2>/dev/null; then
			fail "gave up waiting for $_w_what: process $_w_pid, which was to provide it, has exited"
		fi
		[ "${EPOCHREALTIME/./}" -lt $_w_end ] || fail "gave up waiting for $_w_what after ${_w_secs}s"
		sleep 0.1
	done
}

# ns_init PID...: prints the first PID that is PID 1 of a PID namespace of
# its own (the last field of NSpid), which a launcher's set-up commands
# and the launcher itself are not.
ns_init() {
	local p
	for p in "$@"; do
		if [ "$(awk '/^NSpid/{print $NF}' "/proc/$p/status" 2>/dev/null)" = 1 ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# listening PORT: a TCP socket of this network namespace listens on PORT,
# on any address (read from /proc, so that it needs no package).
listening() {
	awk -v port="$(printf '%04X' "$1")" '
		FNR > 1 && $4 == "0A" && substr($2, length($2) - 3) == port { found = 1 }
		END { exit !found }' /proc/net/tcp /proc/net/tcp6
}

# http_code URL: the status code of a GET (000 when nothing answers).
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" || true; }

# --- a container's filesystem, whatever the host's layout -------------------

# container_fs ROOT: mounts what a container runtime gives a container over
# ROOT, instead of whatever the host's / happens to carry: a minimal /dev
# (a tmpfs with the host's null, zero, full, random, urandom and tty bound
# in, /dev/shm and the fd links), and a tmpfs on /run and on /tmp. Run it in
# the container's own mount namespace (private propagation), before
# entering ROOT.
container_fs() {
	local r=$1 n
	mount -t tmpfs -o mode=755,nosuid,size=1m tmpfs "$r/dev"
	for n in $CONTAINER_DEVICES; do
		touch "$r/dev/$n"
		mount --bind "/dev/$n" "$r/dev/$n"
	done
	mkdir "$r/dev/shm"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/dev/shm"
	ln -s /proc/self/fd "$r/dev/fd"
	ln -s /proc/self/fd/0 "$r/dev/stdin"
	ln -s /proc/self/fd/1 "$r/dev/stdout"
	ln -s /proc/self/fd/2 "$r/dev/stderr"
	mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$r/run"
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$r/tmp"
}

# overlay_root W: a throw-away overlay of the host's / at W/root, its
# changes kept in a tmpfs at W/ovl. Same rules as container_fs.
overlay_root() {
	local w=$1
	mkdir -p "$w/ovl" "$w/root"
	mount -t tmpfs tmpfs "$w/ovl"
	mkdir "$w/ovl/u" "$w/ovl/w"
	mount -t overlay overlay -o "lowerdir=/,upperdir=$w/ovl/u,workdir=$w/ovl/w" "$w/root"
}
