#!/usr/bin/env bash
# bench-load.sh — measure mediad's CPU and memory per stream under real RTMP
# load from rtmpload (DESIGN.md §9).
#
# Each run builds nothing new: mediad and rtmpload are built once into a
# temporary directory. A run starts mediad (recording off, random port),
# measures its idle RSS, starts rtmpload with N synthetic 2 Mbit/s
# publishers ramped up over RAMP, waits SETTLE after the ramp, then samples
# mediad's CPU (utime+stime from /proc/PID/stat) over WINDOW seconds and its
# RSS (VmRSS from /proc/PID/status) at the end of the window.
#
# Environment (defaults in brackets):
#   N [100]          publishers
#   PLAYERS [0]      players per stream
#   DURATION [40s]   rtmpload run time (s or m suffix, or plain seconds)
#   RAMP [5s]        connection ramp-up
#   SETTLE [2]       seconds after the ramp before sampling starts
#   WINDOW [30]      seconds of CPU sampling; shrunk to fit DURATION
#   BITRATE [2M]     synthetic bitrate per publisher
#   RUNS [1]         repeat and print the median of each figure
#   KEEP [0]         1 keeps the temporary directory (logs, JSON reports)
#   PUSH [0]         1 pushes every stream to a second mediad (the relay
#                    target, measured apart) with --push: the relays' cost
#
# Example: N=100 DURATION=40s RUNS=3 scripts/bench-load.sh
set -euo pipefail

N=${N:-100}
PLAYERS=${PLAYERS:-0}
DURATION=${DURATION:-40s}
RAMP=${RAMP:-5s}
SETTLE=${SETTLE:-2}
WINDOW=${WINDOW:-30}
BITRATE=${BITRATE:-2M}
RUNS=${RUNS:-1}
KEEP=${KEEP:-0}
PUSH=${PUSH:-0}

NAME=bench-load
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

for tool in go jq awk; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || die "N must be a positive integer, got '$N'"
[[ $PLAYERS =~ ^[0-9]+$ ]] || die "PLAYERS must be a non-negative integer, got '$PLAYERS'"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || die "RUNS must be a positive integer, got '$RUNS'"
dur_s=$(seconds "$DURATION")
ramp_s=$(seconds "$RAMP")
[[ $dur_s =~ ^[0-9]+$ && $ramp_s =~ ^[0-9]+$ ]] || die "DURATION and RAMP must be whole seconds (s or m suffix)"
start_s=$(( ramp_s + SETTLE ))
# Leave a second before rtmpload stops, so the window never sees teardown.
if (( start_s + WINDOW + 1 > dur_s )); then
	WINDOW=$(( dur_s - start_s - 1 ))
	(( WINDOW >= 5 )) || die "DURATION $DURATION leaves no steady window after RAMP $RAMP + SETTLE ${SETTLE}s"
	echo "bench-load: window shrunk to ${WINDOW}s to fit DURATION $DURATION" >&2
fi

bench_start

clk_tck=$(getconf CLK_TCK)

# cpu_ticks PID: utime + stime. The command name in field 2 may hold spaces,
# so fields are counted after its closing parenthesis (utime is field 14).
cpu_ticks() {
	local stat
	stat=$(<"/proc/$1/stat")
	stat=${stat##*) }
	awk '{ print $12 + $13 }' <<<"$stat"
}

now() { date +%s.%N; }

results="$tmp/results.tsv"
: >"$results"

run_once() {
	local run=$1
	local log="$tmp/mediad-$run.log" report="$tmp/report-$run.json"
	local push=()
	if [[ $PUSH == 1 ]]; then
		# The target is a second mediad, recording and HLS off: a sink that
		# speaks RTMP, on its own process so that its CPU is not counted.
		"$tmp/mediad" --rtmp 127.0.0.1:0 --http '' --media '' --hls=false --record-dir '' --log-format json >"$tmp/target-$run.log" 2>&1 &
		target_pid=$!
		local taddr
		taddr=$(wait_log "$tmp/target-$run.log" "mediad ready" rtmp) || { cat "$tmp/target-$run.log" >&2; die "relay target did not start"; }
		push=(--push "rtmp://$taddr/live/{key}")
	fi
	"$tmp/mediad" --rtmp 127.0.0.1:0 --http '' --record-dir '' --log-format json "${push[@]}" >"$log" 2>&1 &
	mediad_pid=$!
	local addr
	addr=$(wait_log "$log" "mediad ready" rtmp) || { cat "$log" >&2; die "mediad did not start"; }
	sleep 1
	local idle_kib
	idle_kib=$(rss_kib "$mediad_pid")

	"$tmp/rtmpload" -url "rtmp://$addr/live" -synthetic -bitrate "$BITRATE" \
		-n "$N" -players "$PLAYERS" -duration "${dur_s}s" -ramp "${ramp_s}s" -json >"$report" 2>"$tmp/rtmpload-$run.log" &
	load_pid=$!
	sleep "$start_s"
	local c0 t0 c1 t1 rss
	c0=$(cpu_ticks "$mediad_pid")
	t0=$(now)
	sleep "$WINDOW"
	c1=$(cpu_ticks "$mediad_pid")
	t1=$(now)
	rss=$(rss_kib "$mediad_pid")

	local load_rc=0
	wait "$load_pid" || load_rc=$?
	load_pid=""
	local relays=0
	if [[ $PUSH == 1 ]]; then
		relays=$(grep -c '"relay connected"' "$log" || true)
	fi
	kill "$mediad_pid"
	wait "$mediad_pid" || true
	mediad_pid=""
	if [[ $PUSH == 1 ]]; then
		kill "$target_pid"
		wait "$target_pid" || true
		target_pid=""
		echo "bench-load: run $run: $relays relays connected" >&2
		(( relays >= N )) || die "only $relays of $N relays connected (log $log)"
	fi
	load_report "run $run" "$report" "$tmp/rtmpload-$run.log" "$load_rc"

	local started failed bps gen_cpu elapsed
	read -r started failed bps gen_cpu elapsed < <(jq -r '[.started, (.failed + .refused + .players.failed + .players.refused), .bitrate_bps, .generator_cpu_s, .elapsed_s] | @tsv' "$report")
	awk -v run="$run" -v n="$N" -v started="$started" -v failed="$failed" -v bps="$bps" \
		-v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$clk_tck" \
		-v rss="$rss" -v idle="$idle_kib" -v gen="$gen_cpu" -v elapsed="$elapsed" 'BEGIN {
		win = t1 - t0
		cpu = (c1 - c0) / hz
		streams = started > 0 ? started : n
		printf "%d\t%d\t%d\t%.1f\t%.1f\t%.3f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\n",
			run, started, failed, bps / 1e6, 100 * cpu / win, 1000 * cpu / win / streams,
			rss / 1024, idle / 1024, (rss - idle) / streams, rss / streams, 100 * gen / elapsed, win
	}' >>"$results"
}

header="run\tstarted\tfailed\tMbit/s\tCPU%\tms/s/stream\tRSS_MiB\tidle_MiB\tKiB/stream\traw_KiB/stream\tgen_CPU%\twindow_s"
target_pid=""
echo "bench-load: N=$N PUSH=$PUSH PLAYERS=$PLAYERS BITRATE=$BITRATE DURATION=${dur_s}s RAMP=${ramp_s}s window=${WINDOW}s after ${start_s}s; $(nproc) cores" >&2
for run in $(seq 1 "$RUNS"); do
	run_once "$run"
done

{
	echo -e "$header"
	cat "$results"
	if (( RUNS > 1 )); then
		# Median of each column over the runs.
		awk -F'\t' -v runs="$RUNS" '
		{ for (i = 2; i <= NF; i++) v[i, NR] = $i; nf = NF }
		END {
			printf "median"
			for (i = 2; i <= nf; i++) {
				n = 0
				for (r = 1; r <= runs; r++) a[++n] = v[i, r] + 0
				for (x = 1; x <= n; x++) for (y = x + 1; y <= n; y++) if (a[y] < a[x]) { t = a[x]; a[x] = a[y]; a[y] = t }
				m = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
				if (i == 2 || i == 3) printf "\t%d", m
				else if (i == 6) printf "\t%.3f", m
				else printf "\t%.1f", m
			}
			printf "\n"
		}' "$results"
	fi
} | table

echo
awk -F'\t' -v runs="$RUNS" -v n="$N" -v players="$PLAYERS" '
{ cpu[NR] = $5; ms[NR] = $6; kib[NR] = $9; raw[NR] = $10; mbps[NR] = $4; rss[NR] = $7; idle[NR] = $8 }
function med(arr,   i, j, t, b, k) {
	for (i = 1; i <= runs; i++) b[i] = arr[i] + 0
	for (i = 1; i <= runs; i++) for (j = i + 1; j <= runs; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
	return runs % 2 ? b[(runs + 1) / 2] : (b[runs / 2] + b[runs / 2 + 1]) / 2
}
END {
	label = runs > 1 ? sprintf("median of %d runs", runs) : "1 run"
	printf "streams:            %d publishers, %d players each (%s)\n", n, players, label
	printf "total:              %.1f Mbit/s of media\n", med(mbps)
	printf "CPU:                %.1f%% of one core\n", med(cpu)
	printf "CPU per stream:     %.3f ms per second\n", med(ms)
	printf "RSS:                %.1f MiB (idle %.1f MiB)\n", med(rss), med(idle)
	printf "RSS per stream:     %.1f KiB above idle (raw %.1f KiB)\n", med(kib), med(raw)
}' "$results"
