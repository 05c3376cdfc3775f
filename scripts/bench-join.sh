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
# Environment (defaults in brackets):
#   N [100]                publishers, each with one player
#   BITRATE [500k]         synthetic bitrate per publisher
#   GOP_FRAMES [60]        frames from one keyframe to the next, at 30 fps
#   CACHES ["4194304 0"]   --gop-cache-bytes values to compare (0: no cache)
#   RAMP [5s]              publisher ramp-up
#   JOIN_AFTER [2s]        a player joins at least this long after its publisher
#   JOIN_WITHIN [8s]       ... and at a uniformly random moment within this long
#   RUNS [3]               repeat; the summary gives the median of each figure
#   KEEP [0]               1 keeps the temporary directory (logs, JSON reports)
#
# Example: N=100 RUNS=3 scripts/bench-join.sh
set -euo pipefail

N=${N:-100}
BITRATE=${BITRATE:-500k}
GOP_FRAMES=${GOP_FRAMES:-60}
CACHES=${CACHES:-4194304 0}
RAMP=${RAMP:-5s}
JOIN_AFTER=${JOIN_AFTER:-2s}
JOIN_WITHIN=${JOIN_WITHIN:-8s}
RUNS=${RUNS:-3}
KEEP=${KEEP:-0}

NAME=bench-join
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

for tool in go jq awk curl; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
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

bench_start

results="$tmp/results.tsv"
: >"$results"

# run_once RUN CACHE appends one line to $results.
run_once() {
	local run=$1 cache=$2
	local log="$tmp/mediad-$run-$cache.log" report="$tmp/report-$run-$cache.json"
	"$tmp/mediad" --rtmp 127.0.0.1:0 --http 127.0.0.1:0 --record-dir '' --log-format json \
		--gop-cache-bytes "$cache" >"$log" 2>&1 &
	mediad_pid=$!
	local addr http
	addr=$(wait_log "$log" "mediad ready" rtmp) || { cat "$log" >&2; die "mediad did not start"; }
	http=$(wait_log "$log" "admin HTTP listening" addr) || { cat "$log" >&2; die "mediad has no admin address"; }
	sleep 1
	local idle_kib
	idle_kib=$(rss_kib "$mediad_pid")

	"$tmp/rtmpload" -url "rtmp://$addr/live" -synthetic -bitrate "$BITRATE" -gop "$GOP_FRAMES" \
		-n "$N" -players 1 -join-after "${after_s}s" -join-within "${within_s}s" \
		-duration "${dur_s}s" -ramp "${ramp_s}s" -json >"$report" 2>"$tmp/rtmpload-$run-$cache.log" &
	load_pid=$!
	sleep "$sample_s"
	local rss gop_bytes
	rss=$(rss_kib "$mediad_pid")
	gop_bytes=$(curl -fsS "http://$http/api/status" | jq -r '.gop_cache_bytes')

	local load_rc=0
	wait "$load_pid" || load_rc=$?
	load_pid=""
	kill "$mediad_pid"
	wait "$mediad_pid" || true
	mediad_pid=""
	[[ -s $report ]] || { cat "$tmp/rtmpload-$run-$cache.log" >&2; die "rtmpload produced no report (exit $load_rc)"; }
	if (( load_rc != 0 )); then
		echo "bench-join: run $run cache $cache: rtmpload exit $load_rc; failures:" >&2
		jq -r '.publishers[], (.player_list // [])[] | select(.state == "failed" or .state == "refused") | "  \(.key): \(.state): \(.error)"' "$report" | head -n 20 >&2
	fi
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

echo "bench-join: N=$N BITRATE=$BITRATE GOP=${GOP_FRAMES} frames at 30 fps, players join ${after_s}-$(( after_s + within_s ))s after their publisher; caches: $CACHES; $(nproc) cores" >&2
for run in $(seq 1 "$RUNS"); do
	for cache in $CACHES; do
		run_once "$run" "$cache"
	done
done

{
	echo -e "run\tgop_cache_bytes\tpublishers\tplayers_ok\tsaw_keyframe\tfirst_key_p50_ms\tfirst_key_p99_ms\tfirst_key_max_ms\tRSS_MiB\tKiB/stream\tcache_MiB\tcache_KiB/stream"
	cat "$results"
} | if command -v column >/dev/null; then column -t -s $'\t'; else cat; fi

echo
# Median over the runs of each figure, per cache size.
for cache in $CACHES; do
	awk -F'\t' -v cache="$cache" '
	$2 == cache { n++; p50[n] = $6; p99[n] = $7; pmax[n] = $8; kib[n] = $10; gkib[n] = $12; ok[n] = $4; saw[n] = $5 }
	function med(arr,   i, j, t, b) {
		for (i = 1; i <= n; i++) b[i] = arr[i] + 0
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
		return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2
	}
	END {
		label = cache == 0 ? "no GOP cache" : sprintf("GOP cache %d bytes", cache)
		printf "%s (median of %d runs): first keyframe after play p50 %.0f ms, p99 %.0f ms, max %.0f ms; %d/%d players saw one;\n", label, n, med(p50), med(p99), med(pmax), med(saw), med(ok)
		printf "    RSS %.1f KiB per stream above idle, of which the GOP cache holds %.1f KiB\n", med(kib), med(gkib)
	}' "$results"
done
