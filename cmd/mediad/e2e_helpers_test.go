package main

// Helpers for the end-to-end tests: the mediad binary built once, a source
// clip encoded once, child processes that never outlive their test, the
// server's JSON log parsed as it is written, and ffprobe packet lists.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Source clip: what every publisher sends. Keyframes every 60 frames at
// 30 fps make the 2 s GOP that the segment and late-join checks rely on.
const (
	srcSeconds = 20
	srcFPS     = 30
	srcGOP     = 60
)

// Deadlines. They bound how long a broken server can hang a test; a healthy
// run never comes near them.
const (
	readyTimeout   = 15 * time.Second
	quickTimeout   = 20 * time.Second                        // a refused publish, a probe, a log line
	publishTimeout = srcSeconds*time.Second + 60*time.Second // a real-time publish of the whole clip
	stopTimeout    = 20 * time.Second                        // mediad after SIGTERM
)

var e2e struct {
	dir string // shared by every test of the run
	bin string // the mediad binary; "" when end-to-end tests are not wanted

	srcOnce sync.Once
	src     *sourceMedia
	srcErr  error
}

// publisherSlots limits real-time ffmpeg publishers across parallel tests:
// the machine has two cores, and players and decoders run beside them.
var publisherSlots = slots{ch: make(chan struct{}, 3)}

// e2eWanted says whether end-to-end tests run: not under -short, except in
// CI, where they must never be skipped.
func e2eWanted() bool {
	return !testing.Short() || os.Getenv("CI") == "true"
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTestMain(m))
}

func runTestMain(m *testing.M) int {
	if mode := os.Getenv(warmHelperEnv); mode != "" {
		return warmHeapHelper(mode)
	}
	if e2eWanted() {
		dir, err := os.MkdirTemp("", "mediad-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "mediad")
		// go test puts its own go first in PATH, so this builds with the
		// toolchain under test.
		cmd := exec.Command("go", "build", "-o", bin, "-ldflags", "-X main.version=e2e", ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building mediad: %v\n%s", err, out)
			return 1
		}
		e2e.dir, e2e.bin = dir, bin
	}
	return m.Run()
}

// requireE2E skips a test that cannot or should not run here; in CI a
// missing tool is a failure, never a skip.
func requireE2E(t *testing.T, tools ...string) {
	t.Helper()
	if !e2eWanted() {
		t.Skip("end-to-end test: skipped under -short")
	}
	if e2e.bin == "" {
		t.Fatal("mediad binary was not built")
	}
	for _, name := range tools {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required by the end-to-end tests and CI=true: %v", name, err)
			}
			t.Skipf("%s not found (%v); install ffmpeg to run the end-to-end tests", name, err)
		}
	}
}

// slots is a counting semaphore whose acquire of n is all-or-nothing in
// effect: acquirers queue on mu, so two tests never each hold part of what
// they need.
type slots struct {
	mu sync.Mutex
	ch chan struct{}
}

func (s *slots) acquire(t *testing.T, n int) {
	t.Helper()
	if n > cap(s.ch) {
		t.Fatalf("want %d publisher slots, only %d exist", n, cap(s.ch))
	}
	s.mu.Lock()
	for range n {
		s.ch <- struct{}{}
	}
	s.mu.Unlock()
	t.Cleanup(func() {
		for range n {
			<-s.ch
		}
	})
}

// sourceMedia is the encoded clip and its packets as ffprobe lists them.
type sourceMedia struct {
	path    string
	packets []flvPacket
}

// source encodes the clip on first use and checks that it is what the tests
// assume.
func source(t *testing.T) *sourceMedia {
	t.Helper()
	e2e.srcOnce.Do(func() { e2e.src, e2e.srcErr = encodeSource(filepath.Join(e2e.dir, "src.flv"), srcSeconds) })
	if e2e.srcErr != nil {
		t.Fatalf("source clip: %v", e2e.srcErr)
	}
	return e2e.src
}

// encodeSource encodes seconds of the clip; the upgrade tests need a
// longer one than the others.
func encodeSource(path string, seconds int) (*sourceMedia, error) {
	cmd := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=640x360:rate=%d", srcFPS),
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100",
		"-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-g", strconv.Itoa(srcGOP), "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-f", "flv", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ffmpeg encode: %w\n%s", err, out)
	}
	pkts, err := probePackets(path)
	if err != nil {
		return nil, err
	}
	video := codecPackets(pkts, "video")
	if len(video) != seconds*srcFPS || len(codecPackets(pkts, "audio")) == 0 {
		return nil, fmt.Errorf("%s: %d video and %d audio packets, want %d video and some audio",
			path, len(video), len(codecPackets(pkts, "audio")), seconds*srcFPS)
	}
	for i, p := range video {
		if p.key != (i%srcGOP == 0) {
			return nil, fmt.Errorf("%s: video packet %d keyframe=%v, want a keyframe exactly every %d frames", path, i, p.key, srcGOP)
		}
	}
	return &sourceMedia{path: path, packets: pkts}, nil
}

// flvPacket is one line of ffprobe -show_packets.
type flvPacket struct {
	codec    string
	pts, dts int64
	size     int
	key      bool
}

func (p flvPacket) String() string {
	return fmt.Sprintf("%s dts=%d pts=%d size=%d key=%v", p.codec, p.dts, p.pts, p.size, p.key)
}

// probePackets lists a file's packets. Any ffprobe diagnostic is an error:
// a recording must read back cleanly.
func probePackets(path string) ([]flvPacket, error) {
	lines, err := ffprobeLines(path, "-show_packets", "-show_entries", "packet=codec_type,pts,dts,flags,size")
	if err != nil {
		return nil, err
	}
	var pkts []flvPacket
	for i, line := range lines {
		if line == "" {
			continue
		}
		p, err := parsePacketLine(line)
		if err != nil {
			return nil, fmt.Errorf("ffprobe %s line %d: %w", path, i+1, err)
		}
		pkts = append(pkts, p)
	}
	return pkts, nil
}

// ffprobeLines runs ffprobe on path with args, output as CSV, and returns
// its lines. Any ffprobe diagnostic is an error.
func ffprobeLines(path string, args ...string) ([]string, error) {
	args = append(append([]string{"-v", "error"}, args...), "-of", "csv=p=0", path)
	cmd := exec.Command("ffprobe", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ffprobe %s: %w\n%s", path, err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		return nil, fmt.Errorf("ffprobe %s reported errors:\n%s", path, stderr.Bytes())
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}

// parsePacketLine reads "codec_type,pts,dts,size,flags": ffprobe prints the
// requested entries in its own order, not the order asked for.
func parsePacketLine(line string) (flvPacket, error) {
	f := strings.Split(line, ",")
	if len(f) != 5 {
		return flvPacket{}, fmt.Errorf("%q: want 5 fields", line)
	}
	var p flvPacket
	var err error
	p.codec = f[0]
	if p.pts, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return flvPacket{}, fmt.Errorf("%q: pts: %w", line, err)
	}
	if p.dts, err = strconv.ParseInt(f[2], 10, 64); err != nil {
		return flvPacket{}, fmt.Errorf("%q: dts: %w", line, err)
	}
	if p.size, err = strconv.Atoi(f[3]); err != nil {
		return flvPacket{}, fmt.Errorf("%q: size: %w", line, err)
	}
	if strings.Trim(f[4], "KDC_") != "" {
		return flvPacket{}, fmt.Errorf("%q: flags %q", line, f[4])
	}
	p.key = strings.Contains(f[4], "K")
	return p, nil
}

func codecPackets(pkts []flvPacket, codec string) []flvPacket {
	var out []flvPacket
	for _, p := range pkts {
		if p.codec == codec {
			out = append(out, p)
		}
	}
	return out
}

// diffPackets describes the first difference between two packet lists, or
// returns "" when they are equal.
func diffPackets(got, want []flvPacket) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("packet %d is {%v}, want {%v}", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d packets, want %d", len(got), len(want))
	}
	return ""
}

// checkSamePackets asserts that got carries exactly want's audio and video,
// in order per stream, and nothing else.
func checkSamePackets(t *testing.T, what string, got, want []flvPacket) {
	t.Helper()
	for _, p := range got {
		if p.codec != "audio" && p.codec != "video" {
			t.Errorf("%s: unexpected %s packet {%v}", what, p.codec, p)
			break
		}
	}
	for _, codec := range []string{"video", "audio"} {
		if d := diffPackets(codecPackets(got, codec), codecPackets(want, codec)); d != "" {
			t.Errorf("%s: %s differs from the source: %s", what, codec, d)
		}
	}
}

// decodeClean decodes a whole file and fails on any decoder diagnostic.
func decodeClean(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", path, "-f", "null", "-")
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("decoding %s: err=%v, diagnostics:\n%s", path, err, tail(out, 20))
	}
}

// childProc is a process that dies with its test.
type childProc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // set before done closes
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.buf.Bytes())
}

// startServerProc starts a server process whose stderr is its JSON log;
// stopping it is the caller's (the server's stop).
func startServerProc(t *testing.T, label string, cmd *exec.Cmd, log io.Writer) *childProc {
	t.Helper()
	p := &childProc{name: label, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", label, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// startChild runs name with args; its combined output is kept for failure
// reports. It is killed at the end of the test if still running.
func startChild(t *testing.T, label, name string, args ...string) *childProc {
	t.Helper()
	return launchChild(t, label, nil, name, args...)
}

// launchChild is startChild with stdout kept apart in stdout when it is
// not nil; the output shown on failure is then stderr alone.
func launchChild(t *testing.T, label string, stdout io.Writer, name string, args ...string) *childProc {
	t.Helper()
	p := &childProc{name: label, cmd: exec.Command(name, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", label, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s (%s) output:\n%s", label, strings.Join(p.cmd.Args, " "), tail(p.out.Bytes(), 20))
		}
	})
	return p
}

// wait returns the process's exit error (nil for status 0), failing the
// test if it has not exited within timeout.
func (p *childProc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v; output so far:\n%s", p.name, timeout, tail(p.out.Bytes(), 20))
		return nil
	}
}

// waitOK waits for a zero exit status.
func (p *childProc) waitOK(t *testing.T, timeout time.Duration) {
	t.Helper()
	if err := p.wait(t, timeout); err != nil {
		t.Fatalf("%s: %v\n%s", p.name, err, tail(p.out.Bytes(), 20))
	}
}

// waitRefused waits for a non-zero exit status.
func (p *childProc) waitRefused(t *testing.T, timeout time.Duration) {
	t.Helper()
	err := p.wait(t, timeout)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("%s: exit error %v, want a non-zero exit status (refused)", p.name, err)
	}
}

func tail(b []byte, lines int) string {
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return "(no output)"
	}
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = append([]string{fmt.Sprintf("... (%d lines before)", len(all)-lines)}, all[len(all)-lines:]...)
	}
	return strings.Join(all, "\n")
}

// logRecord is one JSON log line of mediad; raw keeps the line for reports.
type logRecord struct {
	raw    string
	fields map[string]any // nil if the line is not JSON
}

func (r logRecord) str(key string) string {
	s, _ := r.fields[key].(string)
	return s
}

// serverLog collects mediad's stderr line by line and wakes waiters on each
// new line.
type serverLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []logRecord
	changed chan struct{} // closed and replaced on every new line
}

func newServerLog() *serverLog { return &serverLog{changed: make(chan struct{})} }

func (l *serverLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		rec := logRecord{raw: line}
		if err := json.Unmarshal([]byte(line), &rec.fields); err != nil {
			rec.fields = nil
		}
		l.lines = append(l.lines, rec)
		added = true
	}
	if added {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

func (l *serverLog) snapshot() ([]logRecord, chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines), l.changed
}

func (l *serverLog) tail(n int) string {
	lines, _ := l.snapshot()
	var b strings.Builder
	for _, r := range lines[max(0, len(lines)-n):] {
		b.WriteString(r.raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// e2eServer is a running mediad.
type e2eServer struct {
	// stoppedByTest: the test itself stopped mediad and checked its exit.
	stoppedByTest bool
	t             *testing.T
	proc          *childProc
	log           *serverLog
	rtmpAddr      string
	httpAddr      string
	recordDir     string
}

// startServer runs mediad on ephemeral ports with a fresh record dir and
// waits until it says it is ready. At the end of the test it is stopped
// with SIGTERM and must exit 0 with no error logged.
func startServer(t *testing.T, extra ...string) *e2eServer {
	t.Helper()
	s := &e2eServer{t: t, log: newServerLog(), recordDir: t.TempDir()}
	args := append([]string{
		"--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--media", "127.0.0.1:0",
		"--record-dir", s.recordDir, "--log-format", "json", "--shutdown-timeout", "10s",
	}, extra...)
	s.proc = startServerProc(t, "mediad", exec.Command(e2e.bin, args...), s.log)
	t.Cleanup(s.stop)

	ready := s.waitLog(readyTimeout, "mediad ready", func(r logRecord) bool { return r.str("message") == "mediad ready" })
	s.rtmpAddr = ready.str("rtmp")
	admin := s.waitLog(readyTimeout, "admin HTTP listening", func(r logRecord) bool { return r.str("message") == "admin HTTP listening" })
	s.httpAddr = admin.str("addr")
	if s.rtmpAddr == "" || s.httpAddr == "" {
		t.Fatalf("mediad did not log its addresses: rtmp=%q http=%q", s.rtmpAddr, s.httpAddr)
	}
	return s
}

func (s *e2eServer) stop() {
	t := s.t
	select {
	case <-s.proc.done:
		if !s.stoppedByTest {
			t.Errorf("mediad exited before the end of the test: %v", s.proc.err)
		}
	default:
		if err := s.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM mediad: %v", err)
		}
		select {
		case <-s.proc.done:
			if s.proc.err != nil {
				t.Errorf("mediad after SIGTERM: %v", s.proc.err)
			}
		case <-time.After(stopTimeout):
			_ = s.proc.cmd.Process.Kill()
			<-s.proc.done
			t.Errorf("mediad did not stop within %v of SIGTERM", stopTimeout)
		}
	}
	// Whatever the scenario, the server must not crash or log an error:
	// every refusal here is a client's fault and logged as a warning.
	lines, _ := s.log.snapshot()
	for _, r := range lines {
		if r.fields == nil {
			t.Errorf("mediad wrote a non-JSON line (a panic?): %s", r.raw)
			break
		}
		if lvl := r.str("level"); lvl == "error" || lvl == "fatal" || lvl == "panic" {
			t.Errorf("mediad logged at level %s: %s", lvl, r.raw)
		}
	}
	if t.Failed() {
		t.Logf("mediad log (tail):\n%s", s.log.tail(60))
	}
}

// waitLog waits for a log line matching match, failing the test after
// timeout or if mediad exits first.
func (s *e2eServer) waitLog(timeout time.Duration, what string, match func(logRecord) bool) logRecord {
	s.t.Helper()
	return s.waitLogN(timeout, what, 1, match)[0]
}

// waitLogN waits for n matching log lines and returns them.
func (s *e2eServer) waitLogN(timeout time.Duration, what string, n int, match func(logRecord) bool) []logRecord {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	exited := false
	for {
		lines, changed := s.log.snapshot()
		var found []logRecord
		for _, r := range lines {
			if r.fields != nil && match(r) {
				found = append(found, r)
			}
		}
		if len(found) >= n {
			return found
		}
		if exited {
			s.t.Fatalf("mediad exited (%v) while waiting for %q", s.proc.err, what)
		}
		select {
		case <-changed:
		case <-s.proc.done:
			// Wait has returned, so every line is in: look once more.
			exited = true
		case <-deadline.C:
			s.t.Fatalf("no %d× %q in mediad's log within %v (found %d)", n, what, timeout, len(found))
		}
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func (s *e2eServer) url(app, name string) string {
	return "rtmp://" + s.rtmpAddr + "/" + app + "/" + name
}

// publish sends the source clip in real time to app/name (name may carry
// a query string); extra are ffmpeg output options.
func (s *e2eServer) publish(t *testing.T, src *sourceMedia, app, name string, extra ...string) *childProc {
	t.Helper()
	return s.startPublisher(t, src, true, app, name, extra)
}

// burst sends the source clip as fast as the server takes it.
func (s *e2eServer) burst(t *testing.T, src *sourceMedia, app, name string, extra ...string) *childProc {
	t.Helper()
	return s.startPublisher(t, src, false, app, name, extra)
}

func (s *e2eServer) startPublisher(t *testing.T, src *sourceMedia, realtime bool, app, name string, extra []string) *childProc {
	t.Helper()
	args := []string{"-hide_banner", "-nostdin", "-v", "error"}
	if realtime {
		args = append(args, "-re")
	}
	args = append(args, "-i", src.path, "-c", "copy")
	args = append(args, extra...)
	args = append(args, "-f", "flv", s.url(app, name))
	return startChild(t, "publisher "+app+"/"+name, "ffmpeg", args...)
}

// play records what the server relays for app/key into out. -copyinkf
// keeps ffmpeg from dropping frames before the first keyframe itself, which
// would hide a server that starts a player mid-GOP.
func (s *e2eServer) play(t *testing.T, app, key, out string) *childProc {
	t.Helper()
	return startChild(t, "player "+app+"/"+key, "ffmpeg",
		"-hide_banner", "-nostdin", "-v", "error", "-i", s.url(app, key), "-c", "copy", "-copyinkf", "-f", "flv", out)
}

func isMsg(msg, app, key string) func(logRecord) bool {
	return func(r logRecord) bool {
		return r.str("message") == msg && r.str("app") == app && r.str("key") == key
	}
}

// recording waits until the broadcast on app/key is finalised and returns
// its segments, oldest first, after checking that they are exactly the
// files in the stream's directory.
func (s *e2eServer) recording(t *testing.T, app, key string) []string {
	t.Helper()
	r := s.waitLog(quickTimeout, "recording finalised "+app+"/"+key, isMsg("recording finalised", app, key))
	raw, _ := r.fields["segments"].([]any)
	var segs []string
	for _, v := range raw {
		p, _ := v.(string)
		segs = append(segs, p)
	}
	onDisk, err := filepath.Glob(filepath.Join(s.recordDir, app, key, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if !sameSet(segs, onDisk) {
		t.Fatalf("recording of %s/%s: log lists segments %q, directory holds %q", app, key, segs, onDisk)
	}
	if len(segs) == 0 {
		t.Fatalf("recording of %s/%s has no segments", app, key)
	}
	return segs
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// streamStatus is the part of /api/streams the tests read.
type streamStatus struct {
	App   string `json:"app"`
	Key   string `json:"key"`
	Live  bool   `json:"live"`
	Stats struct {
		VideoFrames uint64 `json:"video_frames"`
	} `json:"stats"`
}

// waitVideoFrames polls the admin API until app/key has relayed at least n
// video frames.
func (s *e2eServer) waitVideoFrames(t *testing.T, app, key string, n uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last uint64
	for time.Now().Before(deadline) {
		streams, err := s.streams()
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range streams {
			if st.App == app && st.Key == key && st.Live {
				last = st.Stats.VideoFrames
			}
		}
		if last >= n {
			return
		}
		<-tick.C
	}
	t.Fatalf("%s/%s relayed %d video frames within %v, want %d", app, key, last, timeout, n)
}

// adminClient opens a fresh connection for every request: an idle
// keep-alive connection would sit among the server's descriptors, which the
// upgrade tests count.
var adminClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (s *e2eServer) streams() ([]streamStatus, error) {
	resp, err := adminClient.Get("http://" + s.httpAddr + "/api/streams")
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("admin API: %s", resp.Status)
	}
	var out []streamStatus
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("admin API: decode /api/streams: %w", err)
	}
	return out, nil
}
