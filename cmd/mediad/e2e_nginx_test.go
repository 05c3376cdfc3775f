package main

// A real nginx-rtmp (Debian's nginx and libnginx-mod-rtmp, which
// scripts/test.sh installs) as the downstream of mediad's push relays: one
// per test, in a prefix of its own, on a loopback port of its own, in the
// foreground as a single process that the test owns and can stop and start
// again on the same port. It records every publish into its own directory,
// one file per publishing connection, and logs each publish at level info.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Where Debian installs nginx and its RTMP module; MEDIAD_E2E_NGINX and
// MEDIAD_E2E_NGINX_RTMP_MODULE override them.
const (
	defaultNginx           = "/usr/sbin/nginx"
	defaultNginxRTMPModule = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
)

// nginxStopTimeout bounds nginx's fast shutdown (SIGTERM); a healthy one
// exits in milliseconds.
const nginxStopTimeout = 10 * time.Second

// nginxPublishLine is what nginx-rtmp's cmd module logs at level info for
// every publish command (ngx_rtmp_cmd_publish_init):
//
//	*3 publish: name='key' args='a=b' type=live silent=0, client: ...
//
// The number is the connection's; the query of the stream name is split
// off into args.
var nginxPublishLine = regexp.MustCompile(`\*(\d+) publish: name='([^']*)' args='([^']*)' type=`)

// nginxDisconnectLine is logged when connection N closes.
var nginxDisconnectLine = regexp.MustCompile(`\*(\d+) disconnect\b`)

// nginxTools is the nginx binary and its RTMP module.
type nginxTools struct {
	bin, module string
}

// requireNginx is requireE2E for the relay tests: it also wants nginx and
// its RTMP module, and in CI their absence is a failure.
func requireNginx(t *testing.T, tools ...string) nginxTools {
	t.Helper()
	n := nginxTools{bin: os.Getenv("MEDIAD_E2E_NGINX"), module: os.Getenv("MEDIAD_E2E_NGINX_RTMP_MODULE")}
	if n.bin == "" {
		if p, err := exec.LookPath("nginx"); err == nil {
			n.bin = p
		} else {
			n.bin = defaultNginx
		}
	}
	if n.module == "" {
		n.module = defaultNginxRTMPModule
	}
	requireE2E(t, append(tools, n.bin)...)
	if fi, err := os.Stat(n.module); err != nil || !fi.Mode().IsRegular() {
		msg := fmt.Sprintf("nginx's RTMP module %s is missing (%v): scripts/test.sh installs Debian's libnginx-mod-rtmp", n.module, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return n
}

// nginxRTMP is one nginx-rtmp server.
type nginxRTMP struct {
	t      *testing.T
	label  string
	tools  nginxTools
	prefix string
	conf   string
	// addr is where it listens, the same across restarts.
	addr      string
	recordDir string
	errorLog  string

	proc   *childProc // the running process; nil once stopped
	starts int
}

// startNginx writes the config of a new nginx-rtmp and starts it on a free
// loopback port, failing the test if it does not accept within
// readyTimeout. It is killed at the end of the test if still running; its
// log's tail is shown if the test failed.
func startNginx(t *testing.T, tools nginxTools, label string) *nginxRTMP {
	t.Helper()
	dir := t.TempDir()
	n := &nginxRTMP{
		t: t, label: label, tools: tools,
		prefix:    dir + "/",
		conf:      filepath.Join(dir, "nginx.conf"),
		recordDir: filepath.Join(dir, "rec"),
		errorLog:  filepath.Join(dir, "error.log"),
	}
	if err := os.Mkdir(n.recordDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: error log (tail):\n%s", n.label, n.logTail(40))
		}
	})
	// Between freeAddr and nginx's bind another process may take the
	// port: try another one then.
	for attempt := 1; ; attempt++ {
		n.addr = freeAddr(t)
		n.writeConf(t)
		err := n.launch(t)
		if err == nil {
			return n
		}
		if attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			t.Fatalf("%s: %v", n.label, err)
		}
		t.Logf("%s: %v; trying another port", n.label, err)
	}
}

// writeConf writes the config: one foreground process (no master, no
// daemon), so the test's child is the server itself and no user switch
// happens (it runs as whoever runs the test, root in CI); info level, at
// which nginx-rtmp logs connects and publishes; every publish recorded,
// in a file of its own (record_unique).
func (n *nginxRTMP) writeConf(t *testing.T) {
	t.Helper()
	conf := fmt.Sprintf(`# written by %s (cmd/mediad/e2e_nginx_test.go)
load_module %s;
daemon off;
master_process off;
worker_processes 1;
pid %s;
error_log %s info;
events {
	worker_connections 256;
}
rtmp {
	server {
		listen %s;
		application live {
			live on;
			record all;
			record_path %s;
			record_unique on;
		}
	}
}
`, t.Name(), n.tools.module, filepath.Join(n.prefix, "nginx.pid"), n.errorLog, n.addr, n.recordDir)
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// launch starts nginx and waits until it accepts on addr; it returns an
// error, with nginx's own words, if nginx exits first or does not accept
// within readyTimeout.
func (n *nginxRTMP) launch(t *testing.T) error {
	t.Helper()
	n.starts++
	// -e: the log of the start itself, before the config is read
	// (otherwise the package's /var/log/nginx/error.log).
	n.proc = startChild(t, fmt.Sprintf("%s (start %d)", n.label, n.starts), n.tools.bin,
		"-p", n.prefix, "-c", n.conf, "-e", n.errorLog)
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-n.proc.done:
			err := fmt.Errorf("nginx exited at start %d (%v) on %s:\n%s\nerror log (tail):\n%s",
				n.starts, n.proc.err, n.addr, tail(n.proc.out.Bytes(), 10), n.logTail(10))
			n.proc = nil
			return err
		default:
		}
		c, err := net.DialTimeout("tcp", n.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nginx (start %d) did not accept on %s within %v: %v\nerror log (tail):\n%s",
				n.starts, n.addr, readyTimeout, err, n.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends nginx with SIGTERM (its fast shutdown: every connection closed
// at once, as a crashed or restarted downstream does) and waits for it to
// exit and its port to refuse.
func (n *nginxRTMP) stop(t *testing.T) {
	t.Helper()
	if n.proc == nil {
		t.Fatalf("%s: stop, but it is not running", n.label)
	}
	p := n.proc
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("%s: SIGTERM: %v", n.label, err)
	}
	select {
	case <-p.done:
	case <-time.After(nginxStopTimeout):
		t.Fatalf("%s: nginx did not exit within %v of SIGTERM\nerror log (tail):\n%s", n.label, nginxStopTimeout, n.logTail(20))
	}
	n.proc = nil
	// With one process, its exit closes the listener.
	if c, err := net.DialTimeout("tcp", n.addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s: %s still accepts after nginx exited", n.label, n.addr)
	}
}

// restart starts nginx again on the same port, with the same log and
// record directory.
func (n *nginxRTMP) restart(t *testing.T) {
	t.Helper()
	if n.proc != nil {
		t.Fatalf("%s: restart while it runs", n.label)
	}
	if err := n.launch(t); err != nil {
		t.Fatalf("%s: restart on %s: %v", n.label, n.addr, err)
	}
}

// running fails the test if nginx has exited by itself.
func (n *nginxRTMP) running(t *testing.T, when string) {
	t.Helper()
	if n.proc == nil {
		t.Fatalf("%s is stopped %s", n.label, when)
	}
	select {
	case <-n.proc.done:
		t.Fatalf("%s exited by itself %s: %v\nerror log (tail):\n%s", n.label, when, n.proc.err, n.logTail(20))
	default:
	}
}

func (n *nginxRTMP) logText() string {
	b, err := os.ReadFile(n.errorLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		n.t.Errorf("%s: reading its log: %v", n.label, err)
	}
	return string(b)
}

func (n *nginxRTMP) logTail(lines int) string {
	return tail([]byte(n.logText()), lines)
}

// nginxPublish is one publish nginx logged.
type nginxPublish struct {
	conn string // nginx's connection number
	name string
	args string
	line string
}

// publishes lists the publishes of stream name (the name without its
// query), in the order nginx logged them: each publish is a connection of
// its own (nginx-rtmp refuses a second publish on one stream).
func (n *nginxRTMP) publishes(name string) []nginxPublish {
	var out []nginxPublish
	for line := range strings.SplitSeq(n.logText(), "\n") {
		m := nginxPublishLine.FindStringSubmatch(line)
		if m != nil && m[2] == name {
			out = append(out, nginxPublish{conn: m[1], name: m[2], args: m[3], line: line})
		}
	}
	return out
}

// describePublishes is a failure message's list of publish lines.
func describePublishes(ps []nginxPublish) string {
	if len(ps) == 0 {
		return "(none)"
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = "\t" + p.line
	}
	return "\n" + strings.Join(lines, "\n")
}

// checkPublishes fails the test unless nginx logged exactly want publishes
// of name.
func (n *nginxRTMP) checkPublishes(t *testing.T, name string, want int) []nginxPublish {
	t.Helper()
	ps := n.publishes(name)
	if len(ps) != want {
		t.Errorf("%s saw %d publish connections for %s, want %d: %s", n.label, len(ps), name, want, describePublishes(ps))
	}
	return ps
}

// waitPublishes polls nginx's log until it holds count publishes of name,
// and returns them with the time the last was seen.
func (n *nginxRTMP) waitPublishes(t *testing.T, name string, count int, timeout time.Duration) ([]nginxPublish, time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ps := n.publishes(name)
		if len(ps) >= count {
			return ps, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s saw %d publish connections for %s within %v, want %d: %s\nerror log (tail):\n%s",
				n.label, len(ps), name, timeout, count, describePublishes(ps), n.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connArgs returns the args nginx logged for connection conn, on its
// connect line (the query of the application) and its publish line (the
// query of the stream name), joined.
func (n *nginxRTMP) connArgs(conn string) []string {
	var out []string
	re := regexp.MustCompile(`\*` + conn + ` (?:connect|publish): .*?\bargs='([^']*)'`)
	for line := range strings.SplitSeq(n.logText(), "\n") {
		if m := re.FindStringSubmatch(line); m != nil && m[1] != "" {
			out = append(out, m[1])
		}
	}
	return out
}

// waitPublishesEnded polls until every publishing connection of name has
// disconnected: only then are its recordings complete.
func (n *nginxRTMP) waitPublishesEnded(t *testing.T, name string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		closed := map[string]bool{}
		for _, m := range nginxDisconnectLine.FindAllStringSubmatch(n.logText(), -1) {
			closed[m[1]] = true
		}
		var open []nginxPublish
		for _, p := range n.publishes(name) {
			if !closed[p.conn] {
				open = append(open, p)
			}
		}
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d publish connections for %s still open %v after the broadcast ended: %s\nerror log (tail):\n%s",
				n.label, len(open), name, timeout, describePublishes(open), n.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recordings lists nginx's recordings of name, oldest first: with
// record_unique each is NAME-UNIXTIME.flv, UNIXTIME the second its publish
// began.
func (n *nginxRTMP) recordings(t *testing.T, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(n.recordDir)
	if err != nil {
		t.Fatalf("%s: %v", n.label, err)
	}
	type rec struct {
		path string
		sec  int64
	}
	var recs []rec
	for _, e := range ents {
		stamp, ok := strings.CutPrefix(e.Name(), name+"-")
		if !ok {
			continue
		}
		stamp, ok = strings.CutSuffix(stamp, ".flv")
		sec, err := strconv.ParseInt(stamp, 10, 64)
		if !ok || err != nil {
			continue
		}
		recs = append(recs, rec{filepath.Join(n.recordDir, e.Name()), sec})
	}
	slices.SortFunc(recs, func(a, b rec) int { return int(a.sec - b.sec) })
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.path
	}
	return out
}

// oneRecording fails the test unless nginx holds exactly one recording of
// name, and returns it.
func (n *nginxRTMP) oneRecording(t *testing.T, name string) string {
	t.Helper()
	recs := n.recordings(t, name)
	if len(recs) != 1 {
		t.Fatalf("%s recorded %d files for %s, want 1: %q (publishes: %s)", n.label, len(recs), name, recs, describePublishes(n.publishes(name)))
	}
	return recs[0]
}

// probeNginxRecording lists the packets of an nginx-rtmp recording, as
// probePackets does. nginx-rtmp writes the AAC sequence header twice at the
// start of every file (once from what it knows of the stream when the file
// opens, once as the message itself), which ffprobe reports as "New
// Extradata" side data on the first audio packet: there it is nginx's
// doing. On any later packet it is a sequence header sent again in the
// middle of the stream, and an error.
func probeNginxRecording(path string) ([]flvPacket, error) {
	lines, err := ffprobeLines(path, "-show_packets", "-show_entries", "packet=codec_type,pts,dts,flags,size")
	if err != nil {
		return nil, err
	}
	var pkts []flvPacket
	seen := map[string]bool{}
	for i, line := range lines {
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		extra := f[min(5, len(f)):]
		for _, x := range extra {
			if x != "New Extradata" {
				return nil, fmt.Errorf("ffprobe %s line %d: %q: unexpected side data %q", path, i+1, line, x)
			}
		}
		p, err := parsePacketLine(strings.Join(f[:min(5, len(f))], ","))
		if err != nil {
			return nil, fmt.Errorf("ffprobe %s line %d: %w", path, i+1, err)
		}
		if len(extra) > 0 && seen[p.codec] {
			return nil, fmt.Errorf("%s: %s packet %d {%v} comes with new codec extradata: a sequence header was sent again mid-stream",
				path, p.codec, len(codecPackets(pkts, p.codec)), p)
		}
		seen[p.codec] = true
		pkts = append(pkts, p)
	}
	return pkts, nil
}

// waitRecorded polls until nginx's newest recording of name holds at
// least frames video frames.
func (n *nginxRTMP) waitRecorded(t *testing.T, name string, frames int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	got := 0
	for {
		if recs := n.recordings(t, name); len(recs) > 0 {
			// The file grows as frames arrive: its last tag may be partly
			// written, which ffprobe reports; that read does not count.
			if pkts, err := probeNginxRecording(recs[len(recs)-1]); err == nil {
				got = len(codecPackets(pkts, "video"))
			}
		}
		if got >= frames {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the recording of %s holds %d video frames after %v, want %d\nerror log (tail):\n%s",
				n.label, name, got, timeout, frames, n.logTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mustProbeNginx(t *testing.T, path string) []flvPacket {
	t.Helper()
	pkts, err := probeNginxRecording(path)
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}

// sourceRun is where a downstream recording sits in the source.
type sourceRun struct {
	from, to int   // source video frames [from, to)
	offset   int64 // source dts minus recorded dts
}

// checkSourceRun asserts that a recording made of one connection to a
// downstream is an unbroken run of the source: video from a keyframe on,
// every frame up to its last, and the audio of the same span, all at one
// constant timestamp offset (nginx-rtmp stamps a recording from its first
// frame). It returns where the run sits, or ok false having failed the
// test.
func checkSourceRun(t *testing.T, what string, got, src []flvPacket) (run sourceRun, ok bool) {
	t.Helper()
	gv, sv := codecPackets(got, "video"), codecPackets(src, "video")
	if len(gv) == 0 {
		t.Errorf("%s: no video", what)
		return run, false
	}
	if !gv[0].key {
		t.Errorf("%s: first video packet {%v} is not a keyframe", what, gv[0])
		return run, false
	}
	shift := func(ps []flvPacket, offset int64) []flvPacket {
		out := make([]flvPacket, len(ps))
		for i, p := range ps {
			p.dts += offset
			p.pts += offset
			out[i] = p
		}
		return out
	}
	// The run starts at the source keyframe from which every recorded
	// frame matches; failing that, report the best candidate's mismatch.
	best, bestLen, bestDiff := -1, -1, "no source keyframe has its size"
	for k := range sv {
		if !sv[k].key || sv[k].size != gv[0].size || k+len(gv) > len(sv) {
			continue
		}
		off := sv[k].dts - gv[0].dts
		d := diffPackets(shift(gv, off), sv[k:k+len(gv)])
		if d == "" {
			best, bestDiff = k, ""
			break
		}
		n := 0
		for n < len(gv) && shift(gv[n:n+1], off)[0] == sv[k+n] {
			n++
		}
		if n > bestLen {
			best, bestLen, bestDiff = k, n, d
		}
	}
	if bestDiff != "" {
		t.Errorf("%s: %d video frames are not an unbroken run of the source (best match from source frame %d): %s", what, len(gv), best, bestDiff)
		return run, false
	}
	run = sourceRun{from: best, to: best + len(gv), offset: sv[best].dts - gv[0].dts}
	ga, sa := codecPackets(got, "audio"), codecPackets(src, "audio")
	if len(ga) == 0 {
		t.Errorf("%s: no audio", what)
		return run, false
	}
	j := slices.IndexFunc(sa, func(p flvPacket) bool { return p.dts == ga[0].dts+run.offset })
	if j < 0 || j+len(ga) > len(sa) {
		t.Errorf("%s: audio starts at {%v} (source dts %d), which no source audio packet continues for %d packets",
			what, ga[0], ga[0].dts+run.offset, len(ga))
		return run, false
	}
	if d := diffPackets(shift(ga, run.offset), sa[j:j+len(ga)]); d != "" {
		t.Errorf("%s: audio is not an unbroken run of the source: %s", what, d)
		return run, false
	}
	return run, true
}

// TestE2ENginxDownstream checks the harness against nginx-rtmp itself:
// ffmpeg publishes the clip straight to it; its recording is the source
// packet for packet, its log one publish. A second stream whose name
// begins with the first's proves that the count is of one exact name.
// Stopped in the middle of a publish, nginx leaves a recording that reads
// cleanly up to the stop; started again, it serves on the same port.
func TestE2ENginxDownstream(t *testing.T) {
	tools := requireNginx(t, "ffmpeg", "ffprobe")
	t.Parallel()
	src := source(t)
	publisherSlots.acquire(t, 1)
	ng := startNginx(t, tools, "nginx-rtmp")

	publish := func(name string, clip *sourceMedia) {
		out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", clip.path, "-c", "copy",
			"-f", "flv", "rtmp://"+ng.addr+"/live/"+name+"?from=ffmpeg").CombinedOutput()
		if err != nil {
			t.Fatalf("ffmpeg publishing %s straight to nginx: %v\n%s", name, err, out)
		}
	}
	publish("direct", src)
	publish("direct2", shortClip(t, 2))
	ng.waitPublishesEnded(t, "direct", quickTimeout)
	ng.waitPublishesEnded(t, "direct2", quickTimeout)
	ng.running(t, "after the publishes")

	ps := ng.checkPublishes(t, "direct", 1)
	ng.checkPublishes(t, "direct2", 1)
	if len(ps) == 1 && ps[0].args != "from=ffmpeg" {
		t.Errorf("nginx logged args %q for the publish of direct, want from=ffmpeg: %s", ps[0].args, ps[0].line)
	}
	rec := ng.oneRecording(t, "direct")
	got := mustProbeNginx(t, rec)
	checkSamePackets(t, "nginx's recording "+rec, got, src.packets)
	checkTimeline(t, "nginx's recording "+rec, got)

	// Stopped in the middle of a real-time publish: the publisher fails,
	// and the recording so far is the source from its start, readable.
	cut := startChild(t, "publisher live/cut", "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re", "-i", src.path,
		"-c", "copy", "-f", "flv", "rtmp://"+ng.addr+"/live/cut")
	ng.waitPublishes(t, "cut", 1, quickTimeout)
	ng.waitRecorded(t, "cut", 2*srcFPS, quickTimeout)
	ng.stop(t)
	cut.waitRefused(t, quickTimeout)
	partial := ng.oneRecording(t, "cut")
	if run, ok := checkSourceRun(t, "nginx's recording cut short "+partial, mustProbeNginx(t, partial), src.packets); ok {
		if run.from != 0 || run.offset != 0 || run.to >= srcSeconds*srcFPS {
			t.Errorf("nginx's recording cut short holds source frames [%d, %d) at dts offset %d, want [0, n) at 0 with n < %d",
				run.from, run.to, run.offset, srcSeconds*srcFPS)
		}
	}

	// Started again, the same port serves and the same log goes on.
	ng.restart(t)
	publish("again", shortClip(t, 2))
	ng.waitPublishesEnded(t, "again", quickTimeout)
	ng.checkPublishes(t, "again", 1)
	ng.checkPublishes(t, "direct", 1)
	ng.checkPublishes(t, "cut", 1)
	// The file is nginx's worker's to create and close, which need not
	// come before the log line that ends the publish: wait for it.
	deadline := time.Now().Add(quickTimeout)
	for len(ng.recordings(t, "again")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(ng.recordings(t, "again")); n != 1 {
		t.Errorf("nginx restarted on %s recorded %d files for again within %v, want 1", ng.addr, n, quickTimeout)
	}
}
