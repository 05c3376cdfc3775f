package ingest

import (
	"bytes"
	"testing"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/state"
)

// Upgrades whose static parts went ahead lose nothing: a player fed 1,000
// frames a second gets every frame once, in order, through three of them;
// the recording holds them all. A publisher whose metadata changed after
// its base went moves whole, with the new metadata; one that left after
// its base went does not come back.
func TestPresendThenParkLosesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{RecordDir: dir}
	srv, addr, _ := startServer(t, cfg)
	feed := startFeed(t, addr, "up")

	meta := dialClient(t, addr)
	metaMsid, code := meta.publish("live", "meta")
	if code != "NetStream.Publish.Start" {
		t.Fatal(code)
	}
	meta1 := mustAMF(t, "@setDataFrame", "onMetaData", amf0.ECMAArray{{Key: "width", Value: 640.0}})
	meta2 := mustAMF(t, "@setDataFrame", "onMetaData", amf0.ECMAArray{{Key: "width", Value: 1280.0}})
	if err := meta.sendMedia(metaMsid, chunk.TypeDataAMF0, 0, meta1); err != nil {
		t.Fatal(err)
	}
	gone := dialClient(t, addr)
	if _, code := gone.publish("live", "gone"); code != "NetStream.Publish.Start" {
		t.Fatal(code)
	}
	streams := func(s *Server) map[string]bool {
		keys := map[string]bool{}
		for _, st := range s.Registry().List() {
			keys[st.Key] = true
		}
		return keys
	}
	waitFor(t, "three streams", func() bool { return len(streams(srv)) == 3 })
	metadataIs := func(s *Server, want []byte) bool {
		s.registry.mu.Lock()
		st := s.registry.streams[streamName("live", "meta")]
		s.registry.mu.Unlock()
		if st == nil {
			return false
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		// What the stream keeps is the payload without @setDataFrame.
		return bytes.HasSuffix(want, st.metadata) && len(st.metadata) > 0
	}
	waitFor(t, "the first metadata", func() bool { return metadataIs(srv, meta1) })

	cur := srv
	for i := range 3 {
		target := feed.received() + 100
		waitFor(t, "frames before the upgrade", func() bool { return feed.received() >= target })
		var between func()
		if i == 0 {
			from := cur
			between = func() {
				if err := meta.sendMedia(metaMsid, chunk.TypeDataAMF0, 1, meta2); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the new metadata", func() bool { return metadataIs(from, meta2) })
				gone.conn.Close()
				waitFor(t, "the publisher that left", func() bool { return !streams(from)["gone"] })
			}
		}
		next, kinds := upgradeAhead(t, cur, cfg, true, between)
		t.Logf("upgrade %d: %v", i+1, kinds)
		// The feed's publisher and player, and the meta publisher but at
		// the first upgrade, went as tails of their bases.
		wantBases, wantTails := 3, 2
		if i == 0 {
			wantBases = 4
			if kinds[state.KindPublisher] != 1 {
				t.Errorf("upgrade 1: %d whole publishers, want the one whose metadata changed", kinds[state.KindPublisher])
			}
		} else {
			wantTails = 3
		}
		if kinds[state.KindBase] != wantBases || kinds[state.KindPublisherTail]+kinds[state.KindPlayerTail] != wantTails || kinds[state.KindPlayerTail] != 1 {
			t.Errorf("upgrade %d: %v, want %d bases, %d tails of which one a player's", i+1, kinds, wantBases, wantTails)
		}
		cur = next
		if got := streams(cur); len(got) != 2 || !got["up"] || !got["meta"] {
			t.Fatalf("upgrade %d: streams %v, want up and meta", i+1, got)
		}
		if !metadataIs(cur, meta2) {
			t.Fatalf("upgrade %d: the metadata sent after the base did not move", i+1)
		}
		if n := cur.SessionCount(); n != 3 {
			t.Fatalf("upgrade %d: %d sessions, want 3", i+1, n)
		}
	}
	target := feed.received() + 100
	waitFor(t, "frames after the upgrades", func() bool { return feed.received() >= target })
	sent := feed.finish()

	// The meta publisher still publishes in the last process.
	if err := meta.sendMedia(metaMsid, chunk.TypeVideo, 40, videoFrame(true, 100, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the meta publisher's frame", func() bool {
		for _, st := range cur.Registry().List() {
			if st.Key == "meta" && st.Stats.VideoFrames == 1 {
				return true
			}
		}
		return false
	})

	feed.pub.command(feed.msid, "deleteStream", 9.0, nil, float64(feed.msid))
	cur.Close()
	checkRecordedOnce(t, dir, "up", sent)
}

// Below version 8 nothing goes ahead, and the park exports every session
// whole.
func TestPresendNothingBelowVersion8(t *testing.T) {
	srv, addr, _ := startServer(t, Config{})
	feed := startFeed(t, addr, "old")
	defer feed.finish()
	waitFor(t, "the stream", func() bool { return len(srv.Registry().List()) == 1 })
	called := false
	pre, err := srv.Presend(state.BaseSince-1, func([]ParkedSession) error { called = true; return nil })
	if err != nil || pre != nil || called {
		t.Fatalf("presend to v%d: %v, %v, called %v", state.BaseSince-1, pre, err, called)
	}
}

// Bases go in several groups at once: every one of 300 players, and the
// publisher, goes ahead once and moves as a tail.
func TestPresendManyGroups(t *testing.T) {
	srv, addr, _ := startServer(t, Config{})
	feed := startFeed(t, addr, "many")
	const players = 300
	for range players {
		c := dialClient(t, addr)
		c.play("live", "many")
	}
	waitFor(t, "every player", func() bool { return srv.SessionCount() == players+2 })
	target := feed.received() + 50
	waitFor(t, "frames", func() bool { return feed.received() >= target })
	cur, kinds := upgradeAhead(t, srv, Config{}, true, nil)
	if kinds[state.KindBase] != players+2 || kinds[state.KindPlayerTail] != players+1 || kinds[state.KindPublisherTail] != 1 {
		t.Errorf("crossed %v, want %d bases, %d player tails and a publisher tail", kinds, players+2, players+1)
	}
	if n := cur.SessionCount(); n != players+2 {
		t.Errorf("%d sessions after the upgrade, want %d", n, players+2)
	}
	target = feed.received() + 50
	waitFor(t, "frames after", func() bool { return feed.received() >= target })
	feed.finish()
}
