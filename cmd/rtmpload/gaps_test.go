package main

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest"
	"github.com/mediad/mediad/ingest/relay"
)

func TestGapSeries(t *testing.T) {
	t0 := time.Unix(1_000_000, 900_000_000)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name     string
		arrivals []time.Time
		from     int64
		want     []uint32
	}{
		{"one arrival is no gap", []time.Time{at(0)}, 0, nil},
		// The gap belongs to the second in which it ended.
		{"gap ending in the next second", []time.Time{at(0), at(140)}, 1_000_001, []uint32{140}},
		{"largest per second", []time.Time{at(0), at(150), at(170), at(1200), at(1230)}, 1_000_001, []uint32{150, 1030}},
		// Seconds without an arrival hold 0; the gap that ends the silence
		// carries it.
		{"silence", []time.Time{at(150), at(3150)}, 1_000_004, []uint32{3000}},
		{"sub-millisecond rounds up", []time.Time{at(200), t0.Add(200*time.Millisecond + 300*time.Microsecond)}, 1_000_001, []uint32{1}},
		{"clock stepped back", []time.Time{at(1200), at(1300), at(-2000)}, 1_000_002, []uint32{100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g gapSeries
			for _, a := range tc.arrivals {
				g.add(a)
			}
			if g.ms != nil && g.from != tc.from || !slices.Equal(g.ms, tc.want) {
				t.Errorf("from %d, gaps %v; want from %d, gaps %v", g.from, g.ms, tc.from, tc.want)
			}
		})
	}
}

// Players of the first stream only, reading through a relay: the
// downstream server's copy is what they see, and their gap series covers
// the seconds they played with the gaps a 30 fps + AAC stream has.
func TestLoadPlayersThroughRelayWithGaps(t *testing.T) {
	_, down := startServer(t, ingest.Config{GOPCacheBytes: 4 << 20})
	target, err := relay.ParseTarget("", "rtmp://"+down+"/live/{key}")
	if err != nil {
		t.Fatal(err)
	}
	_, up := startServer(t, ingest.Config{Push: []relay.Target{target}})
	cfg := testConfig(up, "gaps", 3, 1, 4*time.Second)
	cfg.playerStreams = 1
	cfg.playAddr, cfg.playTCURL = down, "rtmp://"+down+"/live"
	cfg.gaps = true
	cfg.verbose = true
	var log bytes.Buffer
	rep, err := run(t.Context(), cfg, testClip(t), &log)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.PlayerList) != 1 || rep.Players.OK != 1 {
		t.Fatalf("players: %+v\n%s", rep.Players, log.String())
	}
	p := rep.PlayerList[0]
	if p.Key != "gaps-0" || p.VideoFrames < 30 || p.Keyframes == 0 {
		t.Fatalf("player of %s: %d video frames, %d keyframes; want gaps-0 with a second of video\n%s", p.Key, p.VideoFrames, p.Keyframes, log.String())
	}
	if len(p.GapsMs) < 2 || p.GapsFromUnixS < time.Now().Add(-time.Minute).Unix() {
		t.Fatalf("gap series from %d: %v", p.GapsFromUnixS, p.GapsMs)
	}
	// Whole seconds after the start (the relay waits for a keyframe
	// there): 30 fps video and 43 fps audio leave no silence near a second.
	if len(p.GapsMs) < 4 {
		t.Fatalf("gap series of %d seconds: %v", len(p.GapsMs), p.GapsMs)
	}
	for k, ms := range p.GapsMs[2 : len(p.GapsMs)-1] {
		if ms == 0 || ms > 500 {
			t.Errorf("second %d: largest gap %d ms (series %v)", k+2, ms, p.GapsMs)
		}
	}
}
