package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediad/mediad/handoff"
)

// TestE2EStopDuringUpgrade: SIGTERM while an upgrade has the sessions
// parked (the new process hangs while it receives them, and the upgrade's
// deadline is a minute away). The stop cancels the upgrade instead of
// waiting for its deadline: the sessions are resumed in the old process,
// which ends them in order and exits 0 within its --shutdown-timeout; the
// verdict says the upgrade was cancelled; the new process is gone; the
// recording is one finalised file.
func TestE2EStopDuringUpgrade(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := longSource(t)
	publisherSlots.acquire(t, 1)
	srv := startUpgradable(t, bins.fault, false, "--segment", "0", "--upgrade-timeout", "60s")
	srv.allowFailed = true
	pub := srv.publish(t, src, "live", "stopup")
	srv.waitVideoFrames(t, "live", "stopup", srcFPS, quickTimeout)
	old := srv.pid()

	// mediad upgrade waits for the verdict; it runs off the test goroutine
	// and hands back what it printed.
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		cmd := exec.Command(e2e.bin, "upgrade", "--http", srv.httpAddr, "--json", "--timeout", "60s",
			"--fault", handoff.FaultMidItems+"=hang")
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		err := cmd.Run()
		done <- result{stdout.Bytes(), err}
	}()
	srv.waitLog(quickTimeout, "sessions parked", srv.fromPID(old, "sessions parked"))

	signalled := time.Now()
	srv.stoppedByTest = true
	if err := syscall.Kill(old, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.proc.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("mediad did not stop within 15 s of SIGTERM during an upgrade (its deadline was 60 s away)")
	}
	if srv.proc.err != nil {
		t.Errorf("mediad exit: %v", srv.proc.err)
	}
	t.Logf("mediad stopped %v after SIGTERM during an upgrade", time.Since(signalled).Round(time.Millisecond))

	var r result
	select {
	case r = <-done:
	case <-time.After(quickTimeout):
		t.Fatal("mediad upgrade did not return after the server stopped")
	}
	var v Verdict
	if err := json.Unmarshal(r.out, &v); err != nil {
		t.Fatalf("mediad upgrade (exit %v) printed no verdict: %v: %s", r.err, err, r.out)
	}
	if r.err == nil || v.Outcome != "failed" || !strings.Contains(v.Error, "this process is stopping") || v.SessionsMoved != 0 {
		t.Errorf("verdict %+v (exit %v), want a failure that names the stop", v, r.err)
	}
	t.Logf("verdict: %s", v.Error)
	if v.NewPID == 0 {
		t.Errorf("verdict names no new process: %+v", v)
	} else {
		waitExited(t, v.NewPID, quickTimeout)
	}
	_ = pub.wait(t, quickTimeout) // the publisher loses its server: any exit

	// The old process resumed the publisher and ended it itself.
	if n := len(srv.matching(srv.fromPID(old, "recording finalised"))); n != 1 {
		t.Errorf("the old process finalised %d recordings, want 1", n)
	}
	recs, _ := filepath.Glob(filepath.Join(srv.recordDir, "live", "stopup", "*.flv"))
	if len(recs) != 1 {
		t.Fatalf("recordings %v", recs)
	}
	decodeClean(t, recs[0])
	pkts, err := probePackets(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(codecPackets(pkts, "video")) < srcFPS {
		t.Errorf("recording holds %d video packets, want at least a second's", len(codecPackets(pkts, "video")))
	}
	checkSamePackets(t, fmt.Sprintf("recording of a broadcast stopped during an upgrade (%s)", recs[0]), pkts, src.packets[:len(pkts)])
}
