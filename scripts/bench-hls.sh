#!/usr/bin/env bash
# bench-hls.sh — mediad serving LL-HLS (or HTTP-FLV) viewers under real
# load: server CPU and memory per stream and per viewer, the part
# availability delay the viewers see, and, with UPGRADE=1, what live
# upgrades (SIGHUP) do to them.
#
# mediad, rtmpload and hlsload are built once into a temporary directory,
# and ffmpeg encodes the clip every publisher replays: CLIP_SECONDS of
# testsrc2 with noise, 640x360 at 30 fps, H.264 (x264, GOP seconds
# between keyframes, no scene cuts) plus AAC at 64 kbit/s, BITRATE in
# all. Its audio stops 0.1 s early so that the loop is seamless: rtmpload
# starts the next pass after the later track's last frame, and AAC
# padding past the video would leave a hole in the video where it loops,
# which viewers would see as a long part. Each run:
#
#   1. starts mediad (recording off, LL-HLS files on the tmpfs HLS_FS,
#      explicit loopback ports, --pidfile, no per-client
#      connection limit on the media listener: every viewer comes from
#      127.0.0.1), and reads its idle RSS;
#   2. starts rtmpload: N publishers replaying the clip at real time,
#      ramped over RAMP; waits until mediad lists N live streams, then
#      SETTLE seconds (so that every playlist has segments);
#   3. samples mediad's CPU (utime+stime from /proc/PID/stat) over
#      PUB_WINDOW seconds with publishers only, and its RSS;
#   4. starts V viewers per stream with hlsload (several processes when
#      the descriptor limit asks for it: each viewer keeps at most two
#      connections), ramped over RAMP, and waits SETTLE more seconds;
#   5. the steady window: mediad's CPU over WINDOW seconds, its RSS, and
#      the viewers' figures for exactly that window (hlsload reports on
#      SIGUSR1: one report at the window's start, one at its end);
#   6. with UPGRADE=1: SIGHUPS live upgrades, each by SIGHUP to mediad,
#      PAUSE seconds apart; for each, the viewers' report from the SIGHUP
#      to SPAN seconds after it: largest gap between two parts, the stall
#      (gap minus the part's duration), errors, missing and skipped parts;
#   7. stops the viewers, the publishers and mediad.
#
# CPU per viewer is (CPU with viewers − CPU with publishers only) / (N·V);
# RSS likewise. The part delay is defined in cmd/hlsload/tracker.go: from
# the moment the part's last frame should have entered mediad (the
# segment's PROGRAM-DATE-TIME plus the durations of the part and those
# before it) to the moment a viewer waiting for it learned it existed.
# mediad steps date-times on by media time from the broadcast's first
# segment, so rtmpload's lag behind its schedule counts in the delay.
# The issue's target is p99 ≤ 50 ms. With several hlsload processes the
# delay p50 is the median of theirs and the p99 the largest of theirs.
#
# Environment (defaults in brackets):
#   N [100]            publishers
#   V [10]             viewers per stream
#   VIEWER [hls]       hls (LL-HLS, like hls.js in low-latency mode) or flv
#                      (HTTP-FLV): what the viewers are
#   BITRATE [500k]     the clip's total bitrate (video gets BITRATE − 64k)
#   GOP [1]            seconds between keyframes in the clip
#   CLIP_SECONDS [30]  clip length (publishers loop it)
#   RAMP [10]          seconds over which publishers, then viewers, start
#   SETTLE [5]         seconds after each ramp before sampling
#   PUB_WINDOW [10]    seconds of CPU sampling with publishers only
#   WINDOW [30]        seconds of the steady window with viewers
#   UPGRADE [0]        1: live upgrades after the window
#   SIGHUPS [3]        UPGRADE=1: upgrades per run
#   SPAN [5]           UPGRADE=1: seconds after a SIGHUP its report covers
#   PAUSE [5]          UPGRADE=1: seconds between upgrades, once the old
#                      process has gone
#   RUNS [1]           repeat; the summary gives the median of each figure
#   KEEP [0]           1 keeps the temporary directory (logs, reports)
#   HLS_FS [/dev/shm]  a tmpfs for the LL-HLS files, as mediad has under
#                      systemd ($RUNTIME_DIRECTORY, /run/mediad). On a
#                      disk file system every segment's creation goes
#                      through the journal: at 100 streams that alone
#                      costs mediad some 5% of a core.
#   MEDIAD_ENV []      extra environment for mediad only, such as
#                      "GOGC=200 GOMEMLIMIT=1GiB" (words split on spaces)
#   PROFILE [0]        1: CPU profiles of the steady window, mediad's from
#                      /debug/pprof (run-K/mediad.pprof) and each hlsload's
#                      (run-K/hls-I.pprof, whole run); with UPGRADE=1 also
#                      the new process's from its verdict on, over SPAN−1 s
#                      (run-K/upgrade-J.pprof) and a 2 s execution trace
#                      (run-K/upgrade-J.trace); implies KEEP=1
#
# Examples: N=5 V=2 WINDOW=10 scripts/bench-hls.sh
#           N=100 V=10 RUNS=3 UPGRADE=1 scripts/bench-hls.sh
set -euo pipefail

N=${N:-100}
V=${V:-10}
VIEWER=${VIEWER:-hls}
BITRATE=${BITRATE:-500k}
GOP=${GOP:-1}
CLIP_SECONDS=${CLIP_SECONDS:-30}
RAMP=${RAMP:-10}
SETTLE=${SETTLE:-5}
PUB_WINDOW=${PUB_WINDOW:-10}
WINDOW=${WINDOW:-30}
UPGRADE=${UPGRADE:-0}
SIGHUPS=${SIGHUPS:-3}
SPAN=${SPAN:-5}
PAUSE=${PAUSE:-5}
RUNS=${RUNS:-1}
KEEP=${KEEP:-0}
PROFILE=${PROFILE:-0}
HLS_FS=${HLS_FS:-/dev/shm}
[[ $PROFILE == 1 ]] && KEEP=1

NAME=bench-hls
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

for tool in go jq awk curl ffmpeg ss; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
posint() { [[ $2 =~ ^[0-9]+$ && $2 -gt 0 ]] || die "$1 must be a positive integer, got '$2'"; }
for v in N V GOP CLIP_SECONDS RAMP PUB_WINDOW WINDOW SIGHUPS SPAN RUNS; do
	posint "$v" "${!v}"
done
[[ $SETTLE =~ ^[0-9]+$ && $PAUSE =~ ^[0-9]+$ ]] || die "SETTLE and PAUSE must be whole seconds"
read -r -a mediad_env <<<"${MEDIAD_ENV:-}"
for e in "${mediad_env[@]}"; do
	[[ $e == [A-Za-z_]*=* ]] || die "MEDIAD_ENV words must be NAME=VALUE, got '$e'"
done
[[ $UPGRADE == 0 || $UPGRADE == 1 ]] || die "UPGRADE must be 0 or 1, got '$UPGRADE'"
[[ $VIEWER == hls || $VIEWER == flv ]] || die "VIEWER must be hls or flv, got '$VIEWER'"
[[ $BITRATE =~ ^[0-9]+k$ ]] || die "BITRATE must be kbit/s with a k suffix, got '$BITRATE'"
video_k=$(( ${BITRATE%k} - 64 ))
((video_k >= 100)) || die "BITRATE $BITRATE leaves less than 100k for video after 64k of AAC"

# Go raises its soft descriptor limit to the hard one; so does the shell,
# for the checks below.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -n)
# hlsload: two connections per viewer and some slack; streams split over
# as many processes as that needs.
per_proc=$(( (fd_limit - 256) / 2 / V ))
((per_proc >= 1)) || die "V=$V viewers need more descriptors than the limit $fd_limit allows one process"
procs=$(( (N + per_proc - 1) / per_proc ))
need_srv=$(( N * (2 * V + 4) + 256 ))
((need_srv <= fd_limit)) || echo "$NAME: mediad may need ~$need_srv descriptors (limit $fd_limit)" >&2

[[ -d $HLS_FS && -w $HLS_FS ]] || die "HLS_FS=$HLS_FS is not a writable directory (set HLS_FS to a tmpfs mount)"
[[ $(stat -f -c %T "$HLS_FS") == tmpfs ]] || die "HLS_FS=$HLS_FS is not a tmpfs but $(stat -f -c %T "$HLS_FS") (set HLS_FS to a tmpfs mount)"

bench_start
extra_dir=$(mktemp -d "$HLS_FS/$NAME.XXXXXX")
echo "$NAME: building hlsload" >&2
(cd "$repo" && go build -o "$tmp/hlsload" ./cmd/hlsload)
"$tmp/mediad" --help 2>&1 | grep -q -- '-media' || die "this mediad has no --media listener"

hls_pids=()
kill_viewers() {
	local pid
	for pid in "${hls_pids[@]}"; do
		kill -INT "$pid" 2>/dev/null || true
	done
	hls_pids=()
}
trap 'kill_viewers; bench_cleanup' EXIT

clip="$tmp/clip.flv"
echo "$NAME: encoding a ${CLIP_SECONDS}s clip at $BITRATE, GOP ${GOP}s" >&2
ffmpeg -hide_banner -nostdin -v error \
	-f lavfi -i "testsrc2=size=640x360:rate=30,noise=alls=12:allf=t" \
	-f lavfi -i "sine=frequency=440:sample_rate=44100" -t "$CLIP_SECONDS" -af "atrim=end=$(awk -v s="$CLIP_SECONDS" 'BEGIN { printf "%.1f", s - 0.1 }')" \
	-c:v libx264 -preset veryfast -profile:v main -b:v "${video_k}k" -maxrate "${video_k}k" -bufsize "${video_k}k" \
	-g $((GOP * 30)) -keyint_min $((GOP * 30)) -sc_threshold 0 -pix_fmt yuv420p \
	-c:a aac -b:a 64k -ac 2 -f flv -y "$clip" || die "ffmpeg could not encode the clip"

clk_tck=$(getconf CLK_TCK)

# cpu_ticks PID: utime + stime (fields 14 and 15; field 2 may hold spaces).
cpu_ticks() {
	local stat
	stat=$(<"/proc/$1/stat") || return 1
	stat=${stat##*) }
	awk '{ print $12 + $13 }' <<<"$stat"
}

# sys_ticks: "busy total" jiffies of the whole machine.
sys_ticks() {
	awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' /proc/stat
}

now() { date +%s.%N; }

# sleep_until EPOCH: sleeps until that wall-clock second (fractional).
sleep_until() {
	local d
	d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
	sleep "$d"
}

# upgrade_lines LOG: how many upgrade verdicts the log holds.
upgrade_lines() { grep -c '"message":"upgrade"' "$1" || true; }

# start_mediad DIR: an upgradable mediad on explicit loopback ports; sets
# mediad_pid, rtmp, admin and media. A port taken in between costs a retry.
start_mediad() {
	local dir=$1 try rp hp mp
	for try in 1 2 3 4 5; do
		rp=$(free_port)
		hp=$(free_port)
		mp=$(free_port)
		((rp != hp && hp != mp && rp != mp)) || continue
		local hls_dir
		hls_dir="$extra_dir/$(basename "$dir")"
		mkdir -p "$hls_dir"
		env "${mediad_env[@]}" "$tmp/mediad" --rtmp "127.0.0.1:$rp" --http "127.0.0.1:$hp" --media "127.0.0.1:$mp" \
			--media-max-conns-per-client 0 --hls-dir "$hls_dir" --record-dir '' --log-format json \
			--upgrade-timeout 120s --idle-timeout 60s --pidfile "$dir/mediad.pid" >"$dir/mediad.log" 2>&1 &
		mediad_pid=$!
		if wait_log "$dir/mediad.log" "mediad ready" rtmp >/dev/null; then
			rtmp="127.0.0.1:$rp" admin="127.0.0.1:$hp" media="127.0.0.1:$mp"
			return 0
		fi
		kill "$mediad_pid" 2>/dev/null || true
		wait "$mediad_pid" 2>/dev/null || true
		mediad_pid=""
		echo "$NAME: mediad did not start on ports $rp/$hp/$mp (attempt $try): $(tail -n1 "$dir/mediad.log")" >&2
	done
	return 1
}

# live_streams: how many streams mediad lists as live.
live_streams() {
	curl -fsS --max-time 2 "http://$admin/api/streams" | jq '[.[] | select(.live)] | length' 2>/dev/null || echo 0
}

# report_all K: waits until every hlsload process has printed K reports
# (30 s at most).
reports_seen() {
	local out=$1
	grep -c '^  "kind": ' "$out" 2>/dev/null || true
}
wait_reports() {
	local k=$1 i deadline=$(( $(date +%s) + 30 ))
	for i in $(seq 0 $((procs - 1))); do
		while (( $(reports_seen "$rundir/hls-$i.json") < k )); do
			(( $(date +%s) < deadline )) || die "hlsload $i printed fewer than $k reports in time"
			alive "${hls_pids[$i]}" || die "hlsload $i exited: $(tail -n 3 "$rundir/hls-$i.log")"
			sleep 0.05
		done
	done
}

# mark: every hlsload ends its interval report now; nmarks counts them.
mark() {
	local pid
	for pid in "${hls_pids[@]}"; do
		kill -USR1 "$pid"
	done
	nmarks=$((nmarks + 1))
	wait_reports "$nmarks"
}

# interval K FILTER: a jq expression over interval report K (0-based) of
# every hlsload process, as an array (jq -s).
interval() {
	local k=$1 filter=$2 i
	for i in $(seq 0 $((procs - 1))); do
		jq -s --argjson k "$k" '.[$k]' "$rundir/hls-$i.json"
	done | jq -s "$filter"
}

# The figures of one interval over all processes: summed counts, the
# median of the p50s and the largest p99 and max.
figures='
	def med: sort | if length == 0 then -1 elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	def dist(f): [.[] | f | select(.count > 0)] as $d |
		{p50: ([$d[].p50] | med), p99: ([$d[].p99] | max // -1), max: ([$d[].max] | max // -1), count: ([$d[].count] | add // 0)};
	{
		viewers_ok: (map(.viewers.ok + .viewers.running) | add),
		failed: (map(.viewers.failed) | add),
		delay: dist(.part_delay_ms), gap: dist(.gap_ms), stall: dist(.stall_ms),
		parts: (map(.parts_received + (.frames_received // 0)) | add),
		errors: (map(.errors_total) | add),
		kinds: ([.[].errors | to_entries[]] | group_by(.key) | map("\(.[0].key)=\(map(.value) | add)") | join(",")),
		missing: (map(.parts_missing) | add), skips: (map(.skips) | add), resyncs: (map(.resyncs // 0) | add),
		backwards: (map(.msn_backwards) | add), unsatisfied: (map(.reloads_unsatisfied) | add),
		not_sync: (map(.independent_not_sync) | add),
		requests: (map(.requests | .playlist + .blocking + .part + .hint + .init + .flv) | add),
		conns: (map(.connections) | add), gen_cpu: (map(.generator_cpu_s) | add), secs: (map(.interval_s) | max)
	}'

results="$tmp/results.tsv"
upgrades="$tmp/upgrades.tsv"
: >"$results"
: >"$upgrades"

run_once() {
	local run=$1
	rundir="$tmp/run-$run"
	mkdir -p "$rundir"
	nmarks=0
	start_mediad "$rundir" || die "mediad did not start"
	local pid=$mediad_pid
	sleep 1
	local idle_kib
	idle_kib=$(rss_kib "$pid")

	local upg_s=0
	((UPGRADE)) && upg_s=$(( SIGHUPS * (SPAN + PAUSE + 130) ))
	local bound=$(( 2 * RAMP + 2 * SETTLE + PUB_WINDOW + WINDOW + upg_s + 120 ))
	"$tmp/rtmpload" -url "rtmp://$rtmp/live" -file "$clip" -n "$N" -ramp "${RAMP}s" \
		-duration "${bound}s" -setup-timeout 30s -json >"$rundir/rtmpload.json" 2>"$rundir/rtmpload.log" &
	load_pid=$!

	local live=0 deadline=$(( $(date +%s) + RAMP + 60 ))
	while ((live < N)); do
		alive "$load_pid" || { cat "$rundir/rtmpload.log" >&2; die "rtmpload ended during the ramp"; }
		(( $(date +%s) < deadline )) || die "only $live of $N streams live after ${RAMP}s + 60s"
		sleep 0.5
		live=$(live_streams)
	done
	sleep "$SETTLE"

	# Publishers only.
	local p0 p1 pt0 pt1 rss_pub
	p0=$(cpu_ticks "$pid"); pt0=$(now)
	sleep "$PUB_WINDOW"
	p1=$(cpu_ticks "$pid"); pt1=$(now)
	rss_pub=$(rss_kib "$pid")

	# Viewers.
	local i first n flv=() prof=()
	[[ $VIEWER == flv ]] && flv=(-flv)
	for i in $(seq 0 $((procs - 1))); do
		first=$(( i * per_proc ))
		n=$(( N - first < per_proc ? N - first : per_proc ))
		((PROFILE)) && prof=(-cpuprofile "$rundir/hls-$i.pprof")
		"$tmp/hlsload" -url "http://$media/live" -first "$first" -n "$n" -viewers "$V" "${flv[@]}" "${prof[@]}" -log-errors 50 \
			-ramp "${RAMP}s" -duration "${bound}s" -json >"$rundir/hls-$i.json" 2>"$rundir/hls-$i.log" &
		hls_pids+=($!)
	done
	sleep $(( RAMP + SETTLE ))
	mark # report 0: the ramp

	local c0 c1 t0 t1 s0 s1 g0=0 g1=0 rss_view
	c0=$(cpu_ticks "$pid"); s0=$(sys_ticks); t0=$(now)
	local prof_pid=""
	if ((PROFILE)); then
		curl -fsS --max-time $((WINDOW + 30)) -o "$rundir/mediad.pprof" \
			"http://$admin/debug/pprof/profile?seconds=$((WINDOW - 1))" &
		prof_pid=$!
	fi
	sleep "$WINDOW"
	[[ -n $prof_pid ]] && { wait "$prof_pid" || echo "$NAME: run $run: mediad's profile failed" >&2; }
	c1=$(cpu_ticks "$pid"); s1=$(sys_ticks); t1=$(now)
	rss_view=$(rss_kib "$pid")
	mark # report 1: the steady window

	if ((UPGRADE)); then
		local k before v outcome moved new_pid dur_ms t_hup upg_prof=()
		for k in $(seq 1 "$SIGHUPS"); do
			mark # the pause before: not reported
			before=$(upgrade_lines "$rundir/mediad.log")
			t_hup=$(now)
			kill -HUP "$pid"
			deadline=$(( $(date +%s) + 150 ))
			while (( $(upgrade_lines "$rundir/mediad.log") <= before )); do
				(( $(date +%s) < deadline )) || die "run $run: no upgrade verdict 150 s after SIGHUP $k"
				sleep 0.05
			done
			v=$(grep '"message":"upgrade"' "$rundir/mediad.log" | tail -n1)
			read -r outcome moved new_pid dur_ms < <(jq -r '"\(.outcome) \(.sessions_moved) \(.new_pid // 0) \(.duration_ms)"' <<<"$v")
			((new_pid > 0)) && upgraded_pids+=("$new_pid")
			if ((PROFILE)) && [[ $outcome == success ]]; then
				# The old process closed its admin listener before its
				# verdict: these reach the new one, which by then has
				# every publisher reading again (its first ~100 ms after
				# Ready are not in them).
				curl -fsS --max-time $((SPAN + 30)) -o "$rundir/upgrade-$k.pprof" \
					"http://$admin/debug/pprof/profile?seconds=$((SPAN - 1))" &
				upg_prof=($!)
				curl -fsS --max-time $((SPAN + 30)) -o "$rundir/upgrade-$k.trace" \
					"http://$admin/debug/pprof/trace?seconds=2" &
				upg_prof+=($!)
			fi
			sleep_until "$(awk -v t="$t_hup" -v s="$SPAN" 'BEGIN { printf "%.3f", t + s }')"
			mark # the SIGHUP's report
			for i in "${upg_prof[@]}"; do
				wait "$i" || echo "$NAME: run $run: the new process's profile after upgrade $k failed" >&2
			done
			upg_prof=()
			jq -r --arg run "$run" --arg k "$k" --arg o "$outcome" --arg m "$moved" --arg d "$dur_ms" "$figures"' |
				[$run, $k, $o, $m, $d, .gap.max, .stall.max, .delay.p99, .delay.max, .errors, .missing, .skips, .backwards, .unsatisfied, .parts, .resyncs, (if .kinds == "" then "-" else .kinds end)] | @tsv' \
				< <(interval $((nmarks - 1)) '.') >>"$upgrades"
			echo "$NAME: run $run upgrade $k: $(tail -n1 "$upgrades" | awk -F'\t' '{ printf "%s, %s sessions moved in %.0f ms; viewers: largest gap %s ms, stall %s ms, delay p99 %s ms, %s errors (%s)", $3, $4, $5, $6, $7, $8, $10, $17 }')" >&2
			if [[ $outcome != success ]]; then
				echo "$NAME: run $run upgrade $k failed: $v" >&2
				continue
			fi
			# The old process exits once it has drained its HTTP requests
			# (the first is this shell's child: a zombie until waited for,
			# which ours tells from a live one).
			deadline=$(( $(date +%s) + 60 ))
			while ours "$pid"; do
				(( $(date +%s) < deadline )) || die "run $run: old mediad $pid still there 60 s after upgrade $k"
				sleep 0.05
			done
			pid=$new_pid
			mediad_pid=""
			((k < SIGHUPS)) && sleep "$PAUSE"
		done
	fi

	# Stop: the viewers print their final reports, then the publishers.
	for i in "${hls_pids[@]}"; do
		kill -INT "$i" 2>/dev/null || true
	done
	local hls_rc=0
	for i in "${hls_pids[@]}"; do
		wait "$i" || hls_rc=$?
	done
	hls_pids=()
	kill -INT "$load_pid"
	local load_rc=0
	wait "$load_pid" || load_rc=$?
	load_pid=""
	if [[ -n $mediad_pid ]]; then
		kill "$mediad_pid"
		wait "$mediad_pid" || true
		mediad_pid=""
	else
		ours "$pid" && kill "$pid" 2>/dev/null || true
		stop_upgraded
	fi
	load_report "run $run" "$rundir/rtmpload.json" "$rundir/rtmpload.log" "$load_rc"
	((hls_rc == 0)) || echo "$NAME: run $run: an hlsload exited $hls_rc (a viewer received nothing); see $rundir/hls-*.log" >&2

	local started
	started=$(jq -r '.started' "$rundir/rtmpload.json")
	interval 1 "$figures" | jq -r \
		--arg run "$run" --arg started "$started" --arg n "$N" --arg v "$V" \
		--arg c0 "$c0" --arg c1 "$c1" --arg t0 "$t0" --arg t1 "$t1" --arg p0 "$p0" --arg p1 "$p1" --arg pt0 "$pt0" --arg pt1 "$pt1" \
		--arg hz "$clk_tck" --arg idle "$idle_kib" --arg rpub "$rss_pub" --arg rview "$rss_view" --arg s0 "$s0" --arg s1 "$s1" '
		($c1 | tonumber) as $c1 | ($c0 | tonumber) as $c0 | ($hz | tonumber) as $hz |
		(($t1 | tonumber) - ($t0 | tonumber)) as $w | (($pt1 | tonumber) - ($pt0 | tonumber)) as $pw |
		((($p1 | tonumber) - ($p0 | tonumber)) / $hz / $pw) as $cpub | (($c1 - $c0) / $hz / $w) as $cview |
		($started | tonumber) as $st | ($st * ($v | tonumber)) as $nv |
		($s0 | split(" ") | map(tonumber)) as $a | ($s1 | split(" ") | map(tonumber)) as $b |
		[$run, $st, .viewers_ok, .failed,
		 (1000 * $cpub / $st), (1000 * $cview / $st), (1000 * ($cview - $cpub) / $nv), (100 * $cview),
		 ((($rpub | tonumber) - ($idle | tonumber)) / $st), ((($rview | tonumber) - ($rpub | tonumber)) / $nv), (($rview | tonumber) / 1024),
		 .delay.p50, .delay.p99, .delay.max, .gap.p50, .gap.p99, .gap.max, .stall.max,
		 .errors, .missing, .skips, .backwards, .resyncs, (.requests / .secs), (100 * .gen_cpu / .secs),
		 (100 * ($b[0] - $a[0]) / ($b[1] - $a[1])), (if .kinds == "" then "-" else .kinds end)] |
		map(if type == "number" then (. * 1000 | round / 1000) else . end) | @tsv' >>"$results"
}

echo "$NAME: N=$N V=$V VIEWER=$VIEWER BITRATE=$BITRATE GOP=${GOP}s window ${WINDOW}s (publishers only ${PUB_WINDOW}s); UPGRADE=$UPGRADE; $procs hlsload process(es); $(nproc) cores, fd limit $fd_limit" >&2
for run in $(seq 1 "$RUNS"); do
	run_once "$run"
done

cols="run\tpublishers\tviewers\tfailed\tms/s/stream(pub)\tms/s/stream\tms/s/viewer\tmediad_CPU%\tKiB/stream\tKiB/viewer\tRSS_MiB\tdelay_p50\tdelay_p99\tdelay_max\tgap_p50\tgap_p99\tgap_max\tstall_max\terrors\tmissing\tskips\tmsn_back\tresyncs\treq/s\thlsload_CPU%\tmachine%\terror_kinds"
echo
{
	echo -e "$cols"
	cat "$results"
} | table

# Median over the runs of each numeric column.
med_awk='
function med(col,   i, j, t, b, n) {
	n = 0
	for (i = 1; i <= NR; i++) b[++n] = v[i, col] + 0
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
	return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
}
{ for (c = 1; c <= NF; c++) v[NR, c] = $c }'
echo
awk -F'\t' -v runs="$RUNS" -v n="$N" -v vv="$V" -v kind="$VIEWER" -v bitrate="$BITRATE" "$med_awk"'
END {
	label = runs > 1 ? sprintf("median of %d runs", runs) : "1 run"
	printf "streams:             %d publishers (%s), %d %s viewers each (%s)\n", med(2), bitrate, vv, kind == "hls" ? "LL-HLS" : "HTTP-FLV", label
	printf "mediad CPU:          %.3f ms/s per stream with publishers only; %.3f ms/s per stream with its viewers; %.4f ms/s per viewer (%.1f%% of one core in all)\n", med(5), med(6), med(7), med(8)
	printf "mediad RSS:          %.1f KiB per stream above idle; %.1f KiB per viewer; %.1f MiB in all\n", med(9), med(10), med(11)
	if (kind == "hls")
		printf "part delay:          p50 %.1f ms, p99 %.1f ms, max %.1f ms beyond the part duration (target: p99 <= 50 ms)\n", med(12), med(13), med(14)
	printf "gap between %s:   p50 %.1f ms, p99 %.1f ms, max %.1f ms; largest stall %.1f ms\n", kind == "hls" ? "parts" : "frames", med(15), med(16), med(17), med(18)
	printf "problems:            %d errors, %d parts missing, %d skips, %d MSN regressions, %d resyncs (a viewer that fell out of the listed parts)\n", med(19), med(20), med(21), med(22), med(23)
	printf "load:                %.0f requests/s; hlsload %.0f%% of one core; machine %.0f%% busy\n", med(24), med(25), med(26)
}' "$results"

if ((UPGRADE)); then
	echo
	echo "Upgrades (SIGHUP; each report covers the ${SPAN}s from the SIGHUP):"
	{
		echo -e "run\tupgrade\toutcome\tmoved\tupgrade_ms\tgap_max_ms\tstall_max_ms\tdelay_p99_ms\tdelay_max_ms\terrors\tmissing\tskips\tmsn_back\tunsatisfied\tparts\tresyncs\terror_kinds"
		cat "$upgrades"
	} | table
	echo
	awk -F'\t' "$med_awk"'
	END {
		ok = 0; worst = 0; err = 0
		for (i = 1; i <= NR; i++) { if (v[i, 3] == "success") ok++; if (v[i, 6] + 0 > worst) worst = v[i, 6] + 0; err += v[i, 10] }
		printf "%d of %d upgrades succeeded; per upgrade (median): upgrade %.0f ms, largest viewer gap %.1f ms, stall %.1f ms, delay p99 %.1f ms, %d errors; worst gap of all %.1f ms; %d errors in all\n",
			ok, NR, med(5), med(6), med(7), med(8), med(10), worst, err
	}' "$upgrades"
fi
if [[ $KEEP == 1 ]]; then
	echo "Logs and reports: $tmp/run-*/"
fi
