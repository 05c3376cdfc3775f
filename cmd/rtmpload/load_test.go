package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest"
)

// startServer runs an in-process mediad ingest server on a free loopback
// port until the test ends.
func startServer(t *testing.T, cfg ingest.Config) (*ingest.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := ingest.NewServer(cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		if err := <-served; !errors.Is(err, ingest.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return srv, ln.Addr().String()
}

func testConfig(addr, prefix string, n, players int, duration time.Duration) *runConfig {
	return &runConfig{
		url:          "rtmp://" + addr + "/live",
		addr:         addr,
		app:          "live",
		tcURL:        "rtmp://" + addr + "/live",
		keyPrefix:    prefix,
		n:            n,
		players:      players,
		source:       "test",
		duration:     duration,
		ramp:         200 * time.Millisecond,
		grace:        5 * time.Second,
		setupTimeout: 5 * time.Second,
		chunkSize:    4096,
		// Players on every stream, from the publishers' server.
		playerStreams: n,
		playAddr:      addr,
		playApp:       "live",
		playTCURL:     "rtmp://" + addr + "/live",
	}
}

func testClip(t *testing.T) *Clip {
	t.Helper()
	// A keyframe every second, so that players joining late see one soon.
	clip, err := Synthesize(SynthConfig{Bitrate: 500_000, AudioBitrate: 64_000, FPS: 30, GOP: 30, Seconds: 2})
	if err != nil {
		t.Fatal(err)
	}
	return clip
}

// Five publishers with a player each against the real server: everything
// starts and ends cleanly, each recording hashes to what its publisher
// says it sent, and every player receives the stream from a keyframe.
func TestLoadRecordsWhatWasSent(t *testing.T) {
	dir := t.TempDir()
	srv, addr := startServer(t, ingest.Config{RecordDir: dir})
	var log bytes.Buffer
	cfg := testConfig(addr, "rec", 5, 1, 3*time.Second)
	cfg.verbose = true
	rep, err := run(t.Context(), cfg, testClip(t), &log)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Started != 5 || rep.Refused+rep.Failed+rep.Skipped != 0 {
		t.Fatalf("publishers: %d started, %d refused, %d failed, %d skipped; log:\n%s",
			rep.Started, rep.Refused, rep.Failed, rep.Skipped, log.String())
	}
	if p := rep.Players; p.OK != 5 || p.Count != 5 {
		t.Fatalf("players %+v; log:\n%s", p, log.String())
	}
	// Closing the server waits for every session, so recordings are final.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	var total uint64
	for _, p := range rep.Publishers {
		total += p.MediaBytes
		if p.State != stateOK || p.MediaMessages == 0 || p.Keyframes == 0 || p.VideoFrames == 0 || p.AudioFrames == 0 {
			t.Errorf("publisher %+v", p)
			continue
		}
		files, err := filepath.Glob(filepath.Join(dir, "live", p.Key, "*.flv"))
		if err != nil || len(files) == 0 {
			t.Errorf("%s: no recording (%v)", p.Key, err)
			continue
		}
		slices.Sort(files)
		crc, tags, err := MediaCRC(files...)
		if err != nil {
			t.Errorf("%s: %v", p.Key, err)
			continue
		}
		if got := fmt.Sprintf("%08x", crc); got != p.CRC32 || uint64(tags) != p.MediaMessages {
			t.Errorf("%s: recording hashes to %s over %d tags; rtmpload sent %s over %d", p.Key, got, tags, p.CRC32, p.MediaMessages)
		}
	}
	if rep.MediaBytes != total || rep.BytesSent <= total {
		t.Errorf("totals: media %d (sum %d), bytes %d", rep.MediaBytes, total, rep.BytesSent)
	}

	for _, p := range rep.PlayerList {
		if p.State != stateOK || !p.Started || p.Messages == 0 || p.MediaBytes == 0 || p.Bytes <= p.MediaBytes {
			t.Errorf("player %+v", p)
		}
		if p.FirstKeyframeMs < 0 || !p.ConfigFirst || !p.StopSeen {
			t.Errorf("player of %s: first keyframe at %v ms, config first %v, stop seen %v",
				p.Key, p.FirstKeyframeMs, p.ConfigFirst, p.StopSeen)
		}
	}
}

// A publish the server refuses is reported as refused, with the server's
// status code, and does not disturb the others.
func TestLoadReportsRefusal(t *testing.T) {
	auth, err := ingest.ParseAuth(strings.NewReader("live/ok-0\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, ingest.Config{Auth: auth})
	rep, err := run(t.Context(), testConfig(addr, "ok", 2, 0, time.Second), testClip(t), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Started != 1 || rep.Refused != 1 || rep.Failed != 0 {
		t.Fatalf("%d started, %d refused, %d failed", rep.Started, rep.Refused, rep.Failed)
	}
	p := rep.Publishers[1]
	if p.State != stateRefused || p.Status != "NetStream.Publish.Unauthorized" || !strings.Contains(p.Error, "publish refused") {
		t.Errorf("refused publisher %+v", p)
	}
	if p := rep.Publishers[0]; p.State != stateOK || p.MediaMessages == 0 {
		t.Errorf("allowed publisher %+v", p)
	}
}

// Cancelling the run (as SIGINT does) stops it early with a full report,
// and streams whose ramp slot had not come are reported as skipped.
func TestLoadStopsEarly(t *testing.T) {
	srv, addr := startServer(t, ingest.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := testConfig(addr, "early", 3, 0, time.Hour)
	cfg.ramp = 2 * time.Hour // only the first starts before the cancel
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := run(ctx, cfg, testClip(t), &bytes.Buffer{})
		done <- result{rep, err}
	}()
	for !slices.ContainsFunc(srv.Registry().List(), func(s ingest.StreamInfo) bool { return s.Live && s.Stats.VideoFrames > 0 }) {
		select {
		case r := <-done:
			t.Fatalf("run ended before the stream was live: %v", r.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.rep.Started != 1 || r.rep.Skipped != 2 || r.rep.Failed != 0 {
		t.Fatalf("%d started, %d skipped, %d failed", r.rep.Started, r.rep.Skipped, r.rep.Failed)
	}
	if p := r.rep.Publishers[0]; p.State != stateOK || p.MediaMessages == 0 {
		t.Errorf("publisher %+v", p)
	}
}
