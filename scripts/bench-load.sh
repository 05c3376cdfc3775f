#!/usr/bin/env bash
# bench-load.sh — measure mediad's CPU and memory per stream under real RTMP
# load from rtmpload (DESIGN.md §9), and nginx-rtmp's beside it.
#
# mediad and rtmpload are built once into a temporary directory. A run
# starts the server (mediad: recording off, random port), measures its idle
# RSS, starts rtmpload with N synthetic publishers (PLAYERS RTMP players on
# each stream) ramped up over RAMP, waits SETTLE after the ramp, then
# samples the server's CPU (utime+stime from /proc/PID/stat) over WINDOW
# seconds and its RSS (VmRSS from /proc/PID/status) at the end of the
# window, and the context switches of all its threads over the window
# (wake-ups: the cost that separates a goroutine per connection from
# nginx's one thread on epoll); with players, rtmpload's delivery delay
# (how long after its due time at the publisher a player got each media
# message: what holding media back to save wake-ups costs). With NGINX=1
# every run then does the same to nginx-rtmp, so that both servers see
# the same machine at the same time of day.
#
# Environment (defaults in brackets):
#   N [100]          publishers
#   PLAYERS [0]      players per stream
#   DURATION [40s]   rtmpload run time (s or m suffix, or plain seconds)
#   RAMP [5s]        connection ramp-up
#   SETTLE [2]       seconds after the ramp before sampling starts
#   WINDOW [30]      seconds of CPU sampling; shrunk to fit DURATION
#   BITRATE [2M]     synthetic bitrate per publisher
#   RUNS [1]         repeat and print the median of each figure per server
#   KEEP [0]         1 keeps the temporary directory (logs, JSON reports)
#   PUSH [0]         1 pushes every stream to a second mediad (the relay
#                    target, measured apart) with --push: the relays' cost
#   HLS [1]          0 runs mediad with --hls=false (LL-HLS off)
#   HLS_FS [/dev/shm] a tmpfs for mediad's LL-HLS files, as under systemd
#                    (RuntimeDirectory): on a disk file system each new
#                    segment's inode is part of what is measured
#   MEDIAD_FLAGS []  more flags for mediad, split on spaces
#                    (e.g. "--gop-cache-bytes=0"); GOGC and GOMEMLIMIT in
#                    the environment reach mediad as they are
#   MEDIAD_ENV []    extra environment for mediad alone, NAME=VALUE words
#                    (e.g. "GOMAXPROCS=1"), which rtmpload does not get
#   NGINX [0]        1: nginx-rtmp too, after mediad in every run; only:
#                    nginx-rtmp alone. Debian's nginx with its RTMP module
#                    (packages nginx and libnginx-mod-rtmp), one process
#                    (master_process off: the worker itself, so /proc
#                    shows all it does), live on, record off, defaults
#                    otherwise (4096-byte chunks, as mediad's)
#   NGINX_BIN [/usr/sbin/nginx]
#   NGINX_RTMP_MODULE [/usr/lib/nginx/modules/ngx_rtmp_module.so]
#   MEDIAD_BIN []    a mediad binary to measure instead of the one built
#                    from this tree (an older build, to compare with)
#   PROFILE [0]      1: mediad's CPU profile over each run's window, from
#                    /debug/pprof on its admin listener, kept as
#                    mediad-RUN.pprof and its top printed; implies KEEP=1.
#                    The profiler costs mediad a little CPU itself.
#
# Host assumptions, each checked with a message that names it: jq, awk and
# go are installed; the soft descriptor limit can be raised to what the
# load needs (N × (1 + PLAYERS) connections, in rtmpload and in the server);
# for NGINX, the binary and module above exist and nginx accepts the
# config; curl, for PROFILE.
#
# Examples: N=100 DURATION=40s RUNS=3 scripts/bench-load.sh
#           N=1000 BITRATE=500k RUNS=5 HLS=0 NGINX=1 scripts/bench-load.sh
#           N=100 PLAYERS=1 BITRATE=500k RUNS=5 NGINX=1 scripts/bench-load.sh
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
HLS=${HLS:-1}
HLS_FS=${HLS_FS:-/dev/shm}
MEDIAD_FLAGS=${MEDIAD_FLAGS:-}
NGINX=${NGINX:-0}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
NGINX_RTMP_MODULE=${NGINX_RTMP_MODULE:-/usr/lib/nginx/modules/ngx_rtmp_module.so}
PROFILE=${PROFILE:-0}
[[ $PROFILE == 1 ]] && KEEP=1

NAME=bench-load
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

for tool in go jq awk; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $N =~ ^[0-9]+$ && $N -gt 0 ]] || die "N must be a positive integer, got '$N'"
[[ $PLAYERS =~ ^[0-9]+$ ]] || die "PLAYERS must be a non-negative integer, got '$PLAYERS'"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || die "RUNS must be a positive integer, got '$RUNS'"
[[ $HLS == 0 || $HLS == 1 ]] || die "HLS must be 0 or 1, got '$HLS'"
[[ $NGINX == 0 || $NGINX == 1 || $NGINX == only ]] || die "NGINX must be 0, 1 or only, got '$NGINX'"
[[ $PROFILE == 0 || $PROFILE == 1 ]] || die "PROFILE must be 0 or 1, got '$PROFILE'"
if [[ $PROFILE == 1 ]]; then
	command -v curl >/dev/null || die "PROFILE=1 needs curl, to fetch mediad's profile from its admin listener"
fi
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

# Descriptors: rtmpload holds every connection, and so does the server
# (mediad's relays hold as many again). The soft limit is raised to the
# hard one, which children inherit; the margin is for listeners, logs,
# the runtime.
conns=$(( N * (1 + PLAYERS) ))
(( PUSH == 1 )) && conns=$(( conns + N ))
need_fds=$(( conns + 256 ))
hard_fds=$(ulimit -Hn)
if [[ $hard_fds != unlimited ]] && (( hard_fds < need_fds )); then
	die "host assumption: $conns connections need $need_fds descriptors per process, above the hard RLIMIT_NOFILE of $hard_fds; lower N or PLAYERS"
fi
ulimit -Sn "$hard_fds" || die "host assumption: cannot raise the soft RLIMIT_NOFILE to the hard limit $hard_fds"

run_mediad=1 run_nginx=0
[[ $NGINX == 1 ]] && run_nginx=1
[[ $NGINX == only ]] && run_mediad=0 run_nginx=1
if (( run_nginx )); then
	[[ -x $NGINX_BIN ]] || die "host assumption: nginx is not at $NGINX_BIN (Debian: apt-get install nginx libnginx-mod-rtmp; or set NGINX_BIN)"
	[[ -f $NGINX_RTMP_MODULE ]] || die "host assumption: nginx's RTMP module is not at $NGINX_RTMP_MODULE (Debian: apt-get install libnginx-mod-rtmp; or set NGINX_RTMP_MODULE)"
fi
read -r -a mediad_flags <<<"$MEDIAD_FLAGS"
read -r -a mediad_env <<<"${MEDIAD_ENV:-}"
for e in "${mediad_env[@]}"; do
	[[ $e == [A-Za-z_]*=* ]] || die "MEDIAD_ENV words must be NAME=VALUE, got '$e'"
done
if [[ $HLS == 1 ]]; then
	[[ -d $HLS_FS && -w $HLS_FS ]] || die "host assumption: HLS_FS=$HLS_FS is not a writable directory (set HLS_FS to a tmpfs mount)"
	[[ $(stat -f -c %T "$HLS_FS") == tmpfs ]] || die "host assumption: HLS_FS=$HLS_FS is not a tmpfs but $(stat -f -c %T "$HLS_FS") (set HLS_FS to a tmpfs mount)"
fi

if [[ -n ${MEDIAD_BIN:-} ]]; then
	[[ -x $MEDIAD_BIN ]] || die "MEDIAD_BIN $MEDIAD_BIN is not an executable"
fi

bench_start
if [[ -n ${MEDIAD_BIN:-} ]]; then
	cp "$MEDIAD_BIN" "$tmp/mediad"
	echo "bench-load: measuring $MEDIAD_BIN" >&2
fi
nginx_pid=""
trap 'if [[ -n $nginx_pid ]]; then kill "$nginx_pid" 2>/dev/null || true; fi; bench_cleanup' EXIT

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

# ctx_switches PID: voluntary + involuntary context switches of all its
# threads. Each one is a thread put to sleep or taken off a core: the
# wake-ups per message that make Go's runtime cost more than nginx's one
# thread for the same reads and writes. Read with bash alone, so the
# sampling forks nothing; a thread that exits inside the window takes its
# count with it, which only lowers the figure.
ctx_switches() {
	local f line sum=0
	for f in /proc/"$1"/task/*/status; do
		while IFS= read -r line; do
			case $line in
			voluntary_ctxt_switches:* | nonvoluntary_ctxt_switches:*) sum=$((sum + ${line##*[[:space:]]})) ;;
			esac
		done <"$f" 2>/dev/null || true
	done
	echo "$sum"
}

results="$tmp/results.tsv"
: >"$results"

# start_mediad RUN: starts mediad (and with PUSH its relay target); sets
# mediad_pid and server_addr, and admin_addr when PROFILE is on.
start_mediad() {
	local run=$1
	local log="$tmp/mediad-$run.log"
	local push=() hls=() admin=(--http '')
	if [[ $PUSH == 1 ]]; then
		# The target is a second mediad, recording and HLS off: a sink that
		# speaks RTMP, on its own process so that its CPU is not counted.
		"$tmp/mediad" --rtmp 127.0.0.1:0 --http '' --media '' --hls=false --record-dir '' --log-format json >"$tmp/target-$run.log" 2>&1 &
		target_pid=$!
		local taddr
		taddr=$(wait_log "$tmp/target-$run.log" "mediad ready" rtmp) || { cat "$tmp/target-$run.log" >&2; die "relay target did not start"; }
		push=(--push "rtmp://$taddr/live/{key}")
	fi
	if [[ $HLS == 0 ]]; then
		hls=(--hls=false)
	else
		[[ -n ${extra_dir:-} ]] || extra_dir=$(mktemp -d "$HLS_FS/$NAME.XXXXXX")
		hls=(--hls-dir "$extra_dir/$run")
		mkdir -p "$extra_dir/$run"
	fi
	[[ $PROFILE == 1 ]] && admin=(--http 127.0.0.1:0)
	env "${mediad_env[@]}" "$tmp/mediad" --rtmp 127.0.0.1:0 "${admin[@]}" --record-dir '' --log-format json "${hls[@]}" "${push[@]}" "${mediad_flags[@]}" >"$log" 2>&1 &
	mediad_pid=$!
	server_addr=$(wait_log "$log" "mediad ready" rtmp) || { cat "$log" >&2; die "mediad did not start"; }
	if [[ $PROFILE == 1 ]]; then
		admin_addr=$(wait_log "$log" "admin HTTP listening" addr) || { cat "$log" >&2; die "mediad's admin listener did not start"; }
	fi
}

stop_mediad() {
	local run=$1
	kill "$mediad_pid"
	wait "$mediad_pid" || true
	mediad_pid=""
	# A run's LL-HLS files are memory on the tmpfs.
	if [[ -n ${extra_dir:-} ]]; then
		rm -rf "${extra_dir:?}/$run"
	fi
	if [[ $PUSH == 1 ]]; then
		kill "$target_pid"
		wait "$target_pid" || true
		target_pid=""
		local relays
		relays=$(grep -c '"relay connected"' "$tmp/mediad-$run.log" || true)
		echo "bench-load: run $run: $relays relays connected" >&2
		(( relays >= N )) || die "only $relays of $N relays connected (log $tmp/mediad-$run.log)"
	fi
}

# start_nginx RUN: writes an nginx-rtmp config and starts it in the
# foreground on a free port; sets nginx_pid and server_addr.
start_nginx() {
	local run=$1
	local dir="$tmp/nginx-$run"
	mkdir -p "$dir"
	local port
	port=$(free_port)
	cat >"$dir/nginx.conf" <<-CONF
	# written by scripts/bench-load.sh
	load_module $NGINX_RTMP_MODULE;
	daemon off;
	master_process off;
	worker_processes 1;
	worker_rlimit_nofile $need_fds;
	pid $dir/nginx.pid;
	error_log $dir/error.log warn;
	events {
		worker_connections $need_fds;
	}
	rtmp {
		server {
			listen 127.0.0.1:$port;
			application live {
				live on;
				record off;
			}
		}
	}
	CONF
	"$NGINX_BIN" -t -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/test.log" 2>&1 ||
		{ cat "$dir/test.log" >&2; die "host assumption: nginx ($NGINX_BIN) refuses the config (is $NGINX_RTMP_MODULE built for this nginx?)"; }
	"$NGINX_BIN" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
	nginx_pid=$!
	local i
	for i in $(seq 1 200); do
		alive "$nginx_pid" || { cat "$dir/error.log" >&2; die "nginx exited at start"; }
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			server_addr=127.0.0.1:$port
			return 0
		fi
		sleep 0.05
	done
	die "nginx did not accept on 127.0.0.1:$port within 10 s (log $dir/error.log)"
}

stop_nginx() {
	kill "$nginx_pid"
	wait "$nginx_pid" || true
	nginx_pid=""
}

# measure SERVER RUN PID ADDR: the load against the server at ADDR, its
# process PID sampled; appends one line to $results.
measure() {
	local server=$1 run=$2 pid=$3 addr=$4
	local report="$tmp/report-$server-$run.json"
	sleep 1
	local idle_kib
	idle_kib=$(rss_kib "$pid")
	"$tmp/rtmpload" -url "rtmp://$addr/live" -synthetic -bitrate "$BITRATE" \
		-n "$N" -players "$PLAYERS" -duration "${dur_s}s" -ramp "${ramp_s}s" -json >"$report" 2>"$tmp/rtmpload-$server-$run.log" &
	load_pid=$!
	sleep "$start_s"
	local prof_pid=""
	if [[ $server != nginx-rtmp && $PROFILE == 1 ]]; then
		curl -fsS --max-time $((WINDOW + 30)) -o "$tmp/mediad-$run.pprof" \
			"http://$admin_addr/debug/pprof/profile?seconds=$WINDOW" &
		prof_pid=$!
	fi
	local c0 t0 c1 t1 rss x0 x1
	c0=$(cpu_ticks "$pid")
	x0=$(ctx_switches "$pid")
	t0=$(now)
	sleep "$WINDOW"
	c1=$(cpu_ticks "$pid")
	x1=$(ctx_switches "$pid")
	t1=$(now)
	rss=$(rss_kib "$pid")
	if [[ -n $prof_pid ]]; then
		if wait "$prof_pid"; then
			echo "bench-load: run $run: mediad's profile: $tmp/mediad-$run.pprof" >&2
			go tool pprof -top -nodecount=30 "$tmp/mediad" "$tmp/mediad-$run.pprof" 2>/dev/null | head -n 40 >&2 || true
		else
			echo "bench-load: run $run: mediad's profile failed" >&2
		fi
	fi

	local load_rc=0
	wait "$load_pid" || load_rc=$?
	load_pid=""
	load_report "$server run $run" "$report" "$tmp/rtmpload-$server-$run.log" "$load_rc"

	local started failed bps gen_cpu elapsed d50 d99
	read -r started failed bps gen_cpu elapsed d50 d99 < <(jq -r '[.started, (.failed + .refused + .players.failed + .players.refused), .bitrate_bps, .generator_cpu_s, .elapsed_s, (.players.delay_p50_ms // -1), (.players.delay_p99_ms // -1)] | @tsv' "$report")
	awk -v server="$server" -v run="$run" -v n="$N" -v started="$started" -v failed="$failed" -v bps="$bps" \
		-v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$clk_tck" \
		-v rss="$rss" -v idle="$idle_kib" -v gen="$gen_cpu" -v elapsed="$elapsed" -v x0="$x0" -v x1="$x1" -v d50="$d50" -v d99="$d99" 'BEGIN {
		win = t1 - t0
		cpu = (c1 - c0) / hz
		streams = started > 0 ? started : n
		printf "%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\n",
			server, run, started, failed, bps / 1e6, 100 * cpu / win, 1e6 * cpu / win / streams,
			rss / 1024, idle / 1024, (rss - idle) / streams, rss / streams, 100 * gen / elapsed, win,
			(x1 - x0) / win / streams, d50, d99
	}' >>"$results"
}

mediad_label=mediad
[[ $HLS == 0 ]] && mediad_label=mediad-nohls
header="server\trun\tstarted\tfailed\tMbit/s\tCPU%\tus/s/stream\tRSS_MiB\tidle_MiB\tKiB/stream\traw_KiB/stream\tgen_CPU%\twindow_s\tcsw/s/stream\tdelay_p50_ms\tdelay_p99_ms"
target_pid=""
admin_addr=""
echo "bench-load: N=$N PLAYERS=$PLAYERS PUSH=$PUSH HLS=$HLS NGINX=$NGINX BITRATE=$BITRATE DURATION=${dur_s}s RAMP=${ramp_s}s window=${WINDOW}s after ${start_s}s; GOGC=${GOGC:-} GOMEMLIMIT=${GOMEMLIMIT:-} MEDIAD_FLAGS=$MEDIAD_FLAGS; $(nproc) cores" >&2
for run in $(seq 1 "$RUNS"); do
	if (( run_mediad )); then
		start_mediad "$run"
		measure "$mediad_label" "$run" "$mediad_pid" "$server_addr"
		stop_mediad "$run"
	fi
	if (( run_nginx )); then
		start_nginx "$run"
		measure nginx-rtmp "$run" "$nginx_pid" "$server_addr"
		stop_nginx
	fi
done

# The median of each numeric column, per server.
medians="$tmp/medians.tsv"
awk -F'\t' '
{ k = $1; if (!(k in cnt)) order[++ns] = k; c = ++cnt[k]; for (i = 3; i <= NF; i++) v[k, i, c] = $i; nf = NF }
END {
	for (s = 1; s <= ns; s++) {
		k = order[s]; n = cnt[k]
		printf "%s\tmedian", k
		for (i = 3; i <= nf; i++) {
			for (x = 1; x <= n; x++) a[x] = v[k, i, x] + 0
			for (x = 1; x <= n; x++) for (y = x + 1; y <= n; y++) if (a[y] < a[x]) { t = a[x]; a[x] = a[y]; a[y] = t }
			m = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
			if (i == 3 || i == 4 || i == 7) printf "\t%.0f", m
			else printf "\t%.1f", m
		}
		printf "\n"
	}
}' "$results" >"$medians"

{
	echo -e "$header"
	sort -t$'\t' -k1,1 -s "$results"
	(( RUNS > 1 )) && cat "$medians"
} | table

echo
label=$( (( RUNS > 1 )) && echo "median of $RUNS runs" || echo "1 run")
echo "streams: $N publishers, $PLAYERS players each; $label"
awk -F'\t' '
{ printf "%-13s CPU %5.1f%% of a core, %4.0f us/s per stream; RSS %6.1f MiB (idle %.1f), %5.1f KiB per stream above idle; %.0f context switches/s per stream", $1, $6, $7, $8, $9, $10, $14
  if ($15 >= 0) printf "; players got media %.0f ms (p50), %.0f ms (p99) after it was due", $15, $16
  printf "\n"
  cpu[$1] = $6 }
END {
	for (k in cpu) if (k != "nginx-rtmp" && ("nginx-rtmp" in cpu) && cpu["nginx-rtmp"] > 0)
		printf "%-13s CPU %.2f x nginx-rtmp\n", k, cpu[k] / cpu["nginx-rtmp"]
}' "$medians"
