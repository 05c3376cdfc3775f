# bench-lib.sh: what the benchmark scripts that drive mediad with rtmpload
# share (bench-load.sh, bench-join.sh; bench-upgrade.sh its helpers only).
# Source it after setting NAME and KEEP; bench_start then makes $tmp,
# builds mediad and rtmpload into it, and arranges for mediad_pid, load_pid
# and every mediad in upgraded_pids (the processes that live upgrades of
# ours started, which are not this shell's children) to be stopped on exit.

die() { echo "$NAME: $*" >&2; exit 1; }

# seconds converts 40s, 2m or 40 to whole seconds.
seconds() {
	case $1 in
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}

alive() { kill -0 "$1" 2>/dev/null; }

# ours PID: PID runs a binary from $tmp. A mediad started by an upgrade is
# not this shell's child, so its PID could be reused once it exits; this
# keeps the cleanup to our own processes.
ours() {
	local exe
	exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
	[[ $exe == "$tmp/"* ]]
}

# stop_upgraded: ends the mediad processes in upgraded_pids that are still
# ours, and waits for them (5 s at most).
stop_upgraded() {
	local pid
	for pid in "${upgraded_pids[@]}"; do
		ours "$pid" && kill "$pid" 2>/dev/null || true
	done
	for _ in $(seq 1 100); do
		local left=0
		for pid in "${upgraded_pids[@]}"; do
			ours "$pid" && left=1
		done
		((left)) || break
		sleep 0.05
	done
	upgraded_pids=()
}

bench_cleanup() {
	# Only the processes this script started, by PID.
	[[ -n $load_pid ]] && kill "$load_pid" 2>/dev/null || true
	[[ -n $mediad_pid ]] && kill "$mediad_pid" 2>/dev/null || true
	[[ -n ${target_pid:-} ]] && kill "$target_pid" 2>/dev/null || true
	stop_upgraded
	wait 2>/dev/null || true
	# Files a script put elsewhere than $tmp (a tmpfs, say): never kept.
	[[ -n ${extra_dir:-} ]] && rm -rf "$extra_dir"
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
	upgraded_pids=()
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

# free_port: a TCP port below the ephemeral range that nothing listens on.
# An upgradable mediad needs explicit ports: the new process finds its
# inherited listeners by the address asked for, so two listeners both asked
# for as 127.0.0.1:0 would be mixed up.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		ss -ltnH "sport = :$p" | grep -q . || break
	done
	echo "$p"
}

# now_ms: the wall clock in milliseconds.
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

# load_report LABEL REPORT LOG RC: rtmpload left its JSON report; when it
# exited RC != 0, the streams that failed, as the report gives them.
load_report() {
	local label=$1 report=$2 log=$3 rc=$4
	[[ -s $report ]] || { cat "$log" >&2; die "$label: rtmpload produced no report (exit $rc)"; }
	if ((rc != 0)); then
		echo "$NAME: $label: rtmpload exit $rc; failures:" >&2
		jq -r '.publishers[], (.player_list // [])[] | select(.state == "failed" or .state == "refused") | "  \(.key): \(.state): \(.error)"' "$report" | head -n 20 >&2 || true # jq's SIGPIPE past 20 lines is no failure
	fi
}

# table: tab-separated lines in aligned columns, where column(1) is installed.
table() { if command -v column >/dev/null; then column -t -s $'\t'; else cat; fi; }
