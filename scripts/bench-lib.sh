# bench-lib.sh: what the benchmark scripts that drive mediad with rtmpload
# share (bench-load.sh, bench-join.sh). Source it after setting NAME and
# KEEP; bench_start then makes $tmp, builds mediad and rtmpload into it, and
# arranges for mediad_pid and load_pid to be stopped on exit.

die() { echo "$NAME: $*" >&2; exit 1; }

# seconds converts 40s, 2m or 40 to whole seconds.
seconds() {
	case $1 in
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}

bench_cleanup() {
	# Only the processes this script started, by PID.
	[[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null || true
	[[ -n $mediad_pid ]] && kill "$mediad_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	if [[ $KEEP == 1 ]]; then
		echo "$NAME: kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}

bench_start() {
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXX")
	mediad_pid="" load_pid=""
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	echo "$NAME: building into $tmp" >&2
	(cd "$repo" && go build -o "$tmp/mediad" ./cmd/mediad && go build -o "$tmp/rtmpload" ./cmd/rtmpload)
}

# rss_kib PID: resident set size in KiB.
rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# wait_log LOG MESSAGE FIELD: prints FIELD of the first line of mediad's
# JSON log LOG that logs MESSAGE, once there is one (10 s at most, and not
# once mediad has exited).
wait_log() {
	local v
	for _ in $(seq 1 200); do
		v=$(jq -r --arg m "$2" --arg f "$3" 'select(.message == $m) | .[$f]' "$1" 2>/dev/null | head -n1)
		if [[ -n $v ]]; then
			echo "$v"
			return 0
		fi
		kill -0 "$mediad_pid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}
