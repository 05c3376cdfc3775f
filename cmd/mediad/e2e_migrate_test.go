package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediad/mediad/state"
)

// TestE2ERefusedAtHello: a binary that reads no state version the running
// one can send is refused at hello, before anything parks, with a message
// naming both; the stream goes on and a good upgrade follows.
func TestE2ERefusedAtHello(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := source(t)
	publisherSlots.acquire(t, 1)

	// A future build that reads only the version after ours.
	next := state.Version + 1
	future := filepath.Join(t.TempDir(), "mediad-future")
	cmd := exec.Command("go", "build", "-o", future, "-ldflags",
		fmt.Sprintf("-X main.version=e2e-v%donly -X main.stateReads=%d-%d", next, next, next), ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	srv := startUpgradable(t, bins.a, false, "--segment", "0")
	srv.allowFailed = true // the refused binary logs its refusal and exits
	pub := srv.publish(t, src, "live", "refuse")
	srv.waitVideoFrames(t, "live", "refuse", srcFPS, quickTimeout)
	oldPID := srv.pid()

	installFile(t, future, srv.exe, 0o755)
	v, err := srv.upgrade(t, "")
	if err == nil || v.Outcome != "refused" {
		t.Fatalf("upgrade onto a v%d-only binary: outcome %q (%v), want refused", next, v.Outcome, err)
	}
	for _, want := range []string{"refused at hello", "nothing parked", "v1", fmt.Sprintf("v%d", next)} {
		if !strings.Contains(v.Error, want) {
			t.Errorf("verdict error %q does not mention %q", v.Error, want)
		}
	}
	if v.SessionsMoved != 0 || srv.pid() != oldPID {
		t.Errorf("refused upgrade moved %d sessions, pid %d -> %d", v.SessionsMoved, oldPID, srv.pid())
	}
	// The old process logs any parking before its verdict, and the log
	// reaches the test through a pipe: once the verdict's line is in, so
	// is every line before it.
	srv.waitLog(quickTimeout, "the refused upgrade's verdict", srv.verdictOf(oldPID))
	if parks := srv.matching(func(r logRecord) bool { return r.str("message") == "sessions parked" }); len(parks) != 0 {
		t.Errorf("sessions were parked for a refused upgrade: %s", parks[0].raw)
	}

	// A binary that reads what we send still takes over.
	installFile(t, bins.b.path, srv.exe, 0o755)
	v, err = srv.upgrade(t, "")
	if err != nil || v.Outcome != "success" || v.SessionsMoved != 1 {
		t.Fatalf("upgrade after the refusal: %+v (%v)", v, err)
	}
	srv.mu.Lock()
	srv.served = append(srv.served, v.NewPID)
	srv.version = bins.b.version
	srv.mu.Unlock()

	pub.waitOK(t, publishTimeout)
	segs := srv.recording(t, "live", "refuse")
	if len(segs) != 1 {
		t.Fatalf("recordings %v, want one file", segs)
	}
	got, err := probePackets(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	checkSamePackets(t, "recording across a refused and a good upgrade", got, src.packets)
}
