#!/usr/bin/env bash
# bench-upgrade.sh — measure live upgrades of mediad under N synthetic RTMP
# publishers (DESIGN.md §4, §9): per-stream stall (the old process's last
# read of a connection to the new process's first read of it) p50/p99/max,
# the total upgrade time (to the verdict) and the time from the trigger to
# the old process's exit; with PLAYERS, what viewers saw of it; with
# PUSH, what a downstream server's viewers saw of the relays.
#
# For each N in NS: build once (two copies of mediad with different build
# versions, and rtmpload), start mediad (recording off, random ports),
# start rtmpload with N publishers ramped over RAMP, wait until mediad
# lists N live streams, sample CPU over a steady WINDOW, then run UPGRADES
# upgrades with `mediad upgrade --json`, putting the other copy of the
# binary at mediad's start path before each one and pausing PAUSE seconds
# between them. rtmpload is stopped afterwards; a run counts only if every
# upgrade succeeded and moved N sessions and no publisher failed, was
# refused or was skipped.
#
# Environment (defaults in brackets):
#   NS ["100 1000 10000"]  publisher counts, one run each
#   UPGRADES [5]           upgrades per run
#   PAUSE [5]              seconds between upgrades (after the old process
#                          has exited)
#   BITRATE [128k]         synthetic media bitrate per publisher
#   FPS [auto]             synthetic video frame rate
#   AUDIO_BITRATE [auto]   part of BITRATE spent on AAC (0: video only)
#   MSG_BUDGET [75000]     auto: messages per second all publishers together
#                          may send; up to it each publisher is an encoder's
#                          30 fps video + 43 fps AAC (73 messages a second),
#                          above it audio is dropped and FPS lowered to fit
#   RAMP [auto]            connection ramp, seconds; auto: max(5, N/400)
#   WINDOW [5]             seconds of steady-state CPU sampling
#   KEEP [0]               1 keeps the temporary directory (logs, verdicts)
#   FORCE [0]              1 runs N even when the descriptor limit says the
#                          upgrade cannot succeed (to watch it roll back)
#   PLAYERS [0]            the first PLAYERS streams get one RTMP player
#                          each; for every upgrade each player's largest
#                          gap between two media messages in the seconds
#                          the upgrade spanned (and one more) is compared
#                          with its largest in as many seconds just before
#   MEDIAD_ARGS [""]       more flags for the upgraded mediad, split on
#                          spaces (e.g. "--hls=false" to see what LL-HLS
#                          adds to an upgrade)
#   HLS_FS [/dev/shm]      a tmpfs for the LL-HLS files, as mediad has
#                          under systemd (RuntimeDirectory); on a disk
#                          file system each segment's inode costs the
#                          streams (at 1,000 here: stall p99 430 ms with
#                          the files on ext4, 267 on a tmpfs; medians of 5
#                          upgrades, one run each)
#   PUSH [0]               1 pushes every stream (--push) to a second
#                          mediad, the relay target, which is not upgraded;
#                          the players then read from the target, so their
#                          gaps are the relays' stall as downstream sees it
#
# Why these rates: what costs CPU on both sides is messages (one read, one
# wake-up each), not bytes. 128 kbit/s keeps payload copying negligible
# (10,000 publishers are 160 MB/s of loopback) while each publisher sends
# at an encoder's message rate where the machine can carry it: 1,000
# publishers at 73 messages a second already take about half a core in
# mediad and as much in rtmpload. MSG_BUDGET keeps larger runs from
# saturating the 2 cores with media alone, by lowering the message rate.
#
# The stall includes the publisher's own silence: a session's first read
# in the new process cannot come before its next message, so even a
# zero-time upgrade shows the gap between two messages as its stall, up to
# 23 ms with 43 fps audio, 1000/FPS ms without. The script prints this
# floor with the results.
#
# Example: NS="100 1000" UPGRADES=5 scripts/bench-upgrade.sh
set -euo pipefail

NS=${NS:-"100 1000 10000"}
UPGRADES=${UPGRADES:-5}
PAUSE=${PAUSE:-5}
BITRATE=${BITRATE:-128k}
AUDIO_BITRATE=${AUDIO_BITRATE:-auto}
FPS=${FPS:-auto}
MSG_BUDGET=${MSG_BUDGET:-75000}
RAMP=${RAMP:-auto}
WINDOW=${WINDOW:-5}
KEEP=${KEEP:-0}
FORCE=${FORCE:-0}
PLAYERS=${PLAYERS:-0}
PUSH=${PUSH:-0}
HLS_FS=${HLS_FS:-/dev/shm}
read -r -a extra_args <<<"${MEDIAD_ARGS:-}"

NAME=bench-upgrade
# die, alive, ours, free_port.
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
say() { echo "bench-upgrade: $*" >&2; }

for tool in go jq awk curl ss; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
for n in $NS; do
	[[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || die "NS must hold positive integers, got '$n'"
done
[[ $UPGRADES =~ ^[0-9]+$ && $UPGRADES -gt 0 ]] || die "UPGRADES must be a positive integer, got '$UPGRADES'"
[[ $PAUSE =~ ^[0-9]+$ ]] || die "PAUSE must be whole seconds, got '$PAUSE'"
[[ $WINDOW =~ ^[0-9]+$ && $WINDOW -gt 0 ]] || die "WINDOW must be positive whole seconds, got '$WINDOW'"
[[ $RAMP == auto || $RAMP =~ ^[0-9]+$ ]] || die "RAMP must be whole seconds or auto, got '$RAMP'"
[[ $FPS == auto || $FPS =~ ^[0-9]+$ ]] || die "FPS must be a whole number or auto, got '$FPS'"
[[ $PLAYERS =~ ^[0-9]+$ ]] || die "PLAYERS must be a whole number, got '$PLAYERS'"
[[ $PUSH == 0 || $PUSH == 1 ]] || die "PUSH must be 0 or 1, got '$PUSH'"
[[ $MSG_BUDGET =~ ^[0-9]+$ && $MSG_BUDGET -gt 0 ]] || die "MSG_BUDGET must be a positive integer, got '$MSG_BUDGET'"

# rates N: "FPS AUDIO_BITRATE" for N publishers.
rates() {
	local n=$1 fps=$FPS audio=$AUDIO_BITRATE
	if [[ $fps == auto && $audio == auto ]]; then
		if ((n * 73 <= MSG_BUDGET)); then
			fps=30 audio=32k
		else
			fps=$((MSG_BUDGET / n))
			((fps >= 1)) || fps=1
			((fps <= 30)) || fps=30
			audio=0
		fi
	fi
	[[ $fps == auto ]] && fps=30
	[[ $audio == auto ]] && audio=32k
	echo "$fps $audio"
}

# floor_ms FPS AUDIO: the longest silence between two messages of one
# publisher, the stall a zero-time upgrade would still show.
floor_ms() {
	awk -v fps="$1" -v audio="$2" 'BEGIN {
		v = 1000 / fps
		a = (audio == "0" || audio == "0k") ? 0 : 1000 * 1024 / 44100
		printf "%.0f", (a > 0 && a < v) ? a : v
	}'
}

# Go raises its own soft descriptor limit to the hard one; do the same for
# the shell so the limit check below and every child see it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -n)

repo=$(cd "$(dirname "$0")/.." && pwd)
[[ -d $HLS_FS && -w $HLS_FS ]] || { echo "bench-upgrade: HLS_FS=$HLS_FS is not a writable directory (set HLS_FS to a tmpfs mount)" >&2; exit 1; }
[[ $(stat -f -c %T "$HLS_FS") == tmpfs ]] || { echo "bench-upgrade: HLS_FS=$HLS_FS is not a tmpfs but $(stat -f -c %T "$HLS_FS") (set HLS_FS to a tmpfs mount)" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-upgrade.XXXXXX")
hls_root=$(mktemp -d "$HLS_FS/bench-upgrade.XXXXXX")
bin="$tmp/bin/mediad"
load_pid=""
target_pid=""
# Every mediad PID seen: the first one is this shell's child, the others
# were started by an upgrade. cleanup ends exactly these and their children.
mediad_pids=()

cleanup() {
	local pid child victims=()
	for pid in "${mediad_pids[@]}"; do
		ours "$pid" || continue
		victims+=("$pid")
		# A new process spawned by an upgrade still in flight.
		for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
			ours "$child" && victims+=("$child")
		done
	done
	[[ -n $load_pid ]] && kill -INT "$load_pid" 2>/dev/null || true
	[[ -n $target_pid ]] && victims+=("$target_pid")
	for pid in "${victims[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for _ in $(seq 1 100); do
		local left=0
		for pid in $load_pid "${victims[@]}"; do
			alive "$pid" && left=1
		done
		((left)) || break
		sleep 0.1
	done
	for pid in "${victims[@]}"; do
		ours "$pid" && kill -KILL "$pid" 2>/dev/null || true
	done
	[[ -n $load_pid ]] && kill -KILL "$load_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	# LL-HLS files on the tmpfs are never kept: they are memory.
	[[ -n ${hls_root:-} ]] && rm -rf "$hls_root"
	if [[ $KEEP == 1 ]]; then
		say "kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building into $tmp"
mkdir -p "$tmp/bin"
(
	cd "$repo"
	go build -ldflags "-X main.version=bench-a" -o "$tmp/mediad-a" ./cmd/mediad
	go build -ldflags "-X main.version=bench-b" -o "$tmp/mediad-b" ./cmd/mediad
	go build -o "$tmp/rtmpload" ./cmd/rtmpload
)

# install COPY: put mediad-COPY at the start path. A rename replaces the
# path without touching the running binary's inode.
install_copy() {
	ln -f "$tmp/mediad-$1" "$bin.next"
	mv -f "$bin.next" "$bin"
}

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

rss_mib() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

now() { date +%s.%N; }

# log_field LOG MESSAGE FIELD: FIELD of the first line with that message.
log_field() {
	jq -r --arg m "$2" --arg f "$3" 'select(.message == $m) | .[$f]' "$1" 2>/dev/null | head -n1
}

# status ADMIN: "pid sessions streams" of the mediad serving ADMIN.
status() {
	curl_get "http://$1/api/status" | jq -r '"\(.pid) \(.sessions) \(.streams | length)"'
}

curl_get() {
	if command -v curl >/dev/null; then
		curl -fsS --max-time 10 "$1"
	else
		die "curl is required"
	fi
}

summary="$tmp/summary.tsv" viewers="$tmp/viewers.tsv" fdsum="$tmp/fds.tsv" gonesum="$tmp/gone.tsv"
: >"$summary"
: >"$viewers"
: >"$fdsum"
: >"$gonesum"

# fd_count PID: the descriptors PID holds now (0 if it is gone).
fd_count() {
	local names
	names=$(ls -U "/proc/$1/fd" 2>/dev/null) || { echo 0; return; }
	wc -l <<<"$names"
}

# nap SECONDS sleeps without a fork: read -t on a pipe that nothing
# writes. The samplers below look every few milliseconds.
exec {nap_fd}<> <(:)
nap() { read -r -t "$1" -u "$nap_fd" || :; }

# awk_med is the median of a[1..c], for the summaries' awk programs.
awk_med='
	function med(a, c,   i, j, t) {
		for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
	}
'

# sample_fds PID OUT: until OUT.stop exists, the most descriptors PID (the
# old process) and any child of it (the new one) held at once, sampled
# every 20 ms; written to OUT as "old new". It forks nothing per sample:
# with `ls`, `wc`, `ps` and `sleep` forked every 20 ms the sampler took
# 13 % of the machine's CPU samples during a park at 1,000 streams (perf),
# on the cores the upgrade it measures needs.
sample_fds() {
	local pid=$1 out=$2 peak_old=0 peak_new=0 c t kids
	local -a fds
	shopt -s nullglob
	# One more round after the stop: the new process has every session by
	# then.
	local last=0
	while :; do
		[[ -e $out.stop ]] && last=1
		fds=(/proc/"$pid"/fd/*)
		((${#fds[@]} > peak_old)) && peak_old=${#fds[@]}
		# Whichever thread forked it, the new process is a child of one
		# of the old one's.
		for t in /proc/"$pid"/task/*/children; do
			# The file has no final newline: read fails and still fills.
			kids=()
			read -r -a kids <"$t" 2>/dev/null || :
			for c in "${kids[@]}"; do
				fds=(/proc/"$c"/fd/*)
				((${#fds[@]} > peak_new)) && peak_new=${#fds[@]}
			done
		done
		((last)) && break
		nap 0.02
	done
	echo "$peak_old $peak_new" >"$out"
}

# watch_exit PID OUT: writes to OUT the time (ms) at which PID has exited,
# looking every 5 ms without a fork per look; from the trigger on, so
# that what this script does after the verdict is not counted. Exited
# means a zombie too: an old process started by an upgrade is reparented,
# and whoever reaps it here (PID 1 of this machine) took up to 2 s to,
# which kill -0 would count.
watch_exit() {
	local pid=$1 out=$2 stat
	while alive "$pid"; do
		stat=
		read -r stat <"/proc/$pid/stat" 2>/dev/null || :
		stat=${stat##*) }
		[[ ${stat:0:1} == Z ]] && break
		nap 0.005
	done
	now_ms >"$out"
}

# run_n N: one full run; appends a line to the summary.
run_n() {
	local n=$1 dir="$tmp/n$n"
	mkdir -p "$dir"
	local log="$dir/mediad.log"
	# Sessions that move: publishers, their relays, and players reading
	# from mediad itself (with PUSH they read from the target).
	local players=$((PLAYERS < n ? PLAYERS : n)) moving=$n
	((PUSH)) && moving=$((moving + n))
	((PUSH)) || moving=$((moving + players))
	# Each process holds a connection once (a parked session lends its own
	# descriptor to the handoff), and, with LL-HLS on, each stream's open
	# segment file.
	local hls_fds=$n
	[[ " ${MEDIAD_ARGS:-} " == *" --hls=false "* ]] && hls_fds=0
	local need_srv=$((moving + hls_fds + 64)) need_gen=$((n + players + 64))
	if ((need_srv > fd_limit || need_gen > fd_limit)); then
		say "N=$n: mediad needs ~$need_srv descriptors (a connection each, and with LL-HLS a segment file per stream), rtmpload ~$need_gen; limit $fd_limit"
		if [[ $FORCE != 1 ]]; then
			printf '%d\t-\t-\t0/0\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\tskipped: needs ~%d fds, limit %d (FORCE=1 runs it)\n' \
				"$n" "$need_srv" "$fd_limit" >>"$summary"
			return 0
		fi
	fi
	local ramp=$RAMP fps audio floor
	[[ $ramp == auto ]] && ramp=$((n / 400 > 5 ? n / 400 : 5))
	read -r fps audio < <(rates "$n")
	floor=$(floor_ms "$fps" "$audio")

	install_copy a
	local push_args=() play_args=() taddr="" tadmin=""
	if ((PUSH)); then
		# The relay target: a second mediad, recording and HLS off, never
		# upgraded. Its admin endpoint says when every relay is live.
		local tport thport
		tport=$(free_port)
		thport=$(free_port)
		"$tmp/mediad-a" --rtmp "127.0.0.1:$tport" --http "127.0.0.1:$thport" --media '' --hls=false --record-dir '' \
			--log-format json --idle-timeout 60s >"$dir/target.log" 2>&1 &
		target_pid=$!
		for _ in $(seq 1 200); do
			[[ -n $(log_field "$dir/target.log" "mediad ready" rtmp) ]] && break
			alive "$target_pid" || break
			sleep 0.05
		done
		alive "$target_pid" || die "N=$n: the relay target did not start on ports $tport/$thport: $(tail -n1 "$dir/target.log")"
		taddr="127.0.0.1:$tport" tadmin="127.0.0.1:$thport"
		push_args=(--push "rtmp://$taddr/live/{key}")
		play_args=(-play-url "rtmp://$taddr/live")
	fi
	if ((players > 0)); then
		play_args+=(-players 1 -player-streams "$players" -gaps)
	fi
	# Explicit ports: tableflip keys inherited listeners by the address
	# asked for, so two listeners both asked for as 127.0.0.1:0 would be
	# mixed up by the new process.
	local addr="" admin="" try
	for try in 1 2 3 4 5; do
		local rport hport
		rport=$(free_port)
		hport=$(free_port)
		((rport != hport)) || continue
		mkdir -p "$hls_root/n$n"
		"$bin" --rtmp "127.0.0.1:$rport" --http "127.0.0.1:$hport" --record-dir '' --hls-dir "$hls_root/n$n" --log-format json \
			--upgrade-timeout 120s --idle-timeout 60s --pidfile "$dir/mediad.pid" "${push_args[@]}" "${extra_args[@]}" >"$log" 2>&1 &
		mediad_pids+=($!)
		for _ in $(seq 1 200); do
			[[ -n $(log_field "$log" "mediad ready" rtmp) ]] && break
			alive "${mediad_pids[-1]}" || break
			sleep 0.05
		done
		if alive "${mediad_pids[-1]}"; then
			addr="127.0.0.1:$rport" admin="127.0.0.1:$hport"
			break
		fi
		say "N=$n: mediad did not start on ports $rport/$hport (attempt $try): $(tail -n1 "$log")"
	done
	[[ -n $addr ]] || die "mediad did not start"
	local pid=${mediad_pids[-1]}

	say "N=$n: mediad $pid on rtmp $addr, admin $admin; ramp ${ramp}s; $BITRATE at $fps fps, audio $audio (stall floor ${floor} ms)"
	# The script stops rtmpload with SIGINT after the upgrades; -duration
	# only bounds a run whose script was killed outright.
	local bound=$((ramp + 60 + 2 + WINDOW + UPGRADES * (PAUSE + 170) + 60))
	"$tmp/rtmpload" -url "rtmp://$addr/live" -synthetic -bitrate "$BITRATE" -audio-bitrate "$audio" \
		-fps "$fps" -n "$n" -ramp "${ramp}s" -duration "${bound}s" -setup-timeout 30s -json "${play_args[@]}" \
		>"$dir/rtmpload.json" 2>"$dir/rtmpload.log" &
	load_pid=$!

	# Wait for N live streams: the ramp plus a bounded margin.
	local deadline st streams=0
	deadline=$(($(date +%s) + ramp + 60))
	while :; do
		alive "$load_pid" || { cat "$dir/rtmpload.log" >&2; die "N=$n: rtmpload ended during the ramp"; }
		st=$(status "$admin") || st=""
		streams=${st##* }
		if [[ -n $st && $streams -eq $n ]]; then
			((PUSH)) || break
			# Every relay is publishing on the target too.
			st=$(status "$tadmin") || st=""
			streams=${st##* }
			[[ -n $st && $streams -eq $n ]] && break
		fi
		(($(date +%s) < deadline)) || die "N=$n: only ${streams:-?} of $n streams live after ${ramp}s + 60s$( ((PUSH)) && echo " (on mediad, then on the relay target)")"
		sleep 1
	done
	say "N=$n: $n streams live; sampling CPU for ${WINDOW}s"
	sleep 2

	local c0 g0 s0 t0 c1 g1 s1 t1
	c0=$(cpu_ticks "$pid")
	g0=$(cpu_ticks "$load_pid")
	s0=$(sys_ticks)
	t0=$(now)
	sleep "$WINDOW"
	c1=$(cpu_ticks "$pid")
	g1=$(cpu_ticks "$load_pid")
	s1=$(sys_ticks)
	t1=$(now)
	local steady
	steady=$(awk -v c0="$c0" -v c1="$c1" -v g0="$g0" -v g1="$g1" -v t0="$t0" -v t1="$t1" -v hz="$clk_tck" \
		-v s0="$s0" -v s1="$s1" -v rss="$(rss_mib "$pid")" 'BEGIN {
		split(s0, a, " "); split(s1, b, " ")
		w = t1 - t0
		printf "%.0f\t%.0f\t%.0f\t%s", 100 * (c1 - c0) / hz / w, 100 * (g1 - g0) / hz / w,
			100 * (b[1] - a[1]) / (b[2] - a[2]), rss
	}')

	local k copy verdict rc ok=0 bad=""
	local upg="$dir/upgrades.tsv" windows="$dir/windows.tsv"
	: >"$upg"
	: >"$windows"
	: >"$dir/gone.tsv"
	for k in $(seq 1 "$UPGRADES"); do
		copy=b
		((k % 2 == 0)) && copy=a
		install_copy "$copy"
		verdict="$dir/verdict-$k.json"
		local u0 u1
		u0=$(sys_ticks)
		local w0 w1 steady_fds
		steady_fds=$(fd_count "$pid")
		sample_fds "$pid" "$dir/fds-$k" &
		local sampler=$!
		watch_exit "$pid" "$dir/gone-$k" &
		local watcher=$!
		w0=$(now_ms)
		rc=0
		"$tmp/mediad-a" upgrade --http "$admin" --json --timeout 150s >"$verdict" 2>"$dir/upgrade-$k.err" || rc=$?
		w1=$(now_ms)
		touch "$dir/fds-$k.stop"
		wait "$sampler" || true
		local peak_old peak_new
		read -r peak_old peak_new <"$dir/fds-$k" || { peak_old=0 peak_new=0; }
		printf '%s\t%s\t%s\t%s\n' "$k" "$steady_fds" "$peak_old" "$peak_new" >>"$dir/fds.tsv"
		printf '%s\t%s\t%s\n' "$k" "$w0" "$w1" >>"$windows"
		u1=$(sys_ticks)
		local outcome moved new_pid
		read -r outcome moved new_pid < <(jq -r '"\(.outcome) \(.sessions_moved) \(.new_pid // 0)"' "$verdict" 2>/dev/null || echo "none 0 0")
		if ((new_pid > 0)); then
			mediad_pids+=("$new_pid")
		fi
		local busy
		busy=$(awk -v s0="$u0" -v s1="$u1" 'BEGIN { split(s0, a, " "); split(s1, b, " "); d = b[2] - a[2]; printf "%.0f", (d > 0 ? 100 * (b[1] - a[1]) / d : 0) }')
		jq -r --arg k "$k" --arg busy "$busy" '[$k, .outcome, .sessions_moved, .stalls_measured, .duration_ms, .stall_p50_ms, .stall_p99_ms, .worst_stall_ms, $busy, .error // ""] | @tsv' "$verdict" >>"$upg" 2>/dev/null ||
			printf '%s\tnone\t0\t0\t0\t0\t0\t0\t%s\t%s\n' "$k" "$busy" "$(head -c 200 "$dir/upgrade-$k.err")" >>"$upg"
		say "N=$n: upgrade $k/$UPGRADES: $(tail -n1 "$upg" | awk -F'\t' '{ printf "%s, %s moved, %.1f ms, stall p50 %.1f p99 %.1f max %.1f ms, machine %s%% busy", $2, $3, $5, $6, $7, $8, $9 }')"
		if ((rc != 0)) || [[ $outcome != success ]] || ((moved != moving)); then
			bad+=" upgrade $k: $outcome, $moved of $moving moved;"
		else
			ok=$((ok + 1))
		fi
		if [[ $outcome == success ]]; then
			# The old process exits once it has finished its HTTP requests;
			# wait for it (its watcher's word) so that upgrades never
			# overlap it.
			local gone=-
			for _ in $(seq 1 1000); do
				[[ -s $dir/gone-$k ]] && break
				nap 0.01
			done
			[[ -s $dir/gone-$k ]] && gone=$(($(<"$dir/gone-$k") - w0))
			printf '%s\t%s\n' "$k" "$gone" >>"$dir/gone.tsv"
			pid=$new_pid
		fi
		kill "$watcher" 2>/dev/null || :
		wait "$watcher" 2>/dev/null || :
		st=$(status "$admin") || st=""
		[[ $st == "$pid "* ]] || bad+=" after upgrade $k the admin endpoint answers as '${st%% *}', want $pid;"
		if ((k < UPGRADES)); then
			sleep "$PAUSE"
		fi
	done
	sleep 2

	# Stop the generator; its report says whether any stream broke.
	kill -INT "$load_pid"
	local load_rc=0
	wait "$load_pid" || load_rc=$?
	load_pid=""
	if ours "$pid"; then
		kill "$pid" 2>/dev/null || true
	fi
	for _ in $(seq 1 200); do
		alive "$pid" || break
		sleep 0.05
	done
	if [[ -n $target_pid ]]; then
		kill "$target_pid" 2>/dev/null || true
		wait "$target_pid" 2>/dev/null || true
		target_pid=""
	fi
	local started failed skipped lag pok
	read -r started failed skipped lag pok < <(jq -r '"\(.started) \(.failed + .refused + .players.failed + .players.refused) \(.skipped + .players.skipped) \(.max_lag_ms) \(.players.ok)"' "$dir/rtmpload.json" 2>/dev/null || echo "0 -1 -1 0 0")
	if ((load_rc != 0 || failed != 0 || skipped != 0 || started != n || pok != players)); then
		bad+=" rtmpload exit $load_rc, $started started, $failed failed or refused, $skipped skipped, $pok of $players players ok;"
		jq -r '(.publishers[], .player_list[]?) | select(.state == "failed" or .state == "refused") | "  \(.key): \(.state): \(.error)"' "$dir/rtmpload.json" 2>/dev/null | head -n 10 >&2 || true
	fi
	local stalls_lines
	stalls_lines=$(grep -c '"message":"upgrade"' "$log" || true)
	say "N=$n: generator max lag ${lag} ms; $stalls_lines upgrade lines in the log"

	local load="${fps}fps"
	[[ $audio == 0 || $audio == 0k ]] || load+="+aac"
	awk -F'\t' -v n="$n" -v ups="$UPGRADES" -v ok="$ok" -v steady="$steady" -v bad="$bad" -v lag="$lag" \
		-v load="$load" -v floor="$floor" "$awk_med"'
	# An upgrade whose new process sent no stall report (stalls_measured 0)
	# counts for the time, not for the stall figures.
	$2 == "success" {
		c++; d[c] = $5; busy[c] = $9
		if ($4 > 0) { s++; p50[s] = $6; p99[s] = $7; mx[s] = $8; if ($8 > worst) worst = $8 }
	}
	END {
		verdict = bad == "" ? "valid" : "INVALID:" bad
		if (c > s) verdict = verdict sprintf("; %d upgrade(s) without a stall report", c - s)
		total = c ? sprintf("%.1f", med(d, c)) : "-"
		during = c ? sprintf("%.0f", med(busy, c)) : "-"
		stalls = "-\t-\t-\t-"
		if (s) stalls = sprintf("%.1f\t%.1f\t%.1f\t%.1f", med(p50, s), med(p99, s), med(mx, s), worst)
		printf "%d\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\t%.0f\t%s\n", n, load, floor, ok, ups, total, stalls, steady, during, lag, verdict
	}' "$upg" >>"$summary"
	if ((players > 0)); then
		viewer_gaps "$n" "$players" "$dir" >>"$viewers"
	fi
	# Descriptors: the steady count before each upgrade, and the peaks of
	# the old and the new process during it; medians over the upgrades.
	awk -F'\t' -v n="$n" "$awk_med"'
	$2 > 0 { c++; st[c] = $2; po[c] = $3; pn[c] = $4; r[c] = ($3 > $4 ? $3 : $4) / $2 }
	END { if (c) printf "%d\t%.0f\t%.0f\t%.0f\t%.3f\n", n, med(st, c), med(po, c), med(pn, c), med(r, c) }' "$dir/fds.tsv" >>"$fdsum"
	# The old process's end: from the trigger to its exit, per upgrade.
	awk -F'\t' -v n="$n" "$awk_med"'
	$2 != "-" { c++; g[c] = $2; if ($2 > mx) mx = $2 }
	{ all++ }
	END { if (all) printf "%d\t%d/%d\t%s\t%s\n", n, c, all, c ? med(g, c) : "-", c ? mx : "-" }' "$dir/gone.tsv" >>"$gonesum"
}

# viewer_gaps N PLAYERS DIR: one line of the viewer table. For each
# successful upgrade and each player: up, its largest gap between two media
# messages that ended in a second the upgrade spanned (from the second the
# trigger was sent to the one after the verdict came back, when the last
# delayed message may still arrive); before, its largest in as many seconds
# just before. Per upgrade the players' p50, p99 and max of up, and of
# up - before; the line gives their medians over the upgrades.
viewer_gaps() {
	local n=$1 players=$2 dir=$3 from=mediad
	((PUSH)) && from=target
	local ok_ups
	ok_ups=$(awk -F'\t' '$2 == "success" { printf "%s ", $1 }' "$dir/upgrades.tsv")
	jq -r --rawfile w "$dir/windows.tsv" --arg ok "$ok_ups" '
		($ok | split(" ") | map(select(. != ""))) as $oks
		| [$w | split("\n")[] | select(. != "") | split("\t") | map(tonumber)
			| select((.[0] | tostring) as $k | $oks | index($k))
			| {k: .[0], s0: ((.[1] / 1000) | floor), s1: (((.[2] / 1000) | floor) + 1)}] as $wins
		| .player_list[]? | select(.gaps_ms != null) | . as $p
		| def at($s): ($s - $p.gaps_from_unix_s) as $i | if $i < 0 then 0 else ($p.gaps_ms[$i] // 0) end;
		$wins[] | (.s1 - .s0 + 1) as $len
		| [.k, ([range(.s0; .s1 + 1) | at(.)] | max), ([range(.s0 - $len; .s0) | at(.)] | max)] | @tsv
	' "$dir/rtmpload.json" >"$dir/viewer-gaps.tsv" || die "N=$n: reading the players' gap series failed"
	awk -F'\t' -v n="$n" -v players="$players" -v from="$from" '
	function sort(a, c,   i, j, t) { for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t } }
	function pct(a, c, p,   i) { sort(a, c); i = int(c * p / 100 + 0.999999); if (i < 1) i = 1; if (i > c) i = c; return a[i] }
	function med(a, c) { sort(a, c); return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2 }
	{ k = $1; if (!(k in cnt)) order[++nk] = k; i = ++cnt[k]; up[k, i] = $2; ex[k, i] = $2 - $3; base[k, i] = $3 }
	END {
		if (nk == 0) { printf "%d\t%d\t%s\t0\t-\t-\t-\t-\t-\t-\t-\n", n, players, from; exit }
		for (u = 1; u <= nk; u++) {
			k = order[u]; c = cnt[k]
			delete a; delete b; delete z
			for (i = 1; i <= c; i++) { a[i] = up[k, i]; b[i] = ex[k, i]; z[i] = base[k, i] }
			u50[u] = pct(a, c, 50); u99[u] = pct(a, c, 99); umax[u] = a[c]
			b50[u] = pct(z, c, 50)
			e50[u] = pct(b, c, 50); e99[u] = pct(b, c, 99); emax[u] = b[c]
		}
		printf "%d\t%d\t%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\n", n, players, from, nk,
			med(u50, nk), med(u99, nk), med(umax, nk), med(b50, nk), med(e50, nk), med(e99, nk), med(emax, nk)
	}' "$dir/viewer-gaps.tsv"
}

say "NS=\"$NS\" MEDIAD_ARGS=\"${MEDIAD_ARGS:-}\" PLAYERS=$PLAYERS PUSH=$PUSH UPGRADES=$UPGRADES PAUSE=${PAUSE}s BITRATE=$BITRATE FPS=$FPS AUDIO_BITRATE=$AUDIO_BITRATE MSG_BUDGET=$MSG_BUDGET; $(nproc) cores, fd limit $fd_limit"
for n in $NS; do
	run_n "$n"
done

echo
echo "Upgrades (medians over the successful upgrades of each run):"
{
	printf 'N\tload\tfloor_ms\tupgrades_ok\ttotal_ms\tstall_p50_ms\tstall_p99_ms\tstall_max_ms\tworst_max_ms\tverdict\n'
	cut -f 1-9,16 "$summary"
} | table
echo
echo "Load:"
{
	printf 'N\tmediad_cpu%%\tgen_cpu%%\tmachine_busy%%\tmediad_rss_MiB\tbusy_during_upgrade%%\tgen_max_lag_ms\n'
	cut -f 1,10-15 "$summary"
} | table
cat <<EOF

load: synthetic video fps (+aac: 43 AAC frames a second too) at $BITRATE per
publisher. floor_ms: the longest silence between two messages of a publisher,
which a stall cannot be shorter than. worst_max: the largest max stall of any
upgrade. mediad_cpu, gen_cpu: % of one core over a ${WINDOW}s steady window
before the first upgrade; machine_busy: all $(nproc) cores over that window
(100 = saturated); busy_during_upgrade: all cores while \`mediad upgrade\` ran.
gen_max_lag_ms: the latest rtmpload sent a message after it was due.
EOF
if [[ -s $fdsum ]]; then
	echo
	echo "Descriptors (medians over the upgrades):"
	{
		printf 'N\tsteady\tpeak_old\tpeak_new\tpeak/steady\n'
		cat "$fdsum"
	} | table
fi
if [[ -s $gonesum ]]; then
	echo
	echo "Old process (ms from \`mediad upgrade\` to the old process's exit; median and max over the upgrades):"
	{
		printf 'N\texited\tgone_p50_ms\tgone_max_ms\n'
		cat "$gonesum"
	} | table
fi
if [[ -s $viewers ]]; then
	echo
	echo "Viewers (ms; per upgrade the players' p50/p99/max, then the median over upgrades):"
	{
		printf 'N\tplayers\treading_from\tupgrades\tgap_p50\tgap_p99\tgap_max\tbefore_p50\textra_p50\textra_p99\textra_max\n'
		cat "$viewers"
	} | table
	cat <<EOF

gap: a player's largest gap between two media messages in the seconds an
upgrade spanned; before: its largest in as many seconds just before the
upgrade; extra: gap - before, what the upgrade added.
EOF
	if ((PUSH)); then
		echo "reading_from target: the players read the relayed copy from the relay"
		echo "target, so extra is the relays' stall as a downstream viewer sees it."
	fi
fi
if [[ $KEEP == 1 ]]; then
	echo "Logs and per-upgrade verdicts: $tmp/n*/ (upgrades.tsv, verdict-*.json, mediad.log)"
fi
