package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest"
)

func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {100, 10}, {0, 1}, {10, 1}, {11, 2}} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("percentile(1..10, %g) = %g, want %g", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != -1 {
		t.Errorf("percentile of nothing = %g, want -1", got)
	}
}

func TestJoinDelay(t *testing.T) {
	r := &runner{cfg: &runConfig{joinAfter: time.Second, joinWithin: 500 * time.Millisecond}}
	for range 1000 {
		if d := r.joinDelay(); d < time.Second || d >= 1500*time.Millisecond {
			t.Fatalf("join delay %v outside [1s, 1.5s)", d)
		}
	}
}

// Players joining mid-stream against a server with a GOP cache: every one
// plays, and its first video after the sequence header is a keyframe.
func TestLoadPlayersJoinLater(t *testing.T) {
	_, addr := startServer(t, ingest.Config{GOPCacheBytes: 4 << 20})
	var log bytes.Buffer
	cfg := testConfig(addr, "join", 3, 2, 3*time.Second)
	cfg.joinAfter, cfg.joinWithin = 1200*time.Millisecond, 500*time.Millisecond
	cfg.verbose = true
	rep, err := run(t.Context(), cfg, testClip(t), &log)
	if err != nil {
		t.Fatal(err)
	}
	pt := rep.Players
	if pt.OK != 6 || pt.SawKeyframe != 6 {
		t.Fatalf("players: %+v\n%s", pt, log.String())
	}
	if !(0 <= pt.FirstKeyframeP50Ms && pt.FirstKeyframeP50Ms <= pt.FirstKeyframeP99Ms && pt.FirstKeyframeP99Ms <= pt.FirstKeyframeMaxMs) {
		t.Errorf("first keyframe p50 %g, p99 %g, max %g: not ordered", pt.FirstKeyframeP50Ms, pt.FirstKeyframeP99Ms, pt.FirstKeyframeMaxMs)
	}
	for _, p := range rep.PlayerList {
		if !p.ConfigFirst {
			t.Errorf("player of %s: its first keyframe came before the sequence header", p.Key)
		}
	}
}
