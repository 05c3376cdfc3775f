package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestE2EHTTPFLVUpgrades: ffmpeg reads a live stream over HTTP-FLV from
// the media listener while mediad is upgraded five times, alternating two
// builds. The viewer's connection moves with the publisher's each time; its
// file is the source packet for packet from its first keyframe, and it ends
// cleanly when the broadcast does.
func TestE2EHTTPFLVUpgrades(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := longSource(t)
	publisherSlots.acquire(t, 1)
	mediaAddr := freeAddr(t)
	srv := startUpgradable(t, bins.a, false, "--segment", "0", "--media", mediaAddr)
	if got := srv.waitLog(readyTimeout, "media HTTP listening", srv.fromPID(srv.pid(), "media HTTP listening")).str("addr"); got != mediaAddr {
		t.Fatalf("media HTTP listens on %q, asked for %s", got, mediaAddr)
	}

	pub := srv.publish(t, src, "live", "flv")
	srv.waitVideoFrames(t, "live", "flv", srcFPS, quickTimeout)
	out := filepath.Join(t.TempDir(), "viewer.flv")
	// -copyinkf: ffmpeg must not drop frames before a keyframe itself,
	// which would hide a server that starts a viewer mid-GOP.
	viewer := startChild(t, "HTTP-FLV viewer", "ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
		"-i", "http://"+mediaAddr+"/live/flv.flv", "-c", "copy", "-copyinkf", "-f", "flv", out)
	srv.waitLog(quickTimeout, "HTTP-FLV play started live/flv", func(r logRecord) bool {
		return isMsg("play started", "live", "flv")(r) && r.str("proto") == "http-flv"
	})

	rng := seededRand(t)
	builds := [2]mediadBuild{bins.b, bins.a}
	const upgrades = 5
	var verdicts []Verdict
	for i := range upgrades {
		gap := randomGap(rng, 1500*time.Millisecond, 4500*time.Millisecond)
		select {
		case <-pub.done:
			t.Fatalf("the publisher ended before upgrade %d of %d: %v", i+1, upgrades, pub.err)
		case <-viewer.done:
			t.Fatalf("the HTTP-FLV viewer ended before upgrade %d of %d: %v", i+1, upgrades, viewer.err)
		case <-time.After(gap):
		}
		v := srv.mustUpgrade(t, builds[i%2])
		logVerdict(t, i+1, v)
		if v.SessionsMoved != 2 {
			t.Errorf("upgrade %d moved %d sessions, want 2 (the publisher and the HTTP-FLV viewer)", i+1, v.SessionsMoved)
		}
		verdicts = append(verdicts, v)
		running(t, viewer, fmt.Sprintf("after upgrade %d", i+1))
	}
	logVerdictSummary(t, verdicts)

	pub.waitOK(t, longPublishTimeout)
	// The end of the broadcast is the end of the viewer's file.
	viewer.waitOK(t, quickTimeout)
	if n := len(srv.matching(isMsg("play started", "live", "flv"))); n != 1 {
		t.Errorf("%d \"play started\" for live/flv, want 1: the viewer reconnected", n)
	}
	srv.endsOnlyInLast(t, "live", "flv")

	got := mustProbe(t, out)
	checkRelay(t, "HTTP-FLV viewer", got, src.packets)
	checkTimeline(t, "HTTP-FLV viewer", got)
	decodeClean(t, out)
}
