#!/usr/bin/env bash
# bench-join.sh — how long an RTMP player that joins a live stream waits for
# its first decodable frame, with and without mediad's GOP cache, and what
# the cache costs in memory (issue 11, "viewers start at once").
#
# mediad and rtmpload are built once into a temporary directory. For each
# run and each cache size in CACHES, mediad starts (recording off, random
# ports) with --gop-cache-bytes set to that size, its idle RSS is read, and
# rtmpload starts N synthetic publishers (GOP_FRAMES frames at 30 fps, so
# 2 s by default) ramped over RAMP, each with one player that joins at a
# random moment in [JOIN_AFTER, JOIN_AFTER + JOIN_WITHIN) after its
# publisher went live. Each player measures the time from its play command
# to the first video keyframe: the first frame it can decode. Once every
# player has joined, mediad's RSS (VmRSS from /proc) and the GOP cache's
# size (/api/status gop_cache_bytes) are sampled.
#
# With UPGRADE=1 the players join right after a live upgrade instead: the
# case the cache does not cover, since it does not cross an upgrade. mediad
# runs upgradable (explicit ports, --pidfile); once the N streams are live
# and a GOP has passed, `mediad upgrade` re-executes the binary, and once
# its verdict is in, rtmpload gets SIGUSR1 (-join-on-signal) and each player
# joins at a random moment within one GOP of it. The same run without the
# upgrade (players signalled at the same point) is the control. Besides the
# players' figures this measures the window: from the verdict until every
# stream's cache holds a GOP again (mediad_stream_gop_cache_bytes > 0 in
# /metrics, polled), the longest and the median over the streams. A player that
# joins its stream in that window waits for the next keyframe.
#
# VIEWER picks the player: rtmp (rtmpload's players, as above), flv (an
# HTTP-FLV viewer: GET /live/KEY.flv on mediad's media listener, timed to
# the first video keyframe after the sequence header) or hls (an LL-HLS
# viewer that joins as hls.js does in low-latency mode, timed to its first
# decodable part: INDEPENDENT=YES, a sync sample first, the init section
# in hand). flv and hls viewers are hlsload's, one per stream, joining at
# the same moments (-ramp as the publishers', -join-after, -join-within;
# with UPGRADE=1 on SIGUSR2) and leaving once they can decode; their
# time is from the viewer's first request. rtmpload then only publishes.
#
# Environment (defaults in brackets):
#   N [100]                publishers, each with one player
#   VIEWER [rtmp]          rtmp, flv or hls: what the players are
#   BITRATE [500k]         synthetic bitrate per publisher
#   GOP_FRAMES [60]        frames from one keyframe to the next, at 30 fps
#   CACHES ["4194304 0"]   --gop-cache-bytes values to compare (0: no cache);
#                          VIEWER=hls: ["4194304"] (LL-HLS does not use it)
#   RAMP [5s]              publisher ramp-up
#   JOIN_AFTER [2s]        a player joins at least this long after its publisher
#   JOIN_WITHIN [8s]       ... and at a uniformly random moment within this long
#   RUNS [3]               repeat; the summary gives the median of each figure
#   KEEP [0]               1 keeps the temporary directory (logs, JSON reports)
#   UPGRADE [0]            1: players join within one GOP after an upgrade's
#                          verdict, next to a control run without the upgrade
#                          (JOIN_AFTER and JOIN_WITHIN are not used)
#   WAIT_MS [50]           UPGRADE=1: a player whose first keyframe took
#                          longer than this after play counts as having waited
#
# Examples: N=100 RUNS=3 scripts/bench-join.sh
#           N=100 RUNS=3 UPGRADE=1 scripts/bench-join.sh
#           N=100 RUNS=3 UPGRADE=1 VIEWER=hls scripts/bench-join.sh
set -euo pipefail

N=${N:-100}
VIEWER=${VIEWER:-rtmp}
BITRATE=${BITRATE:-500k}
GOP_FRAMES=${GOP_FRAMES:-60}
if [[ $VIEWER == hls ]]; then
	CACHES=${CACHES:-4194304}
else
	CACHES=${CACHES:-4194304 0}
fi
RAMP=${RAMP:-5s}
JOIN_AFTER=${JOIN_AFTER:-2s}
JOIN_WITHIN=${JOIN_WITHIN:-8s}
RUNS=${RUNS:-3}
KEEP=${KEEP:-0}
UPGRADE=${UPGRADE:-0}
WAIT_MS=${WAIT_MS:-50}

NAME=bench-join
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

for tool in go jq awk curl; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $UPGRADE == 0 || $UPGRADE == 1 ]] || die "UPGRADE must be 0 or 1, got '$UPGRADE'"
[[ $VIEWER == rtmp || $VIEWER == flv || $VIEWER == hls ]] || die "VIEWER must be rtmp, flv or hls, got '$VIEWER'"
[[ $WAIT_MS =~ ^[0-9]+$ ]] || die "WAIT_MS must be whole milliseconds, got '$WAIT_MS'"
if [[ $UPGRADE == 1 ]]; then
	command -v ss >/dev/null || die "ss is required with UPGRADE=1"
fi
[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || die "N must be a positive integer, got '$N'"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || die "RUNS must be a positive integer, got '$RUNS'"
[[ $GOP_FRAMES =~ ^[0-9]+$ && $GOP_FRAMES -gt 0 ]] || die "GOP_FRAMES must be a positive integer, got '$GOP_FRAMES'"
for c in $CACHES; do
	[[ $c =~ ^[0-9]+$ ]] || die "CACHES must hold byte counts, got '$c'"
done
ramp_s=$(seconds "$RAMP")
after_s=$(seconds "$JOIN_AFTER")
within_s=$(seconds "$JOIN_WITHIN")
[[ $ramp_s =~ ^[0-9]+$ && $after_s =~ ^[0-9]+$ && $within_s =~ ^[0-9]+$ ]] || die "RAMP, JOIN_AFTER and JOIN_WITHIN must be whole seconds"
# Every player has joined (and waited up to a GOP) by sample_s; the run
# goes on a few seconds after that so the sample never sees teardown.
sample_s=$(( ramp_s + after_s + within_s + 3 ))
dur_s=$(( sample_s + 3 ))
# One GOP, in ms, at rtmpload's default 30 fps.
gop_ms=$(( GOP_FRAMES * 1000 / 30 ))

bench_start

# The media listener: explicit where it exists (its default, :8888, would
# be shared by every run on the host); flv and hls viewers need it.
media_flags=()
hls_pid=""
if "$tmp/mediad" --help 2>&1 | grep -q -- '-media'; then
	media_flags=(--media-max-conns-per-client 0)
elif [[ $VIEWER != rtmp ]]; then
	die "VIEWER=$VIEWER needs a mediad with the --media listener"
fi
if [[ $VIEWER != rtmp ]]; then
	echo "$NAME: building hlsload" >&2
	(cd "$repo" && go build -o "$tmp/hlsload" ./cmd/hlsload)
	trap '[[ -z $hls_pid ]] || kill -INT "$hls_pid" 2>/dev/null || true; bench_cleanup' EXIT
fi
# rtmpload's players, or none when hlsload's viewers join.
rtmp_players=1
[[ $VIEWER == rtmp ]] || rtmp_players=0

# start_viewers TAG ARGS...: hlsload's viewers (VIEWER=flv or hls), one per
# stream, on $media; sets hls_pid.
start_viewers() {
	local tag=$1
	shift
	local flv=()
	[[ $VIEWER == flv ]] && flv=(-flv)
	"$tmp/hlsload" -url "http://$media/live" -n "$N" -viewers 1 "${flv[@]}" -leave-after-join -json "$@" \
		>"$tmp/viewers-$tag.json" 2>"$tmp/viewers-$tag.log" &
	hls_pid=$!
}

# viewers_report TAG REPORT RC: folds hlsload's final report into REPORT,
# rtmpload's, in the shape of rtmpload's players (first_keyframe_ms is the
# time to the first decodable frame), so that one reading serves all.
viewers_report() {
	local tag=$1 report=$2 rc=$3
	[[ -s $tmp/viewers-$tag.json ]] || { cat "$tmp/viewers-$tag.log" >&2; die "$tag: hlsload produced no report (exit $rc)"; }
	if ((rc != 0)); then
		echo "$NAME: $tag: hlsload exit $rc; failures:" >&2
		jq -r '.viewer_list[]? | select(.state == "failed") | "  \(.key): \(.error)"' "$tmp/viewers-$tag.json" | head -n 20 >&2
	fi
	jq -s '.[0] as $pub | (.[1:] | last) as $v | $pub + {
		players: {
			ok: $v.viewers.ok, saw_keyframe: $v.join.decodable,
			first_keyframe_p50_ms: $v.join.first_decodable_ms.p50,
			first_keyframe_p99_ms: $v.join.first_decodable_ms.p99,
			first_keyframe_max_ms: $v.join.first_decodable_ms.max,
			viewer_errors: $v.errors
		},
		player_list: [$v.viewer_list[] | {key, state, first_keyframe_ms: .first_decodable_ms, play_after_trigger_ms: .start_after_trigger_ms}]
	}' "$report" "$tmp/viewers-$tag.json" >"$report.tmp" && mv "$report.tmp" "$report"
	local errs
	errs=$(jq -r '.players.viewer_errors | to_entries | map("\(.key)=\(.value)") | join(",")' "$report")
	[[ -z $errs ]] || echo "$NAME: $tag: viewers' failed requests (retried): $errs" >&2
}

results="$tmp/results.tsv"
: >"$results"

# run_once RUN CACHE appends one line to $results.
run_once() {
	local run=$1 cache=$2
	local log="$tmp/mediad-$run-$cache.log" report="$tmp/report-$run-$cache.json"
	local media_addr=()
	((${#media_flags[@]})) && media_addr=(--media 127.0.0.1:0 --hls-dir "$tmp/hls-$run-$cache")
	"$tmp/mediad" --rtmp 127.0.0.1:0 --http 127.0.0.1:0 --record-dir '' --log-format json \
		--gop-cache-bytes "$cache" "${media_addr[@]}" "${media_flags[@]}" >"$log" 2>&1 &
	mediad_pid=$!
	local addr http
	addr=$(wait_log "$log" "mediad ready" rtmp) || { cat "$log" >&2; die "mediad did not start"; }
	http=$(wait_log "$log" "admin HTTP listening" addr) || { cat "$log" >&2; die "mediad has no admin address"; }
	if ((${#media_flags[@]})); then
		media=$(wait_log "$log" "media HTTP listening" addr) || { cat "$log" >&2; die "mediad has no media address"; }
	fi
	sleep 1
	local idle_kib
	idle_kib=$(rss_kib "$mediad_pid")

	"$tmp/rtmpload" -url "rtmp://$addr/live" -synthetic -bitrate "$BITRATE" -gop "$GOP_FRAMES" \
		-n "$N" -players "$rtmp_players" -join-after "${after_s}s" -join-within "${within_s}s" \
		-duration "${dur_s}s" -ramp "${ramp_s}s" -json >"$report" 2>"$tmp/rtmpload-$run-$cache.log" &
	load_pid=$!
	if [[ $VIEWER != rtmp ]]; then
		start_viewers "$run-$cache" -ramp "${ramp_s}s" -join-after "${after_s}s" -join-within "${within_s}s" -duration "${dur_s}s"
	fi
	sleep "$sample_s"
	local rss gop_bytes
	rss=$(rss_kib "$mediad_pid")
	gop_bytes=$(curl -fsS "http://$http/api/status" | jq -r '.gop_cache_bytes')

	local load_rc=0 hls_rc=0
	wait "$load_pid" || load_rc=$?
	load_pid=""
	if [[ -n $hls_pid ]]; then
		wait "$hls_pid" || hls_rc=$?
		hls_pid=""
	fi
	kill "$mediad_pid"
	wait "$mediad_pid" || true
	mediad_pid=""
	load_report "run $run cache $cache" "$report" "$tmp/rtmpload-$run-$cache.log" "$load_rc"
	[[ $VIEWER == rtmp ]] || viewers_report "$run-$cache" "$report" "$hls_rc"
	local started players saw p50 p99 pmax
	read -r started players saw p50 p99 pmax < <(jq -r '[.started, .players.ok, .players.saw_keyframe, .players.first_keyframe_p50_ms, .players.first_keyframe_p99_ms, .players.first_keyframe_max_ms] | @tsv' "$report")
	awk -v run="$run" -v cache="$cache" -v started="$started" -v players="$players" -v saw="$saw" \
		-v p50="$p50" -v p99="$p99" -v pmax="$pmax" -v rss="$rss" -v idle="$idle_kib" -v gop="$gop_bytes" -v n="$N" 'BEGIN {
		streams = started > 0 ? started : n
		printf "%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\n",
			run, cache, started, players, saw, p50, p99, pmax,
			rss / 1024, (rss - idle) / streams, gop / 1024 / 1024, gop / 1024 / streams
	}' >>"$results"
}

# join_default: the runs and summary of the default mode.
join_default() {
	echo "bench-join: N=$N VIEWER=$VIEWER BITRATE=$BITRATE GOP=${GOP_FRAMES} frames at 30 fps, players join ${after_s}-$(( after_s + within_s ))s after their publisher; caches: $CACHES; $(nproc) cores" >&2
	for run in $(seq 1 "$RUNS"); do
		for cache in $CACHES; do
			run_once "$run" "$cache"
		done
	done

	{
		echo -e "run\tgop_cache_bytes\tpublishers\tplayers_ok\tsaw_keyframe\tfirst_key_p50_ms\tfirst_key_p99_ms\tfirst_key_max_ms\tRSS_MiB\tKiB/stream\tcache_MiB\tcache_KiB/stream"
		cat "$results"
	} | table

	echo
	# Median over the runs of each figure, per cache size.
	for cache in $CACHES; do
		awk -F'\t' -v cache="$cache" -v viewer="$VIEWER" '
		$2 == cache { n++; p50[n] = $6; p99[n] = $7; pmax[n] = $8; kib[n] = $10; gkib[n] = $12; ok[n] = $4; saw[n] = $5 }
		function med(arr,   i, j, t, b) {
			for (i = 1; i <= n; i++) b[i] = arr[i] + 0
			for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
			return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
		}
		END {
			label = cache == 0 ? "no GOP cache" : sprintf("GOP cache %d bytes", cache)
			printf "%s (median of %d runs): %s first decodable frame after play p50 %.0f ms, p99 %.0f ms, max %.0f ms; %d/%d players saw one;\n", label, n, viewer, med(p50), med(p99), med(pmax), med(saw), med(ok)
			printf "    RSS %.1f KiB per stream above idle, of which the GOP cache holds %.1f KiB\n", med(kib), med(gkib)
		}' "$results"
	done
}

# --- UPGRADE=1 ---

# start_upgradable CACHE LOG PIDFILE: starts an upgradable mediad and sets
# mediad_pid, addr (RTMP) and http (admin). A new process finds its
# inherited listeners by the address asked for, so the ports are explicit;
# one taken in between costs a retry.
start_upgradable() {
	local cache=$1 log=$2 pidfile=$3 try rport hport mport media_addr=()
	for try in 1 2 3 4 5; do
		rport=$(free_port)
		hport=$(free_port)
		mport=$(free_port)
		((rport != hport && rport != mport && hport != mport)) || continue
		((${#media_flags[@]})) && media_addr=(--media "127.0.0.1:$mport" --hls-dir "${log%.log}-hls")
		"$tmp/mediad" --rtmp "127.0.0.1:$rport" --http "127.0.0.1:$hport" --record-dir '' --log-format json \
			--gop-cache-bytes "$cache" --pidfile "$pidfile" "${media_addr[@]}" "${media_flags[@]}" >"$log" 2>&1 &
		mediad_pid=$!
		if wait_log "$log" "mediad ready" rtmp >/dev/null; then
			addr="127.0.0.1:$rport" http="127.0.0.1:$hport" media="127.0.0.1:$mport"
			return 0
		fi
		kill "$mediad_pid" 2>/dev/null || true
		wait "$mediad_pid" 2>/dev/null || true
		mediad_pid=""
		echo "$NAME: mediad did not start on ports $rport/$hport (attempt $try): $(tail -n1 "$log")" >&2
	done
	return 1
}

# cache_poll HTTP SINCE_MS OUT: one look at every stream's GOP cache, in
# /metrics (awk reads it faster than jq reads /api/streams, which matters
# for the resolution of the window). Appends "ms-since-SINCE stream bytes"
# per stream to OUT, the time taken when the answer came, and prints how
# many streams hold a GOP.
cache_poll() {
	local body t
	body=$(curl -fsS --max-time 2 "http://$1/metrics") || { echo 0; return 0; }
	t=$(( ${EPOCHREALTIME/./} / 1000 - $2 ))
	awk -v t="$t" -v out="$3" '
	/^mediad_stream_gop_cache_bytes\{/ { print t "\t" $1 "\t" $2 >>out; if ($2 + 0 > 0) n++ }
	END { print n + 0 }' <<<"$body"
}

# run_upgrade RUN CACHE UPG appends one line to $results: players join
# within one GOP of an upgrade's verdict (UPG=1), or of the same point of a
# run without one (UPG=0).
run_upgrade() {
	local run=$1 cache=$2 upg=$3
	local tag="$run-$cache-u$upg"
	local log="$tmp/mediad-$tag.log" report="$tmp/report-$tag.json" pidfile="$tmp/mediad-$tag.pid"
	local polls="$tmp/polls-$tag.tsv" verdict="$tmp/verdict-$tag.json"
	: >"$polls"
	start_upgradable "$cache" "$log" "$pidfile" || die "mediad did not start"

	# rtmpload is stopped with SIGINT once every player has had its GOP;
	# -duration only bounds a run whose script was killed outright.
	"$tmp/rtmpload" -url "rtmp://$addr/live" -synthetic -bitrate "$BITRATE" -gop "$GOP_FRAMES" \
		-n "$N" -players "$rtmp_players" -join-on-signal -join-after 0s -join-within "${gop_ms}ms" \
		-duration "$(( ramp_s + 120 ))s" -ramp "${ramp_s}s" -json >"$report" 2>"$tmp/rtmpload-$tag.log" &
	load_pid=$!
	# The players that join on the signal: rtmpload's (SIGUSR1) or
	# hlsload's viewers (SIGUSR2).
	local join_pid=$load_pid join_sig=USR1
	if [[ $VIEWER != rtmp ]]; then
		start_viewers "$tag" -join-on-signal -join-after 0s -join-within "${gop_ms}ms" -duration "$(( ramp_s + 120 ))s"
		join_pid=$hls_pid join_sig=USR2
	fi

	# Every stream live, then one more GOP so that each cache holds one.
	local live=0 deadline=$(( $(date +%s) + ramp_s + 30 ))
	while ((live < N)); do
		alive "$load_pid" || { cat "$tmp/rtmpload-$tag.log" >&2; die "rtmpload ended during the ramp"; }
		(( $(date +%s) < deadline )) || die "only $live of $N streams live after ${ramp_s}s + 30s"
		sleep 0.2
		live=$(curl -fsS --max-time 2 "http://$http/api/streams" | jq '[.[] | select(.live)] | length') || live=0
	done
	sleep "$(awk -v ms="$gop_ms" 'BEGIN { printf "%.3f", ms / 1000 + 1 }')"

	local t_verdict t_signal upgrade_ms=- new_pid=0
	if ((upg)); then
		local rc=0
		"$tmp/mediad" upgrade --http "$http" --pidfile "$pidfile" --json --timeout 60s >"$verdict" 2>"$tmp/upgrade-$tag.err" || rc=$?
		t_verdict=$(now_ms)
		# The players first; the verdict is read after.
		kill -"$join_sig" "$join_pid"
		t_signal=$(now_ms)
		local outcome moved
		read -r outcome moved new_pid upgrade_ms < <(jq -r '"\(.outcome) \(.sessions_moved) \(.new_pid // 0) \(.duration_ms)"' "$verdict" 2>/dev/null || echo "none 0 0 -")
		((new_pid > 0)) && upgraded_pids+=("$new_pid")
		if ((rc != 0)) || [[ $outcome != success ]] || ((moved != N)); then
			cat "$tmp/upgrade-$tag.err" >&2
			die "run $run cache $cache: upgrade $outcome, $moved of $N sessions moved (exit $rc)"
		fi
	else
		t_verdict=$(now_ms)
		kill -"$join_sig" "$join_pid"
		t_signal=$(now_ms)
	fi

	# The window: poll until every cache holds a GOP, for three GOPs at most.
	if ((cache > 0)); then
		local valid=0
		while ((valid < N && $(now_ms) - t_verdict < 3 * gop_ms)); do
			valid=$(cache_poll "$http" "$t_verdict" "$polls")
		done
	fi
	# Every player has joined within a GOP of the signal and waited at most
	# one more for a keyframe.
	local left=$(( t_signal + 2 * gop_ms + 1500 - $(now_ms) ))
	((left > 0)) && sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"

	local load_rc=0 hls_rc=0
	if [[ -n $hls_pid ]]; then
		# It ends by itself once every viewer has joined and left.
		kill -INT "$hls_pid" 2>/dev/null || true
		wait "$hls_pid" || hls_rc=$?
		hls_pid=""
	fi
	kill -INT "$load_pid"
	wait "$load_pid" || load_rc=$?
	load_pid=""
	if ((upg)); then
		# The old process exits by itself once the upgrade is over.
		wait "$mediad_pid" || true
		stop_upgraded
	else
		kill "$mediad_pid"
		wait "$mediad_pid" || true
	fi
	mediad_pid=""
	load_report "run $run cache $cache upgrade $upg" "$report" "$tmp/rtmpload-$tag.log" "$load_rc"
	[[ $VIEWER == rtmp ]] || viewers_report "$tag" "$report" "$hls_rc"

	# Per stream, the first poll that found its cache holding a GOP; a
	# stream valid at the first poll counts 0 (its cache never emptied as
	# far as the polls can tell).
	local window="-	-	-"
	if ((cache > 0)); then
		window=$(awk -F'\t' -v n="$N" '
		NR == 1 { first = $1 }
		$1 != last { polls++; last = $1 }
		$3 > 0 && !($2 in at) { at[$2] = ($1 == first ? 0 : $1); k++ }
		END {
			gap = polls > 1 ? (last - first) / (polls - 1) : 0
			if (k < n) { printf "-\t-\t%.0f", gap; exit }
			m = 0; for (s in at) { v[++c] = at[s]; if (at[s] > m) m = at[s] }
			for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			printf "%d\t%d\t%.0f", m, v[int((c + 1) / 2)], gap
		}' "$polls")
		[[ $window == -* ]] && echo "$NAME: run $run cache $cache upgrade $upg: not every stream's cache held a GOP within three GOPs" >&2
	fi
	local fields
	fields=$(jq -r --argjson w "$WAIT_MS" '
		[(.player_list // [])[] | select(.first_keyframe_ms >= 0)] as $p |
		[.started, .players.ok, .players.saw_keyframe,
		 .players.first_keyframe_p50_ms, .players.first_keyframe_p99_ms, .players.first_keyframe_max_ms,
		 ([$p[] | select(.first_keyframe_ms > $w)] | length),
		 ([(.player_list // [])[] | .play_after_trigger_ms] | max),
		 ([$p[] | select(.first_keyframe_ms > $w) | .play_after_trigger_ms + .first_keyframe_ms] | max // -1)] |
		map(. * 10 | round / 10) | @tsv' "$report")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$cache" "$upg" "$fields" "$window" "$upgrade_ms" "$(( t_signal - t_verdict ))" >>"$results"
}

join_upgrade() {
	echo "$NAME: N=$N VIEWER=$VIEWER BITRATE=$BITRATE GOP=${GOP_FRAMES} frames at 30 fps (${gop_ms} ms); players join within one GOP after an upgrade's verdict, and without an upgrade as control; caches: $CACHES; $(nproc) cores" >&2
	local run cache upg
	for run in $(seq 1 "$RUNS"); do
		for cache in $CACHES; do
			for upg in 0 1; do
				run_upgrade "$run" "$cache" "$upg"
			done
		done
	done

	{
		echo -e "run\tgop_cache_bytes\tupgrade\tpublishers\tplayers_ok\tsaw_keyframe\tfirst_key_p50_ms\tfirst_key_p99_ms\tfirst_key_max_ms\twaited>${WAIT_MS}ms\tlast_play_ms\tlast_waited_key_ms\twindow_max_ms\twindow_p50_ms\tpoll_ms\tupgrade_ms\tsignal_lag_ms"
		cat "$results"
	} | table

	echo
	# Median over the runs of each figure, per cache size, without and with
	# the upgrade.
	for cache in $CACHES; do
		for upg in 0 1; do
			awk -F'\t' -v cache="$cache" -v upg="$upg" -v wait_ms="$WAIT_MS" -v viewer="$VIEWER" '
			$2 == cache && $3 == upg {
				n++; p50[n] = $7; p99[n] = $8; pmax[n] = $9; waited[n] = $10; saw[n] = $6; ok[n] = $5
				wmax[n] = $13; wp50[n] = $14; dur[n] = $16; lag[n] = $17; poll[n] = $15
				wk[n] = $12 >= 0 ? $12 + $17 : -1
			}
			function med(arr,   i, j, t, b) {
				for (i = 1; i <= n; i++) b[i] = arr[i] + 0
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
				return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
			}
			END {
				label = cache == 0 ? "no GOP cache" : sprintf("GOP cache %d bytes", cache)
				label = label (upg ? ", joins within a GOP after an upgrade" : ", joins within a GOP, no upgrade")
				printf "%s (median of %d runs): %s first decodable frame after play p50 %.0f ms, p99 %.0f ms, max %.0f ms; %d/%d players saw one; %d waited > %d ms (%.0f%%)\n",
					label, n, viewer, med(p50), med(p99), med(pmax), med(saw), med(ok), med(waited), wait_ms, med(saw) ? 100 * med(waited) / med(saw) : 0
				if (cache > 0 && wmax[1] != "-")
					printf "    window until every cache holds a GOP: %.0f ms after the verdict (median stream %.0f ms%s)\n", med(wmax), med(wp50),
						(med(poll) > 0 ? sprintf("; polls every %.0f ms", med(poll)) : "; all at the first poll")
				# Without a cache a wait ends at any keyframe, not the first after the upgrade.
				if (cache > 0 && upg && med(wk) >= 0)
					printf "    the last keyframe that ended a wait came %.0f ms after the verdict; signal %.0f ms after it\n", med(wk), med(lag)
				if (upg)
					printf "    upgrade %.0f ms from request to verdict\n", med(dur)
			}' "$results"
		done
	done
}

if [[ $UPGRADE == 1 ]]; then
	join_upgrade
else
	join_default
fi
