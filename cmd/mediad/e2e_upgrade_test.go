package main

// End-to-end tests of the live upgrade (DESIGN.md §4): the real binary
// replaced at the path it was started from while real ffmpeg publishers and
// players, and rtmpload's synthetic publishers, stay connected; faults
// injected into the new process; SIGHUP back to back. What was sent is
// compared with the recordings and with what the players received.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediad/mediad/handoff"
)

// The long clip outlasts ten upgrades at random moments, or a table of
// failed ones.
const (
	longSeconds        = 60
	longPublishTimeout = longSeconds*time.Second + 60*time.Second
)

// Bounds on the upgrade machinery. A healthy run never comes near them.
const (
	// fdSettle: after a failed upgrade, descriptors of the attempt must be
	// closed within this time.
	fdSettle = 2 * time.Second
	// drainBound: an old process exits within its drain timeout (10 s by
	// default) plus this.
	drainBound = 10*time.Second + quickTimeout
)

// mediadBuild is a mediad binary and the version it reports.
type mediadBuild struct {
	path    string
	version string
}

// upgradeBinaries is what the upgrade tests install and run.
type upgradeBinaries struct {
	a, b     mediadBuild // two versions of the same code
	fault    mediadBuild // built with -tags faultinject
	rtmpload string
}

var upgradeBins struct {
	once sync.Once
	bins upgradeBinaries
	err  error

	longOnce sync.Once
	long     *sourceMedia
	longErr  error
}

// upgradeBuilds builds, on first use, what the upgrade tests install: a
// second version of mediad, a fault-injecting one, and rtmpload.
func upgradeBuilds(t *testing.T) upgradeBinaries {
	t.Helper()
	u := &upgradeBins
	u.once.Do(func() {
		b := upgradeBinaries{
			a:        mediadBuild{e2e.bin, "e2e"},
			b:        mediadBuild{filepath.Join(e2e.dir, "mediad-b"), "e2e-b"},
			fault:    mediadBuild{filepath.Join(e2e.dir, "mediad-fault"), "e2e-fault"},
			rtmpload: filepath.Join(e2e.dir, "rtmpload"),
		}
		builds := [][]string{
			{"-o", b.b.path, "-ldflags", "-X main.version=" + b.b.version, "."},
			{"-o", b.fault.path, "-tags", "faultinject", "-ldflags", "-X main.version=" + b.fault.version, "."},
			{"-o", b.rtmpload, "../rtmpload"},
		}
		for _, args := range builds {
			cmd := exec.Command("go", append([]string{"build"}, args...)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				u.err = fmt.Errorf("go build %s: %w\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
		u.bins = b
	})
	if u.err != nil {
		t.Fatal(u.err)
	}
	return u.bins
}

// longSource is the clip encoded for longSeconds.
func longSource(t *testing.T) *sourceMedia {
	t.Helper()
	u := &upgradeBins
	u.longOnce.Do(func() { u.long, u.longErr = encodeSource(filepath.Join(e2e.dir, "src-long.flv"), longSeconds) })
	if u.longErr != nil {
		t.Fatalf("long source clip: %v", u.longErr)
	}
	return u.long
}

// shortClip is the first seconds of the source, cut without re-encoding:
// a publish that is over quickly.
func shortClip(t *testing.T, seconds int) *sourceMedia {
	t.Helper()
	src := source(t)
	path := filepath.Join(t.TempDir(), "short.flv")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
		"-i", src.path, "-t", strconv.Itoa(seconds), "-c", "copy", "-f", "flv", path).CombinedOutput()
	if err != nil {
		t.Fatalf("cutting the short clip: %v\n%s", err, out)
	}
	return &sourceMedia{path: path, packets: mustProbe(t, path)}
}

// seededRand returns the generator of a test's random schedule. The seed is
// logged; MEDIAD_E2E_SEED replays it.
func seededRand(t *testing.T) *mrand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("MEDIAD_E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("MEDIAD_E2E_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("random schedule seed %d (MEDIAD_E2E_SEED=%d replays it)", seed, seed)
	return mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// randomGap is a duration in [lo, hi).
func randomGap(rng *mrand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// installFile puts a copy of src at dst with mode, as a deployment would:
// written beside it, then renamed over it, so that no process ever starts a
// half-written binary.
func installFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	installBytes(t, b, dst, mode)
}

func installBytes(t *testing.T, b []byte, dst string, mode os.FileMode) {
	t.Helper()
	tmp := dst + ".new"
	// A binary installed here is executed next. Had another test forked
	// while the file was open for writing, the child would hold it open
	// until its own exec, and our exec would fail with ETXTBSY ("text file
	// busy", seen once in CI). syscall.ForkLock keeps forks out meanwhile.
	syscall.ForkLock.RLock()
	err := os.WriteFile(tmp, b, mode)
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode passes through the umask.
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address with a port nothing listens on.
// Upgradable servers get fixed ports, as in production (see
// TestE2EUpgradeEphemeralPorts for port 0).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// upgServer is a mediad that upgrades itself: the process started is only
// the first of a line, each the child of the one before. Every process
// writes to the same log pipe, so the log is the whole line's.
type upgServer struct {
	*e2eServer
	exe     string // the path it was started from; upgrades install here
	pidfile string
	version string // reported by the serving process

	// allowFailed: the test makes upgrades fail on purpose, so the old
	// process's "upgrade failed" lines and the failed new processes' own
	// errors are expected.
	allowFailed bool

	mu     sync.Mutex
	served []int // PIDs of every process that served, in order
}

type serverStatus struct {
	Version  string `json:"version"`
	PID      int    `json:"pid"`
	Ready    bool   `json:"ready"`
	Sessions int    `json:"sessions"`
}

// startUpgradable runs b from a path of its own, with a PID file and fixed
// ports (ephemeral ones if asked), and waits until it serves.
func startUpgradable(t *testing.T, b mediadBuild, ephemeral bool, extra ...string) *upgServer {
	t.Helper()
	rtmp, admin := "127.0.0.1:0", "127.0.0.1:0"
	if !ephemeral {
		rtmp, admin = freeAddr(t), freeAddr(t)
	}
	return startUpgradableOn(t, b, rtmp, admin, extra...)
}

// startUpgradableOn is startUpgradable with the listen addresses given;
// an empty rtmp leaves it to the config file that extra names.
func startUpgradableOn(t *testing.T, b mediadBuild, rtmp, admin string, extra ...string) *upgServer {
	t.Helper()
	dir := t.TempDir()
	s := &upgServer{
		e2eServer: &e2eServer{t: t, log: newServerLog(), recordDir: filepath.Join(dir, "rec")},
		exe:       filepath.Join(dir, "mediad"),
		pidfile:   filepath.Join(dir, "mediad.pid"),
		version:   b.version,
	}
	installFile(t, b.path, s.exe, 0o755)
	// A media listener on an ephemeral port: tests run in parallel, and
	// an upgrade keeps the port it was given (extra may name one).
	args := []string{"--http", admin, "--pidfile", s.pidfile, "--media", "127.0.0.1:0",
		"--record-dir", s.recordDir, "--log-format", "json", "--shutdown-timeout", "10s"}
	if rtmp != "" {
		args = append(args, "--rtmp", rtmp)
	}
	args = append(args, extra...)
	cmd := exec.Command(s.exe, args...)
	s.proc = startServerProc(t, "mediad", cmd, s.log)
	s.served = []int{cmd.Process.Pid}
	t.Cleanup(s.stop)

	ready := s.waitLog(readyTimeout, "mediad ready", s.fromPID(cmd.Process.Pid, "mediad ready"))
	s.rtmpAddr = ready.str("rtmp")
	s.httpAddr = s.waitLog(readyTimeout, "admin HTTP listening", s.fromPID(cmd.Process.Pid, "admin HTTP listening")).str("addr")
	if !strings.HasSuffix(rtmp, ":0") && rtmp != "" && s.rtmpAddr != rtmp || !strings.HasSuffix(admin, ":0") && s.httpAddr != admin {
		t.Fatalf("mediad serves rtmp=%s http=%s, asked for %s and %s", s.rtmpAddr, s.httpAddr, rtmp, admin)
	}
	if s.rtmpAddr == "" || s.httpAddr == "" {
		t.Fatalf("mediad did not log its addresses: rtmp=%q http=%q", s.rtmpAddr, s.httpAddr)
	}
	return s
}

// fromPID matches a log message written by one process.
func (s *upgServer) fromPID(pid int, msg string) func(logRecord) bool {
	return func(r logRecord) bool { return r.str("message") == msg && logPID(r) == pid }
}

// verdictOf matches the one "upgrade" line of the upgrade that replaced
// (or failed to replace) pid: the old process logs it for a failure or a
// refusal, the new process for a success, once it has the stalls.
func (s *upgServer) verdictOf(pid int) func(logRecord) bool {
	return func(r logRecord) bool { return r.str("message") == "upgrade" && intField(r, "old_pid") == pid }
}

func logPID(r logRecord) int {
	f, _ := r.fields["pid"].(float64)
	return int(f)
}

// pid is the serving process as the test last established it.
func (s *upgServer) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served[len(s.served)-1]
}

func (s *upgServer) servedBy(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.served, pid)
}

func (s *upgServer) matching(match func(logRecord) bool) []logRecord {
	lines, _ := s.log.snapshot()
	var out []logRecord
	for _, r := range lines {
		if r.fields != nil && match(r) {
			out = append(out, r)
		}
	}
	return out
}

// stop ends the serving process with SIGTERM and waits for the whole line
// to be gone: the log pipe closes once the last holder exits. The process
// started first must have exited 0, and nothing may have logged an error
// that the test did not cause on purpose.
func (s *upgServer) stop() {
	t := s.t
	select {
	case <-s.proc.done:
		if !s.stoppedByTest {
			t.Errorf("every mediad process exited before the end of the test (first: %v)", s.proc.err)
		}
	default:
		pid := s.pid()
		if p, err := readPID(s.pidfile); err == nil && p != pid {
			t.Errorf("PID file names %d, the serving process is %d", p, pid)
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM mediad pid %d: %v", pid, err)
		}
		select {
		case <-s.proc.done:
			if s.proc.err != nil {
				t.Errorf("the first mediad process (pid %d) exited with %v", s.proc.cmd.Process.Pid, s.proc.err)
			}
		case <-time.After(stopTimeout):
			t.Errorf("mediad pid %d did not stop within %v of SIGTERM, or a process it started is still alive", pid, stopTimeout)
			s.killLine()
			<-s.proc.done
		}
	}
	lines, _ := s.log.snapshot()
	for _, r := range lines {
		if r.fields == nil {
			// A new binary that cannot read its settings says so before it
			// has a logger.
			if s.allowFailed && strings.HasPrefix(r.raw, "mediad: ") {
				continue
			}
			t.Errorf("mediad wrote a non-JSON line (a panic?): %s", r.raw)
			break
		}
		lvl := r.str("level")
		if lvl != "error" && lvl != "fatal" && lvl != "panic" {
			continue
		}
		if s.allowFailed && (!s.servedBy(logPID(r)) || r.str("message") == "upgrade" && (r.str("outcome") == "failed" || r.str("outcome") == "refused")) {
			continue
		}
		t.Errorf("mediad logged at level %s: %s", lvl, r.raw)
	}
	if t.Failed() {
		t.Logf("mediad log (tail):\n%s", s.log.tail(60))
	}
}

// killLine kills every process of the line still alive: each logged its
// PID, and runs the binary at s.exe.
func (s *upgServer) killLine() {
	lines, _ := s.log.snapshot()
	seen := map[int]bool{}
	for _, r := range lines {
		pid := logPID(r)
		if pid == 0 || seen[pid] {
			continue
		}
		seen[pid] = true
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.HasPrefix(cmdline, []byte(s.exe+"\x00")) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// upgrade runs `mediad upgrade --json` against the server, optionally with
// a fault for the new process, and returns the verdict and the command's
// exit error.
func (s *upgServer) upgrade(t *testing.T, fault string) (Verdict, error) {
	t.Helper()
	args := []string{"upgrade", "--http", s.httpAddr, "--pidfile", s.pidfile, "--json", "--timeout", "60s"}
	if fault != "" {
		args = append(args, "--fault", fault)
	}
	cmd := exec.Command(e2e.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var v Verdict
	if err := json.Unmarshal(stdout.Bytes(), &v); err != nil {
		t.Fatalf("mediad upgrade (exit %v) printed no verdict: %v\nstdout: %s\nstderr: %s", runErr, err, stdout.Bytes(), stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Logf("mediad upgrade stderr: %s", stderr.Bytes())
	}
	return v, runErr
}

// mustUpgrade installs next at the server's path, upgrades, and checks the
// verdict, the status the new process reports, the PID file, and that the
// old process exits.
func (s *upgServer) mustUpgrade(t *testing.T, next mediadBuild) Verdict {
	t.Helper()
	old, oldVersion := s.pid(), s.version
	installFile(t, next.path, s.exe, 0o755)
	v, err := s.upgrade(t, "")
	if err != nil || v.Outcome != "success" {
		t.Fatalf("upgrade %s -> %s: mediad upgrade exit %v, verdict %s: %s", oldVersion, next.version, err, v.Outcome, v.Error)
	}
	if v.OldPID != old || v.NewPID == 0 || v.NewPID == old {
		t.Errorf("verdict names pid %d -> %d, the serving process was %d", v.OldPID, v.NewPID, old)
	}
	if v.OldVersion != oldVersion || v.NewVersion != next.version {
		t.Errorf("verdict names version %q -> %q, want %q -> %q", v.OldVersion, v.NewVersion, oldVersion, next.version)
	}
	s.adopt(t, old, v.NewPID, next.version)
	waitExited(t, old, drainBound)
	return v
}

// adopt waits until the admin API answers from newPID with version and the
// PID file names it, then takes it as the serving process.
func (s *upgServer) adopt(t *testing.T, old, newPID int, version string) {
	t.Helper()
	st := s.waitStatus(t, func(st serverStatus) bool { return st.PID == newPID }, fmt.Sprintf("pid %d", newPID))
	if st.Version != version {
		t.Errorf("/api/status of pid %d reports version %q, want %q", newPID, st.Version, version)
	}
	if p, err := readPID(s.pidfile); err != nil || p != newPID {
		t.Errorf("after the upgrade %d -> %d the PID file names %d (%v)", old, newPID, p, err)
	}
	s.mu.Lock()
	s.served = append(s.served, newPID)
	s.version = version
	s.mu.Unlock()
}

func (s *upgServer) status() (serverStatus, error) {
	resp, err := adminClient.Get("http://" + s.httpAddr + "/api/status")
	if err != nil {
		return serverStatus{}, err
	}
	defer resp.Body.Close()
	var st serverStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return serverStatus{}, fmt.Errorf("decode /api/status (%s): %w", resp.Status, err)
	}
	return st, nil
}

// waitStatus polls /api/status until ok accepts it. While an upgrade ends
// both processes accept on the admin listener, so one answer is not enough.
func (s *upgServer) waitStatus(t *testing.T, ok func(serverStatus) bool, what string) serverStatus {
	t.Helper()
	deadline := time.Now().Add(quickTimeout)
	var last serverStatus
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = s.status()
		if lastErr == nil && ok(last) {
			return last
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("/api/status did not report %s within %v: last %+v, error %v", what, quickTimeout, last, lastErr)
	return last
}

// processExited reports whether pid is gone or a zombie: the old processes
// of a line are re-parented when their parent exits, and reaped by init in
// its own time.
func processExited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name, which may itself
	// hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	state := b[i+2]
	return state == 'Z' || state == 'X'
}

func waitExited(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !processExited(pid) {
		if time.Now().After(deadline) {
			t.Errorf("old process %d still runs %v after the upgrade", pid, timeout)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var hlsSegmentFile = regexp.MustCompile(`/s[0-9]+\.m4s$`)

// fdSet counts a process's open descriptors by what they refer to: a path,
// "socket", "pipe", or an anon_inode kind.
type fdSet map[string]int

func openFDs(pid int) (fdSet, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	set := fdSet{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		switch {
		case strings.HasPrefix(target, "socket:"):
			target = "socket"
		case strings.HasPrefix(target, "pipe:"):
			target = "pipe"
		case hlsSegmentFile.MatchString(target):
			// The open LL-HLS segment: one per stream, its name moving on
			// every second.
			target = "hls segment " + filepath.Dir(target)
		}
		set[target]++
	}
	return set, nil
}

// matches compares with base: the same descriptors, except that one more
// /dev/null is allowed. tableflip keeps a copy of the handoff socket after
// a failed attempt (in the old process, until the next attempt) or for good
// (in the new one), and the handoff package points it at /dev/null.
func (s fdSet) matches(base fdSet) bool {
	for k, n := range base {
		if k != "/dev/null" && s[k] != n {
			return false
		}
	}
	for k, n := range s {
		if k == "/dev/null" {
			if n < base[k] || n > base[k]+1 {
				return false
			}
		} else if base[k] != n {
			return false
		}
	}
	return true
}

func (s fdSet) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	total := 0
	for _, k := range keys {
		fmt.Fprintf(&b, " %s×%d", k, s[k])
		total += s[k]
	}
	return fmt.Sprintf("%d:%s", total, b.String())
}

// stableFDs reads pid's descriptors until two reads 100 ms apart agree.
func stableFDs(t *testing.T, pid int) fdSet {
	t.Helper()
	prev, err := openFDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		cur, err := openFDs(pid)
		if err != nil {
			t.Fatal(err)
		}
		if cur.matches(prev) && prev.matches(cur) {
			return cur
		}
		prev = cur
	}
	t.Fatalf("pid %d: open descriptors never settled: %v", pid, prev)
	return nil
}

// checkFDs waits up to fdSettle for pid to hold what base lists.
func checkFDs(t *testing.T, pid int, base fdSet, what string) fdSet {
	t.Helper()
	deadline := time.Now().Add(fdSettle)
	for {
		got, err := openFDs(pid)
		if err == nil && got.matches(base) {
			return got
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: pid %d holds descriptors %v (%v); want %v, give or take one /dev/null", what, pid, got, err, base)
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logVerdict(t *testing.T, i int, v Verdict) {
	t.Helper()
	t.Logf("upgrade %2d: %s pid %d -> %s pid %d: %d sessions moved in %.1f ms; stall worst %.1f ms, p50 %.1f, p99 %.1f over %d streams",
		i, v.OldVersion, v.OldPID, v.NewVersion, v.NewPID, v.SessionsMoved, v.DurationMS, v.WorstStallMS, v.StallP50MS, v.StallP99MS, v.Stalls)
}

func logVerdictSummary(t *testing.T, vs []Verdict) {
	t.Helper()
	if len(vs) == 0 {
		return
	}
	var worstStall, worstDur, sumDur float64
	for _, v := range vs {
		worstStall, worstDur = max(worstStall, v.WorstStallMS), max(worstDur, v.DurationMS)
		sumDur += v.DurationMS
	}
	t.Logf("%d upgrades: duration mean %.1f ms, worst %.1f ms; worst stall %.1f ms", len(vs), sumDur/float64(len(vs)), worstDur, worstStall)
}

// running fails the test if p has already exited.
func running(t *testing.T, p *childProc, when string) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("%s exited %s: %v\n%s", p.name, when, p.err, tail(p.out.Bytes(), 20))
	default:
	}
}

// endsOnlyInLast checks that only the last serving process ended sessions
// of app/key: a process that handed a session over closes its copies
// without a word, it never resumes and tears the session down itself.
func (s *upgServer) endsOnlyInLast(t *testing.T, app, key string) {
	t.Helper()
	last := s.pid()
	ends := []string{"recording finalised", "publish ended", "connection closed", "connection closed by server shutdown", "connection dropped"}
	for _, r := range s.matching(func(r logRecord) bool {
		return r.str("app") == app && r.str("key") == key && slices.Contains(ends, r.str("message"))
	}) {
		if pid := logPID(r); pid != last {
			t.Errorf("%s/%s: pid %d, not the last process %d, ended a session: %s", app, key, pid, last, r.raw)
		}
	}
}

// TestE2EUpgradeUnderLoad upgrades ten times, at random moments,
// alternating two builds, while ffmpeg publishes and two ffmpeg players
// watch: nobody notices.
func TestE2EUpgradeUnderLoad(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := longSource(t)
	publisherSlots.acquire(t, 1)
	srv := startUpgradable(t, bins.a, false, "--segment", "0")
	dir := t.TempDir()

	type output struct {
		path string
		proc *childProc
	}
	var players []output
	for i := range 2 {
		path := filepath.Join(dir, fmt.Sprintf("player%d.flv", i))
		players = append(players, output{path, srv.play(t, "live", "show", path)})
	}
	srv.waitLogN(quickTimeout, "play started live/show", len(players), isMsg("play started", "live", "show"))
	pub := srv.publish(t, src, "live", "show")
	srv.waitVideoFrames(t, "live", "show", srcFPS, quickTimeout)

	// Ten gaps of at most 4.5 s end well before the 60 s clip does.
	rng := seededRand(t)
	builds := [2]mediadBuild{bins.b, bins.a}
	const upgrades = 10
	var verdicts []Verdict
	for i := range upgrades {
		gap := randomGap(rng, 1500*time.Millisecond, 4500*time.Millisecond)
		select {
		case <-pub.done:
			t.Fatalf("the publisher ended before upgrade %d of %d: %v", i+1, upgrades, pub.err)
		case <-time.After(gap):
		}
		v := srv.mustUpgrade(t, builds[i%2])
		logVerdict(t, i+1, v)
		if v.SessionsMoved != 1+len(players) {
			t.Errorf("upgrade %d moved %d sessions, want %d (a publisher and %d players)", i+1, v.SessionsMoved, 1+len(players), len(players))
		}
		// The publisher's stall, measured by the new process, which the
		// old one no longer waits for: mediad upgrade fetched it.
		if v.StallsPending || v.Stalls != 1 {
			t.Errorf("upgrade %d: mediad upgrade printed %d stalls (pending %v), want the publisher's from the new process", i+1, v.Stalls, v.StallsPending)
		}
		verdicts = append(verdicts, v)
		running(t, pub, fmt.Sprintf("after upgrade %d", i+1))
	}
	logVerdictSummary(t, verdicts)

	pub.waitOK(t, longPublishTimeout)
	for _, p := range players {
		p.proc.waitOK(t, quickTimeout)
	}
	// One connection each for the whole run: nobody reconnected.
	if n := len(srv.matching(isMsg("publish started", "live", "show"))); n != 1 {
		t.Errorf("%d \"publish started\" for live/show, want 1", n)
	}
	if n := len(srv.matching(isMsg("play started", "live", "show"))); n != len(players) {
		t.Errorf("%d \"play started\" for live/show, want %d", n, len(players))
	}

	segs := srv.recording(t, "live", "show")
	srv.endsOnlyInLast(t, "live", "show")
	if len(segs) != 1 {
		t.Fatalf("recorded %d files %q across %d upgrades, want 1", len(segs), segs, upgrades)
	}
	got := mustProbe(t, segs[0])
	checkSamePackets(t, segs[0], got, src.packets)
	checkTimeline(t, segs[0], got)
	for i, p := range players {
		got := mustProbe(t, p.path)
		start, offset := checkRelay(t, fmt.Sprintf("player %d", i), got, src.packets)
		if start != 0 || offset != 0 {
			t.Errorf("player %d joined before the publish but starts at source frame %d, dts offset %d", i, start, offset)
		}
	}
}

// rtmploadReport is the part of rtmpload's JSON report the tests read.
type rtmploadReport struct {
	Refused    int `json:"refused"`
	Failed     int `json:"failed"`
	Publishers []struct {
		Key           string `json:"key"`
		State         string `json:"state"`
		Started       bool   `json:"started"`
		Error         string `json:"error"`
		MediaMessages uint64 `json:"media_messages"`
		MediaBytes    uint64 `json:"media_bytes"`
		CRC32         string `json:"crc32"`
	} `json:"publishers"`
}

// flvMediaBytes sums the payload sizes of the audio and video tags of FLV
// files.
func flvMediaBytes(paths []string) (uint64, error) {
	var total uint64
	for _, path := range paths {
		n, err := flvFileMediaBytes(path)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

func flvFileMediaBytes(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || string(hdr[:3]) != "FLV" {
		return 0, fmt.Errorf("%s: not an FLV file (%v)", path, err)
	}
	// The header's own length, then PreviousTagSize0.
	if _, err := r.Discard(int(binary.BigEndian.Uint32(hdr[5:9])) - len(hdr) + 4); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	var total uint64
	var tag [11]byte
	for {
		if _, err := io.ReadFull(r, tag[:]); err == io.EOF {
			return total, nil
		} else if err != nil {
			return 0, fmt.Errorf("%s: tag header: %w", path, err)
		}
		size := int(tag[1])<<16 | int(tag[2])<<8 | int(tag[3])
		if typ := tag[0] & 0x1f; typ == 8 || typ == 9 {
			total += uint64(size)
		}
		if _, err := r.Discard(size + 4); err != nil {
			return 0, fmt.Errorf("%s: tag body: %w", path, err)
		}
	}
}

// startChildStdout is startChild with stdout kept apart from stderr.
func startChildStdout(t *testing.T, label, name string, args ...string) (*childProc, *syncBuffer) {
	t.Helper()
	stdout := &syncBuffer{}
	return launchChild(t, label, stdout, name, args...), stdout
}

// TestE2EUpgradeSyntheticLoad upgrades five times under fifty synthetic
// publishers and one ffmpeg: every byte each sent is recorded, in order.
func TestE2EUpgradeSyntheticLoad(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := source(t)
	// Fifty light streams weigh about as much as two ffmpeg publishers.
	publisherSlots.acquire(t, 2)
	srv := startUpgradable(t, bins.a, false, "--segment", "0")

	const streams = 50
	load, loadOut := startChildStdout(t, "rtmpload", bins.rtmpload,
		"-url", "rtmp://"+srv.rtmpAddr+"/load", "-n", strconv.Itoa(streams), "-synthetic", "-bitrate", "300k",
		"-duration", "25s", "-ramp", "3s", "-json")
	srv.waitLogN(quickTimeout, "publish started load/*", streams, func(r logRecord) bool {
		return r.str("message") == "publish started" && r.str("app") == "load"
	})
	pub := srv.publish(t, src, "live", "real")
	srv.waitLog(quickTimeout, "publish started live/real", isMsg("publish started", "live", "real"))

	// Five gaps of at most 2.4 s end well before the 20 s clip and the
	// 25 s synthetic run do.
	rng := seededRand(t)
	builds := [2]mediadBuild{bins.b, bins.a}
	const upgrades = 5
	var verdicts []Verdict
	for i := range upgrades {
		time.Sleep(randomGap(rng, 800*time.Millisecond, 2400*time.Millisecond))
		running(t, pub, fmt.Sprintf("before upgrade %d", i+1))
		running(t, load, fmt.Sprintf("before upgrade %d", i+1))
		v := srv.mustUpgrade(t, builds[i%2])
		logVerdict(t, i+1, v)
		if v.SessionsMoved != streams+1 {
			t.Errorf("upgrade %d moved %d sessions, want %d publishers", i+1, v.SessionsMoved, streams+1)
		}
		verdicts = append(verdicts, v)
	}
	logVerdictSummary(t, verdicts)

	pub.waitOK(t, publishTimeout)
	load.waitOK(t, publishTimeout)
	var rep rtmploadReport
	if err := json.Unmarshal(loadOut.Bytes(), &rep); err != nil {
		t.Fatalf("rtmpload report: %v\n%s", err, tail(loadOut.Bytes(), 20))
	}
	if len(rep.Publishers) != streams || rep.Refused+rep.Failed != 0 {
		t.Fatalf("rtmpload: %d publishers, %d refused, %d failed; want %d, none refused or failed", len(rep.Publishers), rep.Refused, rep.Failed, streams)
	}
	bad := 0
	for _, p := range rep.Publishers {
		if p.State != "ok" || !p.Started {
			t.Errorf("rtmpload publisher %s: state %s, started %v: %s", p.Key, p.State, p.Started, p.Error)
			continue
		}
		segs := srv.recording(t, "load", p.Key)
		out, err := exec.Command(bins.rtmpload, append([]string{"-checksum"}, segs...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rtmpload -checksum %s: %v\n%s", p.Key, err, out)
		}
		var crc string
		var tags uint64
		if _, err := fmt.Sscanf(string(out), "%s %d", &crc, &tags); err != nil {
			t.Fatalf("rtmpload -checksum %s printed %q: %v", p.Key, out, err)
		}
		size, err := flvMediaBytes(segs)
		if err != nil {
			t.Fatal(err)
		}
		if crc != p.CRC32 || tags != p.MediaMessages || size != p.MediaBytes {
			if bad++; bad <= 5 {
				t.Errorf("load/%s: recorded %d media tags, %d bytes, crc32 %s; rtmpload sent %d, %d bytes, crc32 %s",
					p.Key, tags, size, crc, p.MediaMessages, p.MediaBytes, p.CRC32)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d synthetic streams were not recorded exactly as sent", bad, streams)
	}
	if n := len(srv.matching(func(r logRecord) bool { return r.str("message") == "publish started" })); n != streams+1 {
		t.Errorf("%d \"publish started\", want %d: someone reconnected", n, streams+1)
	}

	segs := srv.recording(t, "live", "real")
	srv.endsOnlyInLast(t, "live", "real")
	if len(segs) != 1 {
		t.Fatalf("live/real: recorded %d files %q, want 1", len(segs), segs)
	}
	got := mustProbe(t, segs[0])
	checkSamePackets(t, segs[0], got, src.packets)
	checkTimeline(t, segs[0], got)
}

// TestE2EUpgradeFaults makes upgrades fail every way the new binary can,
// against one server while ffmpeg publishes and plays: each is reported
// failed, the old process serves on with no descriptor left behind, the
// next clean upgrade succeeds, and in the end nothing of the stream is
// lost.
func TestE2EUpgradeFaults(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := longSource(t)
	publisherSlots.acquire(t, 1)
	srv := startUpgradable(t, bins.fault, false, "--segment", "0", "--upgrade-timeout", "4s", "--drain-timeout", "5s")
	srv.allowFailed = true

	playerPath := filepath.Join(t.TempDir(), "player.flv")
	player := srv.play(t, "live", "faults", playerPath)
	srv.waitLog(quickTimeout, "play started live/faults", isMsg("play started", "live", "faults"))
	pub := srv.publish(t, src, "live", "faults")
	srv.waitVideoFrames(t, "live", "faults", srcFPS, quickTimeout)
	base := stableFDs(t, srv.pid())
	t.Logf("pid %d with a publisher and a player holds %v", srv.pid(), base)

	type faultCase struct {
		name    string
		fault   string // for the new process
		install func() // puts something other than a good binary at the path
		reason  string // in the verdict's error
		stage   string // in the verdict's error too, when set
		times   int    // attempts in a row before the clean upgrade; 0 is one
	}
	cases := []faultCase{
		{name: "binary missing", install: func() {
			if err := os.Remove(srv.exe); err != nil {
				t.Fatal(err)
			}
		}, reason: "no such file or directory"},
		{name: "binary not executable", install: func() { installFile(t, bins.fault.path, srv.exe, 0o644) }, reason: "not executable"},
		{name: "binary exits at start", install: func() { installBytes(t, []byte("#!/bin/sh\nexit 3\n"), srv.exe, 0o755) }, reason: "exit status 3", times: 3},
		{name: "hang after hello", fault: handoff.FaultAfterHello + "=hang", reason: "timed out"},
		{name: "hang after commit", fault: handoff.FaultAfterCommit + "=hang", reason: "timed out"},
		{name: "reject at restore", fault: handoff.FaultRestore + "=reject", reason: "injected fault at restore"},
	}
	for _, p := range handoff.FaultPoints {
		cases = append(cases, faultCase{name: "crash at " + p, fault: p + "=crash", reason: "exit status 3"})
	}
	// The old process pauses before Commit, so the new one has died before
	// it and sending Commit fails: the verdict must still carry the exit
	// status (a wait that consumed it once left only "broken pipe").
	cases = append(cases, faultCase{
		name:   "crash at after-prepared, Commit sent after the exit",
		fault:  handoff.FaultAfterPrepared + "=crash," + handoff.FaultOldBeforeCommit + "=pause",
		reason: "exit status 3", stage: "failed sending commit",
	})

	// Each process is compared with itself before its failed attempts: one
	// started by an upgrade holds one /dev/null more than the first (see
	// fdSet.matches), and a failed attempt may add one, but only one.
	before := base
	var failedMS []string
	for _, c := range cases {
		pid := srv.pid()
		for n := range max(c.times, 1) {
			name := c.name
			if c.times > 1 {
				name = fmt.Sprintf("%s (%d of %d in a row)", c.name, n+1, c.times)
			}
			if c.install != nil {
				c.install()
			}
			v, err := srv.upgrade(t, c.fault)
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Errorf("%s: mediad upgrade exit error %v, want a non-zero status", name, err)
			}
			if v.Outcome != "failed" || v.Error == "" || !strings.Contains(v.Error, c.reason) || !strings.Contains(v.Error, c.stage) {
				t.Errorf("%s: verdict %s %q, want failed with a reason mentioning %q and %q", name, v.Outcome, v.Error, c.reason, c.stage)
			}
			if v.OldPID != pid {
				t.Errorf("%s: verdict names old pid %d, the serving process is %d", name, v.OldPID, pid)
			}
			t.Logf("%s: failed after %.1f ms: %s", name, v.DurationMS, v.Error)
			failedMS = append(failedMS, fmt.Sprintf("%.0f", v.DurationMS))

			st := srv.waitStatus(t, func(serverStatus) bool { return true }, "anything")
			if st.PID != pid {
				t.Errorf("%s: /api/status answers from pid %d, want the old process %d", name, st.PID, pid)
			}
			running(t, pub, "after "+name)
			running(t, player, "after "+name)
			checkFDs(t, pid, before, name+": the old process after the failed upgrade")
		}

		good := srv.mustUpgrade(t, bins.fault)
		if good.SessionsMoved != 2 {
			t.Errorf("%s: the clean upgrade after it moved %d sessions, want 2", c.name, good.SessionsMoved)
		}
		before = checkFDs(t, good.NewPID, base, c.name+": the new process after the clean upgrade, against the first")
	}
	t.Logf("%d failed upgrades took %s ms", len(cases), strings.Join(failedMS, ", "))

	pub.waitOK(t, longPublishTimeout)
	player.waitOK(t, quickTimeout)
	segs := srv.recording(t, "live", "faults")
	srv.endsOnlyInLast(t, "live", "faults")
	if len(segs) != 1 {
		t.Fatalf("recorded %d files %q, want 1", len(segs), segs)
	}
	got := mustProbe(t, segs[0])
	checkSamePackets(t, segs[0], got, src.packets)
	checkTimeline(t, segs[0], got)
	start, offset := checkRelay(t, "player", mustProbe(t, playerPath), src.packets)
	if start != 0 || offset != 0 {
		t.Errorf("the player joined before the publish but starts at source frame %d, dts offset %d", start, offset)
	}
}

// attempt is one client connection made while upgrades ran.
type attempt struct {
	what       string
	start, end time.Time
	err        error
}

func (a attempt) overlaps(v Verdict) bool {
	end := v.Started.Add(time.Duration(v.DurationMS * float64(time.Millisecond)))
	return a.start.Before(end) && a.end.After(v.Started)
}

// rawHandshake connects, sends C0 and C1, reads S0, S1 and S2 and sends C2:
// proof that some process of the server took the connection.
func rawHandshake(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		return err
	}
	c0c1 := make([]byte, 1+1536)
	c0c1[0] = 3
	_, _ = rand.Read(c0c1[9:])
	if _, err := c.Write(c0c1); err != nil {
		return fmt.Errorf("write C0C1: %w", err)
	}
	s := make([]byte, 1+2*1536)
	if _, err := io.ReadFull(c, s); err != nil {
		return fmt.Errorf("read S0S1S2: %w", err)
	}
	if s[0] != 3 {
		return fmt.Errorf("S0 is version %d, want 3", s[0])
	}
	if _, err := c.Write(s[1 : 1+1536]); err != nil {
		return fmt.Errorf("write C2: %w", err)
	}
	return nil
}

// TestE2EConnectionDuringUpgrade connects all the while upgrades run:
// connections that arrive mid-upgrade wait in the accept queue or move
// with the rest, and every one is served.
func TestE2EConnectionDuringUpgrade(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	clip := shortClip(t, 2)
	publisherSlots.acquire(t, 1)
	srv := startUpgradable(t, bins.a, false, "--segment", "0")

	var (
		mu       sync.Mutex
		attempts []attempt
		keys     []string
	)
	record := func(a attempt) {
		mu.Lock()
		attempts = append(attempts, a)
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			a := attempt{what: "handshake", start: time.Now()}
			a.err = rawHandshake(srv.rtmpAddr)
			a.end = time.Now()
			record(a)
			time.Sleep(2 * time.Millisecond)
		}
	})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("burst%d", i)
			a := attempt{what: "publish live/" + key, start: time.Now()}
			ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
			out, err := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
				"-i", clip.path, "-c", "copy", "-f", "flv", srv.url("live", key)).CombinedOutput()
			cancel()
			if err != nil {
				err = fmt.Errorf("%w\n%s", err, out)
			}
			a.end, a.err = time.Now(), err
			record(a)
			mu.Lock()
			keys = append(keys, key)
			mu.Unlock()
		}
	})
	// Both loops are under way before the first upgrade.
	for deadline := time.Now().Add(quickTimeout); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(keys)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ffmpeg publish finished within %v", quickTimeout)
		}
	}

	rng := seededRand(t)
	builds := [2]mediadBuild{bins.b, bins.a}
	const upgrades = 4
	var verdicts []Verdict
	for i := range upgrades {
		time.Sleep(randomGap(rng, 200*time.Millisecond, 800*time.Millisecond))
		v := srv.mustUpgrade(t, builds[i%2])
		logVerdict(t, i+1, v)
		verdicts = append(verdicts, v)
	}
	close(stop)
	wg.Wait()

	overlapping := map[string]int{}
	failed := 0
	for _, a := range attempts {
		if a.err != nil {
			if failed++; failed <= 5 {
				t.Errorf("%s at %s: %v", a.what, a.start.Format("15:04:05.000"), a.err)
			}
		}
		kind, _, _ := strings.Cut(a.what, " ")
		for _, v := range verdicts {
			if a.overlaps(v) {
				overlapping[kind]++
				break
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d connections were not served", failed, len(attempts))
	}
	t.Logf("%d connections (%d ffmpeg publishes), %d raw handshakes and %d publishes overlapped an upgrade",
		len(attempts), len(keys), overlapping["handshake"], overlapping["publish"])
	if overlapping["handshake"] == 0 {
		t.Errorf("no connection overlapped any of the %d upgrades: the test showed nothing", upgrades)
	}
	for _, key := range keys {
		segs := srv.recording(t, "live", key)
		if len(segs) != 1 {
			t.Errorf("live/%s: recorded %d files %q, want 1", key, len(segs), segs)
			continue
		}
		checkSamePackets(t, "live/"+key, mustProbe(t, segs[0]), clip.packets)
	}
}

// successor waits for the PID file to name the process that replaces old,
// and returns at the first sign of it, as a script that reloads as soon as
// it can would see it. A failed upgrade ends the wait at once.
func (s *upgServer) successor(t *testing.T, old int, what string) int {
	t.Helper()
	failed := func(r logRecord) bool {
		return r.str("message") == "upgrade" && r.str("outcome") != "success" && logPID(r) == old
	}
	deadline := time.Now().Add(quickTimeout)
	for time.Now().Before(deadline) {
		// The PID file is cheap to read: look at it far more often than
		// the API is asked.
		for range 100 {
			if p, err := readPID(s.pidfile); err == nil && p != old {
				return p
			}
		}
		// Only the PID file is authoritative: a new process answers the
		// admin API while it takes over, an old one while it drains.
		if f := s.matching(failed); len(f) > 0 {
			t.Fatalf("%s: the upgrade failed: %s", what, f[0].raw)
		}
		if processExited(old) {
			// A successor names itself before its predecessor exits, but
			// both can happen between the last read above and this look:
			// read once more before calling it lost.
			if p, err := readPID(s.pidfile); err == nil && p != old {
				return p
			}
			t.Fatalf("%s: pid %d exited and nothing names a successor", what, old)
		}
	}
	t.Fatalf("%s: the PID file %s named no successor of pid %d within %v", what, s.pidfile, old, quickTimeout)
	return 0
}

// TestE2EBackToBack sends SIGHUP to each new process as soon as the PID
// file names it, six times over: each upgrade succeeds, and every old
// process exits within its drain time.
func TestE2EBackToBack(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := source(t)
	publisherSlots.acquire(t, 1)
	const drain = 5 * time.Second
	srv := startUpgradable(t, bins.a, false, "--segment", "0", "--drain-timeout", drain.String())
	pub := srv.publish(t, src, "live", "b2b")
	srv.waitVideoFrames(t, "live", "b2b", srcFPS, quickTimeout)

	var olds []int
	builds := [2]mediadBuild{bins.b, bins.a}
	const hups = 6
	for i := range hups {
		next := builds[i%2]
		old := srv.pid()
		installFile(t, next.path, srv.exe, 0o755)
		if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP %d to pid %d: %v", i+1, old, err)
		}
		pid := srv.successor(t, old, fmt.Sprintf("SIGHUP %d to pid %d", i+1, old))
		srv.mu.Lock()
		srv.served = append(srv.served, pid)
		srv.version = next.version
		srv.mu.Unlock()
		olds = append(olds, old)
	}
	for i, pid := range srv.served[1:] {
		r := srv.waitLog(quickTimeout, fmt.Sprintf("mediad ready from pid %d", pid), srv.fromPID(pid, "mediad ready"))
		if v := r.str("version"); v != builds[i%2].version {
			t.Errorf("SIGHUP %d: pid %d runs version %q, want %q", i+1, pid, v, builds[i%2].version)
		}
	}
	for _, pid := range olds {
		waitExited(t, pid, drain+quickTimeout)
	}
	// Every old process has exited, so every verdict has been written; the
	// test reads the log through a pipe, so wait for the lines to arrive.
	verdicts := srv.waitLogN(quickTimeout, "upgrade verdicts", len(olds), func(r logRecord) bool { return r.str("message") == "upgrade" })
	for _, r := range verdicts {
		t.Logf("verdict: %s", r.raw)
		if r.str("outcome") != "success" {
			t.Errorf("upgrade by SIGHUP failed: %s", r.raw)
		}
	}
	if len(verdicts) != len(olds) {
		t.Errorf("%d upgrade verdicts logged for %d upgrades by SIGHUP", len(verdicts), len(olds))
	}
	st := srv.waitStatus(t, func(serverStatus) bool { return true }, "anything")
	if st.PID != srv.pid() {
		t.Errorf("/api/status answers from pid %d, want %d", st.PID, srv.pid())
	}
	if p, err := readPID(srv.pidfile); err != nil || p != srv.pid() {
		t.Errorf("PID file names %d (%v), want %d", p, err, srv.pid())
	}

	pub.waitOK(t, publishTimeout)
	segs := srv.recording(t, "live", "b2b")
	srv.endsOnlyInLast(t, "live", "b2b")
	if len(segs) != 1 {
		t.Fatalf("recorded %d files %q, want 1", len(segs), segs)
	}
	got := mustProbe(t, segs[0])
	checkSamePackets(t, segs[0], got, src.packets)
	checkTimeline(t, segs[0], got)
}

// TestE2EUpgradeEphemeralPorts upgrades a server started on port 0 for both
// RTMP and the admin API: the new process inherits each listener in its
// own role, on the same addresses.
func TestE2EUpgradeEphemeralPorts(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	bins := upgradeBuilds(t)
	srv := startUpgradable(t, bins.a, true)
	rtmp, admin := srv.rtmpAddr, srv.httpAddr

	// The old process answers on the admin address until it has gone
	// (mustUpgrade waits for that): only then is an answer the new one's.
	v := srv.mustUpgrade(t, bins.b)
	ready := srv.waitLog(quickTimeout, "mediad ready from the new process", srv.fromPID(v.NewPID, "mediad ready"))
	adminLine := srv.waitLog(quickTimeout, "admin HTTP listening from the new process", srv.fromPID(v.NewPID, "admin HTTP listening"))
	if got := ready.str("rtmp"); got != rtmp {
		t.Errorf("the new process serves RTMP on %s, the old one on %s", got, rtmp)
	}
	if got := adminLine.str("addr"); got != admin {
		t.Errorf("the new process serves the admin API on %s, the old one on %s", got, admin)
	}
	if err := rawHandshake(rtmp); err != nil {
		t.Errorf("RTMP handshake on %s after the upgrade: %v", rtmp, err)
	}
	if st, err := srv.status(); err != nil || st.PID != v.NewPID {
		t.Errorf("/api/status on %s after the upgrade: %+v, %v; want pid %d", admin, st, err, v.NewPID)
	}
}
