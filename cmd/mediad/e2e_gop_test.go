package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
)

// playCopyTS records what the server relays for app/key into out with the
// publisher's timestamps kept (-copyts), so that the output's first pts
// says which source frame the player started at.
func (s *e2eServer) playCopyTS(t *testing.T, app, key, out string) *childProc {
	t.Helper()
	return startChild(t, "player "+app+"/"+key+" -> "+filepath.Base(out), "ffmpeg",
		"-hide_banner", "-nostdin", "-v", "error", "-i", s.url(app, key),
		"-c", "copy", "-copyinkf", "-copyts", "-f", "flv", out)
}

// relayedFrames is how many video frames app/key has relayed so far, and
// what its GOP cache holds.
func (s *e2eServer) relayedFrames(t *testing.T, app, key string) (frames uint64, cacheBytes int64) {
	t.Helper()
	resp, err := adminClient.Get("http://" + s.httpAddr + "/api/streams")
	if err != nil {
		t.Fatalf("admin API: %v", err)
	}
	defer resp.Body.Close()
	var streams []struct {
		App   string `json:"app"`
		Key   string `json:"key"`
		Live  bool   `json:"live"`
		Stats struct {
			VideoFrames   uint64 `json:"video_frames"`
			GOPCacheBytes int64  `json:"gop_cache_bytes"`
		} `json:"stats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&streams); err != nil {
		t.Fatalf("admin API: decode /api/streams: %v", err)
	}
	for _, st := range streams {
		if st.App == app && st.Key == key && st.Live {
			return st.Stats.VideoFrames, st.Stats.GOPCacheBytes
		}
	}
	t.Fatalf("%s/%s is not live", app, key)
	return 0, 0
}

// TestE2EGOPCacheJoin: with the GOP cache on, an ffmpeg player that joins
// a real-time broadcast mid-GOP starts at once from the keyframe before its
// join, not at the next one, and from there receives exactly the source,
// packet for packet, with the publisher's timestamps.
func TestE2EGOPCacheJoin(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	src := source(t)
	publisherSlots.acquire(t, 1)
	srv := startServer(t, "--segment", "0", "--gop-cache-bytes", "4194304")
	dir := t.TempDir()

	pub := srv.publish(t, src, "live", "gop")
	// Join early in a GOP, so that the player is registered long before the
	// next keyframe; should a keyframe still pass while the player starts
	// (a loaded machine), the join cannot tell cache from live, and a new
	// player tries in the next GOP.
	var (
		out      string
		player   *childProc
		kf       int // the source keyframe the player must start at
		joinedAt uint64
	)
	plays := 0
	for attempt := range 3 {
		gop := uint64(3 + attempt*2)
		srv.waitVideoFrames(t, "live", "gop", gop*srcGOP+srcGOP/6, publishTimeout)
		before, cached := srv.relayedFrames(t, "live", "gop")
		if cached <= 0 {
			t.Fatalf("after %d frames the stream's GOP cache is empty", before)
		}
		out = filepath.Join(dir, fmt.Sprintf("join%d.flv", attempt))
		player = srv.playCopyTS(t, "live", "gop", out)
		plays++
		srv.waitLogN(quickTimeout, "play started live/gop", plays, isMsg("play started", "live", "gop"))
		after, _ := srv.relayedFrames(t, "live", "gop")
		// Frames 0..before-1 had been relayed when the player was started,
		// 0..after-1 once it was playing.
		if (before-1)/srcGOP == (after-1)/srcGOP {
			kf, joinedAt = int((before-1)/srcGOP*srcGOP), before
			break
		}
		t.Logf("attempt %d: a keyframe passed while the player started (frames %d to %d); trying the next GOP", attempt, before, after)
	}
	if player == nil || joinedAt == 0 {
		t.Fatal("no player could join between two keyframes")
	}
	if kf == int(joinedAt)-1 || int(joinedAt)-1-kf < srcGOP/6-1 {
		t.Fatalf("joined %d frames after keyframe %d: not mid-GOP", int(joinedAt)-1-kf, kf)
	}
	if total := srvGOPTotal(t, srv); total <= 0 {
		t.Errorf("/api/status gop_cache_bytes = %d while a stream is cached", total)
	}

	pub.waitOK(t, publishTimeout)
	player.waitOK(t, quickTimeout)

	got := mustProbe(t, out)
	srcVideo := codecPackets(src.packets, "video")
	video := codecPackets(got, "video")
	if len(video) == 0 {
		t.Fatal("the player received no video")
	}
	if first := video[0]; !first.key || first.pts != srcVideo[kf].pts {
		t.Fatalf("the player starts with {%v}, want the cached keyframe {%v} (source frame %d; it joined after frame %d, pts %d)",
			first, srcVideo[kf], kf, joinedAt-1, srcVideo[joinedAt-1].pts)
	}
	if srcVideo[kf].pts >= srcVideo[joinedAt-1].pts {
		t.Fatalf("keyframe pts %d is not before the join (pts %d)", srcVideo[kf].pts, srcVideo[joinedAt-1].pts)
	}
	// From the keyframe on, in the order the publisher sent it (file order),
	// the player has the source exactly.
	from := -1
	for i, p := range src.packets {
		if p == srcVideo[kf] {
			from = i
			break
		}
	}
	checkSamePackets(t, "player joined mid-GOP", got, src.packets[from:])
	decodeClean(t, out)
}

func srvGOPTotal(t *testing.T, s *e2eServer) int64 {
	t.Helper()
	resp, err := adminClient.Get("http://" + s.httpAddr + "/api/status")
	if err != nil {
		t.Fatalf("admin API: %v", err)
	}
	defer resp.Body.Close()
	var st struct {
		GOPCacheBytes int64 `json:"gop_cache_bytes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("admin API: decode /api/status: %v", err)
	}
	return st.GOPCacheBytes
}
