package main

// End-to-end test of mediad as PID 1 of a PID namespace, as in a container
// (pid1.go): upgrades under a live publish must not end the namespace,
// every old process must be reaped, signals to PID 1 must reach whichever
// process serves, and SIGTERM to PID 1 must stop everything cleanly.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nsProc is a process of a PID namespace, seen from the test's namespace.
type nsProc struct {
	hostPID, nsPID int
	ppid           int // in the test's namespace
	state          byte
	name           string
}

func (p nsProc) String() string {
	return fmt.Sprintf("%s[ns %d, host %d, %c]", p.name, p.nsPID, p.hostPID, p.state)
}

// pidNS names the PID namespace of pid.
func pidNS(pid int) (string, error) {
	return os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
}

// readProcStatus reads the fields of /proc/PID/status the test needs.
func readProcStatus(pid int) (nsProc, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nsProc{}, err
	}
	p := nsProc{hostPID: pid}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			p.name = v
		case "State":
			if v != "" {
				p.state = v[0]
			}
		case "PPid":
			p.ppid, _ = strconv.Atoi(v)
		case "NSpid":
			// Outermost namespace first, the process's own last.
			f := strings.Fields(v)
			p.nsPID, _ = strconv.Atoi(f[len(f)-1])
		}
	}
	return p, nil
}

// procsIn lists the processes of namespace ns.
func procsIn(ns string) ([]nsProc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []nsProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if n, err := pidNS(pid); err != nil || n != ns {
			continue // gone meanwhile, or elsewhere
		}
		p, err := readProcStatus(pid)
		if err != nil {
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b nsProc) int { return a.nsPID - b.nsPID })
	return out, nil
}

func intField(r logRecord, key string) int {
	f, _ := r.fields[key].(float64)
	return int(f)
}

// childOf waits for the child of parent, as unshare --fork starts it.
func childOf(t *testing.T, parent int) int {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if p, err := readProcStatus(pid); err == nil && p.ppid == parent {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("unshare (pid %d) started no child within %v", parent, readyTimeout)
	return 0
}

// waitNSProcs waits until namespace ns holds exactly the processes want
// (namespace PIDs), none of them a zombie: every process that ended was
// reaped.
func waitNSProcs(t *testing.T, ns string, want []int, timeout time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		procs, err := procsIn(ns)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		zombie := false
		for _, p := range procs {
			got = append(got, p.nsPID)
			zombie = zombie || p.state == 'Z' || p.state == 'X'
		}
		if slices.Equal(got, want) && !zombie {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the namespace holds %v, want exactly ns PIDs %v and no zombie, within %v", what, procs, want, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestE2EPID1Upgrades runs mediad as PID 1 of a new PID namespace and
// upgrades it four times under a live publish: three times with `mediad
// upgrade`, alternating two builds, and once with SIGHUP sent to PID 1.
// The namespace lives on, each old process is reaped, the publish and its
// one recording are whole, and SIGTERM to PID 1 stops everything with
// status 0.
func TestE2EPID1Upgrades(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe", "unshare")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the PID namespace test needs root, and CI=true")
		}
		t.Skip("the PID namespace test needs root")
	}
	t.Parallel()
	bins := upgradeBuilds(t)
	src := source(t)
	publisherSlots.acquire(t, 1)

	const drain = 5 * time.Second
	dir := t.TempDir()
	s := &upgServer{
		e2eServer: &e2eServer{t: t, log: newServerLog(), recordDir: filepath.Join(dir, "rec"), rtmpAddr: freeAddr(t), httpAddr: freeAddr(t)},
		exe:       filepath.Join(dir, "mediad"),
		pidfile:   filepath.Join(dir, "mediad.pid"),
		version:   bins.a.version,
	}
	installFile(t, bins.a.path, s.exe, 0o755)
	// --kill-child: should the test fail, killing unshare kills the
	// namespace's PID 1, and with it the whole namespace.
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", "--mount-proc", s.exe,
		"--rtmp", s.rtmpAddr, "--http", s.httpAddr, "--pidfile", s.pidfile,
		"--record-dir", s.recordDir, "--log-format", "json", "--segment", "0",
		"--shutdown-timeout", "10s", "--drain-timeout", drain.String())
	p := startServerProc(t, "unshare mediad", cmd, s.log)
	s.proc = p
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("unshare output:\n%s\nmediad log (tail):\n%s", tail(p.out.Bytes(), 20), s.log.tail(80))
		}
	})

	initHost := childOf(t, cmd.Process.Pid)
	ns, err := pidNS(initHost)
	if err != nil {
		t.Fatal(err)
	}
	if own, _ := pidNS(os.Getpid()); own == ns {
		t.Fatalf("unshare's child shares the test's PID namespace %s", ns)
	}
	started := s.waitLog(readyTimeout, "init started mediad", s.fromPID(1, "mediad init started mediad"))
	first := intField(started, "child")
	ready := s.waitLog(readyTimeout, "mediad ready", s.fromPID(first, "mediad ready"))
	if got := ready.str("rtmp"); got != s.rtmpAddr {
		t.Fatalf("mediad serves RTMP on %s, asked for %s", got, s.rtmpAddr)
	}
	s.served = []int{first}
	waitNSProcs(t, ns, []int{1, first}, quickTimeout, "at start")

	pub := s.publish(t, src, "live", "pid1")
	s.waitVideoFrames(t, "live", "pid1", srcFPS, quickTimeout)

	// afterUpgrade checks what must hold once old has handed over to newPID.
	afterUpgrade := func(i, old, newPID int, version string) {
		t.Helper()
		s.adopt(t, old, newPID, version)
		// The old process exits after its drain; PID 1 reaps it.
		waitNSProcs(t, ns, []int{1, newPID}, drain+quickTimeout, fmt.Sprintf("after upgrade %d", i))
		// PID 1 logs the reap after wait4 returned, so the process leaves
		// /proc before the line is written: wait for the line, then count.
		reapedOld := func(r logRecord) bool {
			return r.str("message") == "mediad init reaped a process" && intField(r, "child") == old
		}
		reaped := s.waitLogN(quickTimeout, fmt.Sprintf("PID 1 reaped %d", old), 1, reapedOld)
		if len(reaped) != 1 || reaped[0].fields["status"] != 0.0 || reaped[0].fields["serving"] != false {
			t.Errorf("upgrade %d: PID 1's record of reaping the old process %d: %v", i, old, reaped)
		}
		running(t, p, fmt.Sprintf("after upgrade %d", i))
		running(t, pub, fmt.Sprintf("after upgrade %d", i))
		s.waitVideoFrames(t, "live", "pid1", uint64(srcFPS*(i+2)), quickTimeout)
	}

	builds := [2]mediadBuild{bins.b, bins.a}
	var verdicts []Verdict
	const commands = 3
	for i := range commands {
		next := builds[i%2]
		old := s.pid()
		installFile(t, next.path, s.exe, 0o755)
		v, err := s.upgrade(t, "")
		if err != nil || v.Outcome != "success" {
			t.Fatalf("upgrade %d: mediad upgrade exit %v, verdict %s: %s", i+1, err, v.Outcome, v.Error)
		}
		if v.OldPID != old || v.NewPID <= 1 || v.NewPID == old || v.NewVersion != next.version || v.SessionsMoved != 1 {
			t.Errorf("upgrade %d: verdict pid %d -> %d, version %q, %d sessions moved; want pid %d -> another, version %q, 1 session",
				i+1, v.OldPID, v.NewPID, v.NewVersion, v.SessionsMoved, old, next.version)
		}
		logVerdict(t, i+1, v)
		verdicts = append(verdicts, v)
		afterUpgrade(i+1, old, v.NewPID, next.version)
	}

	// SIGHUP to PID 1, as `docker kill -s HUP` sends it: PID 1 forwards it
	// to the serving process, which it did not start.
	next := builds[commands%2]
	old := s.pid()
	installFile(t, next.path, s.exe, 0o755)
	if err := syscall.Kill(initHost, syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP to PID 1 (host pid %d): %v", initHost, err)
	}
	r := s.waitLog(quickTimeout, "upgrade verdict after SIGHUP to PID 1", s.verdictOf(old))
	if r.str("outcome") != "success" {
		t.Fatalf("upgrade by SIGHUP to PID 1 failed: %s", r.raw)
	}
	afterUpgrade(commands+1, old, intField(r, "new_pid"), next.version)
	logVerdictSummary(t, verdicts)

	pub.waitOK(t, publishTimeout)
	segs := s.recording(t, "live", "pid1")
	s.endsOnlyInLast(t, "live", "pid1")
	if len(segs) != 1 {
		t.Fatalf("recorded %d files %q, want 1", len(segs), segs)
	}
	got := mustProbe(t, segs[0])
	checkSamePackets(t, segs[0], got, src.packets)
	checkTimeline(t, segs[0], got)

	// SIGTERM to PID 1, as a container runtime stops a container.
	last := s.pid()
	if err := syscall.Kill(initHost, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to PID 1: %v", err)
	}
	if err := p.wait(t, stopTimeout); err != nil {
		t.Errorf("unshare exited with %v after SIGTERM to PID 1, want status 0", err)
	}
	s.waitLog(quickTimeout, "mediad stopped", s.fromPID(last, "mediad stopped"))
	exit := s.waitLog(quickTimeout, "init exiting", s.fromPID(1, "mediad init exiting: no mediad process left"))
	if exit.fields["status"] != 0.0 {
		t.Errorf("PID 1 exited with status %v, want 0", exit.fields["status"])
	}
	if procs, err := procsIn(ns); err != nil || len(procs) != 0 {
		t.Errorf("the namespace still holds %v (%v) after PID 1 exited", procs, err)
	}
	if _, err := os.Stat(s.pidfile); !os.IsNotExist(err) {
		t.Errorf("PID file %s left behind: %v", s.pidfile, err)
	}
	lines, _ := s.log.snapshot()
	for _, r := range lines {
		if r.fields == nil {
			t.Errorf("mediad or unshare wrote a non-JSON line: %s", r.raw)
			continue
		}
		if lvl := r.str("level"); lvl == "error" || lvl == "fatal" || lvl == "panic" || lvl == "warn" && r.str("role") == "init" {
			t.Errorf("logged at level %s: %s", lvl, r.raw)
		}
	}
	if bytes.Contains(p.out.Bytes(), []byte("panic")) {
		t.Errorf("stdout mentions a panic:\n%s", tail(p.out.Bytes(), 20))
	}
}
