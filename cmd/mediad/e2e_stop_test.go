package main

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestE2EGracefulStop: SIGTERM during a live publish with a player. mediad
// exits 0 well within --shutdown-timeout, the recording is complete and
// readable, its last packet within 1 s of the signal, and the player was
// told the stream ended (ffmpeg exits 0 on NetStream.Play.Stop).
func TestE2EGracefulStop(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	src := source(t)
	publisherSlots.acquire(t, 1)
	srv := startServer(t, "--segment", "0", "--shutdown-timeout", "10s")
	out := filepath.Join(t.TempDir(), "player.flv")
	player := srv.play(t, "live", "stop", out)
	srv.waitLog(quickTimeout, "play started", isMsg("play started", "live", "stop"))
	pub := srv.publish(t, src, "live", "stop")
	srv.waitVideoFrames(t, "live", "stop", 5*srcFPS, quickTimeout)

	// What was on the wire when the signal went: the server's own count.
	sent := srv.videoFrames(t, "live", "stop")
	signalled := time.Now()
	srv.stoppedByTest = true
	if err := srv.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.proc.done:
	case <-time.After(10 * time.Second):
		t.Fatal("mediad did not stop within --shutdown-timeout")
	}
	if srv.proc.err != nil {
		t.Fatalf("mediad exit: %v", srv.proc.err)
	}
	t.Logf("mediad stopped %v after SIGTERM", time.Since(signalled).Round(time.Millisecond))
	if err := player.wait(t, quickTimeout); err != nil {
		t.Fatalf("player was not told the stream ended (exit %v)", err)
	}
	_ = pub.wait(t, quickTimeout) // the publisher loses its server: any exit

	recs, _ := filepath.Glob(filepath.Join(srv.recordDir, "live", "stop", "*.flv"))
	if len(recs) != 1 {
		t.Fatalf("recordings %v", recs)
	}
	decodeClean(t, recs[0])
	pkts, err := probePackets(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	video := codecPackets(pkts, "video")
	if uint64(len(video)) < sent {
		t.Fatalf("recording holds %d video packets, the server had counted %d before the signal", len(video), sent)
	}
	// At 30 fps, 1 s is 30 frames: the recording ends within 1 s of the
	// signal.
	if extra := uint64(len(video)) - sent; extra > srcFPS {
		t.Errorf("recording runs %d frames past the signal", extra)
	}
	checkSamePackets(t, "recording up to the stop", pkts, src.packets[:len(pkts)])
}

func (s *e2eServer) videoFrames(t *testing.T, app, key string) uint64 {
	t.Helper()
	streams, err := s.streams()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range streams {
		if st.App == app && st.Key == key {
			return st.Stats.VideoFrames
		}
	}
	return 0
}
