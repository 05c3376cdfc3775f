#!/usr/bin/env bash
# Cross-release upgrade test: for every entry of testdata/releases (a state
# version and the commit that released it), build mediad from that commit
# and from the working tree, start the old build under a live ffmpeg
# publisher and player, then upgrade to HEAD, downgrade to the old build and
# upgrade to HEAD again. The stream must survive all three: publisher and
# player exit 0, one recording equal packet for packet to what was sent, the
# player's copy equal from its first keyframe, statistics never going back.
#
# When the old build serves LL-HLS (its -help lists --media), two LL-HLS
# viewers (cmd/hlsload, built from the working tree: blocking reloads,
# parts and preload hints as hls.js in low-latency mode) watch the stream
# across all three upgrades; any failed request, a part listed but missing,
# an MSN that goes back or more than 1 s between two parts fails the entry.
# A preload hint answered 404 (its segment was cut by a keyframe before
# the part came) or 503 with Retry-After: 0 (the stream moved to the new
# process while the hint waited) is not a failure: the part comes through
# the playlist. Releases from before LL-HLS have no viewer to check; the
# script says so for each.
#
#   scripts/cross-release.sh            # every entry
#   RELEASES="1" scripts/cross-release.sh
#   RELEASES_FILE=<(echo "4 $(git rev-parse HEAD)") scripts/cross-release.sh
#                                       # another list (a commit with LL-HLS
#                                       # exercises the viewer check)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

NAME=cross-release
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
on_fail() {
	if [ -f "${work:-/nonexistent}/run/log" ]; then
		echo "--- server log (tail)"
		tail -n 40 "$work/run/log"
	fi
	if [ -s "${work:-/nonexistent}/run/hlsload.err" ]; then
		echo "--- hlsload stderr (tail)"
		tail -n 20 "$work/run/hlsload.err"
	fi
}
need_tools ffmpeg ffprobe curl git go jq tar

work=$(mktemp -d /tmp/mediad-cross.XXXXXX)
pids=() # what this entry started; the PID file names the serving mediad

# alive PID: PID runs and is not a zombie (an upgraded mediad outlives its
# parent, and whoever adopts it may reap it late).
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat:0:1}" != Z ]
}
gone() { ! alive "$1"; }

# Stops whatever still runs, and waits for it: mediad stops within its
# --shutdown-timeout (30 s by default).
cleanup() {
	local p left=()
	if [ -f "$work/run/pid" ]; then pids+=("$(cat "$work/run/pid")"); fi
	for p in "${pids[@]}"; do
		if alive "$p" && kill "$p" 2>/dev/null; then left+=("$p"); fi
	done
	local deadline=$((SECONDS + 40))
	for p in "${left[@]}"; do
		while alive "$p" && [ "$SECONDS" -le "$deadline" ]; do sleep 0.1; done
		if alive "$p"; then
			echo "cross-release: pid $p ($(cat "/proc/$p/comm" 2>/dev/null)) still runs 40s after SIGTERM: killed" >&2
			kill -KILL "$p" 2>/dev/null || true
		fi
	done
	rm -rf "$work"
}
trap cleanup EXIT

# in_log MESSAGE: the server has logged MESSAGE.
in_log() { grep -qs "\"message\":\"$1\"" "$run/log"; }

# logged ADDRFIELD MESSAGE: the address a log line of the server reports.
logged() {
	grep "\"message\":\"$2\"" "$run/log" | grep -o "\"$1\":\"[^\"]*\"" | head -1 | cut -d'"' -f4
}

echo "==> building HEAD and hlsload"
go build -ldflags "-X main.version=head" -o "$work/head" ./cmd/mediad
go build -o "$work/hlsload" ./cmd/hlsload

echo "==> encoding the source clip"
ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i testsrc2=size=320x180:rate=30 \
	-f lavfi -i sine=frequency=1000:sample_rate=44100 -t 30 \
	-c:v libx264 -preset veryfast -g 60 -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "$work/src.flv"
probe() { ffprobe -v error -show_packets -show_entries packet=codec_type,pts,dts,size,flags -of csv=p=0 "$@"; }
probe "$work/src.flv" >"$work/src.csv"

# The stream: hlsload names the streams it watches PREFIX-N.
key=x-0

# hls_ok REPORT: hlsload's final JSON report shows viewers that received
# parts throughout, with no failed request (but hints' 404 and moved
# 503), no listed part missing, no MSN going back and no gap over 1 s.
# Prints why not otherwise.
hls_ok() {
	jq -r '
		(.errors // {} | with_entries(select(.key != "hint_http_404" and .key != "hint_http_503"))) as $bad
		| [ (if .viewers.failed > 0 then "\(.viewers.failed) viewers failed" else empty end),
		    (if .parts_received == 0 then "no part received" else empty end),
		    (if ($bad | length) > 0 then "failed requests: \($bad | tojson)" else empty end),
		    (if .parts_missing > 0 then "\(.parts_missing) listed parts missing" else empty end),
		    (if .msn_backwards > 0 then "\(.msn_backwards) MSN regressions" else empty end),
		    (if .gap_ms.max > 1000 then "a gap of \(.gap_ms.max) ms between two parts" else empty end)
		  ] | join("; ")' "$1"
}

entries=0
while read -r version commit; do
	case "$version" in "" | \#*) continue ;; esac
	if [ -n "${RELEASES:-}" ] && ! grep -qw "$version" <<<"$RELEASES"; then continue; fi
	entries=$((entries + 1))
	short=${commit:0:12}
	echo "==> state v$version, released at $short"
	if ! git cat-file -e "$commit^{commit}" 2>/dev/null && [ "$(git rev-parse --is-shallow-repository)" = true ]; then
		git fetch -q --unshallow || true
	fi
	git cat-file -e "$commit^{commit}" 2>/dev/null || fail "commit $commit is not in this clone's history"
	rm -rf "$work/old-src" && mkdir -p "$work/old-src"
	git archive "$commit" | tar -x -C "$work/old-src"
	(cd "$work/old-src" && go build -ldflags "-X main.version=v$version-$short" -o "$work/old" ./cmd/mediad)

	run="$work/run"
	rm -rf "$run" && mkdir -p "$run/rec"
	cp "$work/old" "$run/mediad"
	# -help exits non-zero on some releases: read it whole, then look.
	help=$("$work/old" -help 2>&1 || true)
	hls=()
	if grep -q -- '-media' <<<"$help"; then
		hls=(--media 127.0.0.1:0 --hls-dir "$run/hls")
	else
		say "release v$version has no HLS: HLS viewer check skipped for this entry"
	fi
	# The environment reaches HEAD when the old build starts it: a build
	# from before LL-HLS knows no --media, and HEAD would otherwise listen
	# on its default :8888, which may be taken (releases from before
	# MEDIAD_* settings ignore them).
	(cd "$run" && MEDIAD_MEDIA=127.0.0.1:0 MEDIAD_HLS_DIR="$run/hls" exec ./mediad --rtmp 127.0.0.1:0 --http 127.0.0.1:0 --record-dir "$run/rec" \
		--segment 0 --pidfile "$run/pid" --log-format json "${hls[@]}" >"$run/log" 2>&1) &
	pids+=($!)
	# Every release logs "admin HTTP listening" before "mediad ready".
	wait_until 15 '"mediad ready" in the server log' in_log "mediad ready"
	rtmp=$(logged rtmp "mediad ready")
	http=$(logged addr "admin HTTP listening")
	[ -n "$rtmp" ] && [ -n "$http" ] || fail "old build did not start"
	curl -fs "http://$http/healthz" >/dev/null || fail "old build does not answer on $http"
	media=
	if [ "${#hls[@]}" -gt 0 ]; then
		media=$(logged addr "media HTTP listening")
		[ -n "$media" ] || fail "old build has --media but logged no media listener"
	fi

	ffmpeg -hide_banner -loglevel error -nostdin -i "rtmp://$rtmp/live/$key" -c copy -f flv "$run/play.flv" &
	player=$!
	pids+=($player)
	wait_until 20 '"play started" in the server log (the player joins before the publish)' in_log "play started"
	ffmpeg -hide_banner -loglevel error -nostdin -re -i "$work/src.flv" -c copy -f flv "rtmp://$rtmp/live/$key" &
	publisher=$!
	pids+=($publisher)
	wait_until 20 '"publish started" in the server log' in_log "publish started"
	viewers=
	if [ -n "$media" ]; then
		playlist_ready() { [ "$(http_code "http://$media/live/$key/index.m3u8")" = 200 ]; }
		wait_until -p "$publisher" 20 "the LL-HLS playlist of live/$key on $media" playlist_ready
		# Releases up to v5 end their media listener after an upgrade with
		# net/http's Shutdown, which drops with no answer a request it
		# reads once shutdown has begun: a viewer that redials the moment
		# it is told its stream moved may hit that. A browser's player
		# retries such a request; hlsload does so too for these releases,
		# once, and counts it (unanswered_retries). Later builds answer
		# every request they accept (cmd/mediad/httpserve.go).
		retry=()
		[ "$version" -gt 5 ] || retry=(-retry-unanswered)
		# It runs until the upgrades are over, then reports on SIGINT.
		"$work/hlsload" -url "http://$media/live" -key-prefix "${key%-0}" -n 1 -viewers 2 -ramp 0 "${retry[@]}" \
			-duration 10m -timeout 10s -json -log-errors 20 >"$run/hlsload.json" 2>"$run/hlsload.err" &
		viewers=$!
		pids+=($viewers)
	fi

	frames() {
		local n
		n=$(curl -fs "http://$http/api/streams" | grep -o '"video_frames": [0-9]*' | head -1 | grep -o '[0-9]*$')
		echo "${n:-0}"
	}
	last=0
	step=0
	for target in head old head; do
		step=$((step + 1))
		sleep 5
		cp "$work/$target" "$run/mediad.new" && mv "$run/mediad.new" "$run/mediad"
		before=$(frames)
		[ "$before" -ge "$last" ] || fail "video frames went back from $last to $before"
		old=$(cat "$run/pid") || fail "no PID file $run/pid before upgrade $step"
		out=$("$work/head" upgrade --http "$http" --pidfile "$run/pid" --timeout 60s) || fail "upgrade $step to $target: $out"
		echo "    upgrade $step: $out"
		# The old process answers on the admin address until it closes its
		# listener on its way out (--drain-timeout, 10 s by default).
		wait_until 30 "the old process $old to exit after upgrade $step" gone "$old"
		case "$target" in
		head) want=head ;;
		old) want="v$version-$short" ;;
		esac
		got=$(curl -fs "http://$http/api/status" | grep -o '"version": "[^"]*"' | head -1 | cut -d'"' -f4)
		[ "$got" = "$want" ] || fail "after upgrade $step the server reports version $got, want $want"
		last=$(frames)
		[ "$last" -ge "$before" ] || fail "video frames went back across upgrade $step: $before -> $last"
		[ "$last" -gt 0 ] || fail "no video frames counted after upgrade $step"
		echo "    video frames counted: $before before, $last after"
	done
	if [ -n "$viewers" ]; then
		alive "$publisher" || fail "the broadcast ended before the LL-HLS viewers were stopped: the clip is too short for the checks"
		kill -INT "$viewers"
		wait_until 20 "hlsload to write its final report" gone "$viewers"
		wait "$viewers" || fail "hlsload exited non-zero: $(tail -n 5 "$run/hlsload.err")"
		jq -s -e 'last | .kind == "final"' "$run/hlsload.json" >/dev/null || fail "hlsload wrote no final report"
		jq -s last "$run/hlsload.json" >"$run/hls-final.json"
		why=$(hls_ok "$run/hls-final.json")
		[ -z "$why" ] || fail "LL-HLS viewers across v$version -> head -> v$version -> head: $why"
		echo "    LL-HLS viewers: $(jq -r '"\(.parts_received) parts, largest gap \(.gap_ms.max) ms, \(.requests.blocking) blocking reloads, hints answered 404/503: \(.errors.hint_http_404 // 0)/\(.errors.hint_http_503 // 0), requests sent again after an empty reply: \(.unanswered_retries // 0)"' "$run/hls-final.json")"
	fi
	wait_until 60 "the publisher to exit" gone "$publisher"
	wait "$publisher" || fail "publisher exited non-zero"
	wait_until 20 "the player to exit at the end of the broadcast" gone "$player"
	wait "$player" || fail "player exited non-zero"
	wait_until 20 '"recording finalised" in the server log' in_log "recording finalised"

	shopt -s nullglob
	recs=("$run"/rec/live/$key/*.flv)
	shopt -u nullglob
	[ "${#recs[@]}" -eq 1 ] || fail "want one recording, found ${#recs[@]}"
	probe "${recs[0]}" >"$run/rec.csv"
	diff -q "$work/src.csv" "$run/rec.csv" >/dev/null || fail "recording differs from what was sent: $(diff "$work/src.csv" "$run/rec.csv" | head -5)"
	# The player joined before the publish: it has the whole broadcast.
	probe "$run/play.flv" >"$run/play.csv"
	diff -q "$work/src.csv" "$run/play.csv" >/dev/null || fail "player's copy differs: $(diff "$work/src.csv" "$run/play.csv" | head -5)"
	pid=$(cat "$run/pid") || fail "no PID file $run/pid at the end of the broadcast"
	kill "$pid" || fail "SIGTERM to mediad pid $pid"
	wait_until 40 "mediad pid $pid to exit after SIGTERM" gone "$pid"
	pids=()
	checked="packets recorded and played"
	[ -z "$viewers" ] || checked="packets recorded and played, LL-HLS watched,"
	ok "$(wc -l <"$work/src.csv") $checked across v$version -> head -> v$version -> head"
done <"${RELEASES_FILE:-testdata/releases}"

[ "$entries" -gt 0 ] || fail "no entries in testdata/releases"
echo "cross-release: $entries passed, 0 failed"
