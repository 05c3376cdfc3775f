package main

// End-to-end tests: the real mediad binary, real ffmpeg publishers and
// players, recordings checked packet by packet against the source clip.
// They need ffmpeg and ffprobe; without them they skip, except with CI=true.

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestE2EVersion(t *testing.T) {
	requireE2E(t)
	t.Parallel()
	out, err := exec.Command(e2e.bin, "--version").Output()
	if err != nil {
		t.Fatalf("mediad --version: %v", err)
	}
	if got, want := string(out), "mediad e2e\n"; got != want {
		t.Errorf("mediad --version printed %q, want %q", got, want)
	}
}

func TestE2EPublishRecord(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	src := source(t)
	// Both broadcasts run at once, one server each; the subtests check
	// their recordings.
	publisherSlots.acquire(t, 2)
	whole := startServer(t, "--segment", "0")
	cut := startServer(t, "--segment", "10s")
	pubs := []*childProc{whole.publish(t, src, "live", "whole"), cut.publish(t, src, "live", "cut")}
	for _, p := range pubs {
		p.waitOK(t, publishTimeout)
	}

	t.Run("one file per broadcast", func(t *testing.T) {
		segs := whole.recording(t, "live", "whole")
		if len(segs) != 1 {
			t.Fatalf("--segment 0 recorded %d files %q, want 1", len(segs), segs)
		}
		got := mustProbe(t, segs[0])
		checkSamePackets(t, segs[0], got, src.packets)
		checkTimeline(t, segs[0], got)
	})

	t.Run("segments", func(t *testing.T) {
		const segment = 10_000 // ms
		segs := cut.recording(t, "live", "cut")
		if len(segs) < 2 {
			t.Fatalf("a %d s broadcast with --segment 10s recorded %d files %q, want at least 2", srcSeconds, len(segs), segs)
		}
		var all []flvPacket
		var starts []int64
		for _, seg := range segs {
			pkts := mustProbe(t, seg)
			video := codecPackets(pkts, "video")
			if len(video) == 0 {
				t.Fatalf("segment %s has no video", seg)
			}
			if !video[0].key {
				t.Errorf("segment %s starts with {%v}, want a keyframe", seg, video[0])
			}
			starts = append(starts, video[0].dts)
			decodeClean(t, seg)
			all = append(all, pkts...)
		}
		checkSamePackets(t, "segments concatenated", all, src.packets)
		checkTimeline(t, "segments concatenated", all)
		// A cut comes at the first keyframe once the segment duration has
		// passed, so within one GOP of it.
		gop := int64(srcGOP * 1000 / srcFPS)
		for i := 1; i < len(starts); i++ {
			if d := starts[i] - starts[i-1]; d < segment || d >= segment+gop {
				t.Errorf("segment %d lasts %d ms, want [%d, %d)", i-1, d, segment, segment+gop)
			}
		}
	})
}

func TestE2EPlayers(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	src := source(t)
	publisherSlots.acquire(t, 1)
	srv := startServer(t, "--segment", "0")
	dir := t.TempDir()

	type output struct {
		name string
		path string
		proc *childProc
	}
	var early []output
	for _, name := range []string{"early1", "early2"} {
		path := filepath.Join(dir, name+".flv")
		early = append(early, output{name, path, srv.play(t, "live", "show", path)})
	}
	srv.waitLogN(quickTimeout, "play started live/show", len(early), isMsg("play started", "live", "show"))

	pub := srv.publish(t, src, "live", "show")
	const lateFrames = 5 * srcFPS
	srv.waitVideoFrames(t, "live", "show", lateFrames, publishTimeout)
	latePath := filepath.Join(dir, "late.flv")
	late := output{"late", latePath, srv.play(t, "live", "show", latePath)}
	srv.waitLogN(quickTimeout, "play started live/show, the late player's too", len(early)+1, isMsg("play started", "live", "show"))

	pub.waitOK(t, publishTimeout)
	// The end of the broadcast must end the players: the server tells them
	// with NetStream.Play.UnpublishNotify and NetStream.Play.Stop.
	for _, o := range append(early, late) {
		o.proc.waitOK(t, quickTimeout)
	}

	srcVideo := codecPackets(src.packets, "video")
	for _, o := range early {
		got := mustProbe(t, o.path)
		start, offset := checkRelay(t, o.name, got, src.packets)
		decodeClean(t, o.path)
		if start != 0 || offset != 0 {
			t.Errorf("%s joined before the publish but starts at source frame %d, dts offset %d; want the whole broadcast", o.name, start, offset)
		}
		video := codecPackets(got, "video")
		if d := srcVideo[len(srcVideo)-1].dts - video[len(video)-1].dts; d > 1000 || d < -1000 {
			t.Errorf("%s: last video dts %d, source's %d: more than 1 s apart", o.name, video[len(video)-1].dts, srcVideo[len(srcVideo)-1].dts)
		}
	}
	got := mustProbe(t, late.path)
	start, _ := checkRelay(t, late.name, got, src.packets)
	decodeClean(t, late.path)
	// It joined after frame lateFrames was relayed: the GOP cache starts it
	// at the keyframe of the GOP then being relayed, or of a later one.
	if first := lateFrames - lateFrames%srcGOP; start < first {
		t.Errorf("late player starts at source frame %d, before keyframe %d, the last one relayed before it joined", start, first)
	}
}

func TestE2EConcurrentPublishers(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	src := source(t)
	keys := []string{"cam1", "cam2", "cam3"}
	publisherSlots.acquire(t, len(keys))
	srv := startServer(t, "--segment", "0")

	var pubs []*childProc
	for _, key := range keys {
		pubs = append(pubs, srv.publish(t, src, "live", key))
	}
	for _, key := range keys {
		srv.waitLog(quickTimeout, "publish started live/"+key, isMsg("publish started", "live", key))
	}

	intruder := srv.publish(t, src, "live", keys[0])
	intruder.waitRefused(t, quickTimeout)
	if out := string(intruder.out.Bytes()); !strings.Contains(out, "already being published") {
		t.Errorf("the refused publisher was not told why; its output:\n%s", tail([]byte(out), 10))
	}
	srv.waitLog(quickTimeout, "refusal of the second publisher", func(r logRecord) bool {
		return containsAll(r.raw, "already being published", "live/"+keys[0])
	})
	select {
	case <-pubs[0].done:
		t.Fatalf("the first publisher of live/%s ended before the second was refused: %v", keys[0], pubs[0].err)
	default:
	}

	for _, p := range pubs {
		p.waitOK(t, publishTimeout)
	}
	for _, key := range keys {
		segs := srv.recording(t, "live", key)
		if len(segs) != 1 {
			t.Errorf("live/%s: %d recordings %q, want 1", key, len(segs), segs)
			continue
		}
		checkSamePackets(t, "live/"+key, mustProbe(t, segs[0]), src.packets)
	}
}

func TestE2EAuth(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	src := source(t)
	authFile := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(authFile, []byte("# who may publish\nlive/allowed\nsecured secret=s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "--segment", "0", "--auth-file", authFile)

	// A few seconds of the clip, sent as fast as the server takes it, is
	// enough to tell a working publish and keeps this test off the
	// real-time publisher budget.
	const seconds = 4
	cases := []struct {
		app, name, key string
		allowed        bool
	}{
		{"live", "other", "other", false},
		{"secured", "any?secret=wrong", "any", false},
		{"secured", "any", "any", false},
		{"live", "allowed", "allowed", true},
		{"secured", "any?secret=s3cret", "any", true},
	}
	// Refusals first, one at a time, so that no recording directory of
	// theirs can be mistaken for an allowed publisher's.
	refusals := make(map[string]int)
	for _, c := range cases {
		if c.allowed {
			continue
		}
		srv.burst(t, src, c.app, c.name, "-t", "1").waitRefused(t, quickTimeout)
		stream := c.app + "/" + c.key
		refusals[stream]++
		srv.waitLogN(quickTimeout, "refusal of "+c.app+"/"+c.name, refusals[stream], func(r logRecord) bool {
			return containsAll(r.raw, "not authorised", stream)
		})
		if _, err := os.Stat(filepath.Join(srv.recordDir, c.app, c.key)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused publish to %s/%s left a recording directory (stat: %v)", c.app, c.name, err)
		}
	}

	var running []*childProc
	for _, c := range cases {
		if c.allowed {
			running = append(running, srv.burst(t, src, c.app, c.name, "-t", strconv.Itoa(seconds)))
		}
	}
	for _, p := range running {
		p.waitOK(t, publishTimeout)
	}
	for _, c := range cases {
		if !c.allowed {
			continue
		}
		segs := srv.recording(t, c.app, c.key)
		if len(segs) != 1 {
			t.Errorf("%s/%s: %d recordings %q, want 1", c.app, c.key, len(segs), segs)
			continue
		}
		got := mustProbe(t, segs[0])
		if n := len(codecPackets(got, "video")); n < (seconds-1)*srcFPS {
			t.Errorf("%s/%s: recorded %d video frames of a %d s publish", c.app, c.name, n, seconds)
		}
		for _, codec := range []string{"video", "audio"} {
			g, w := codecPackets(got, codec), codecPackets(src.packets, codec)
			if d := diffPackets(g, w[:min(len(g), len(w))]); d != "" {
				t.Errorf("%s/%s: %s is not the start of the source: %s", c.app, c.name, codec, d)
			}
		}
	}
}

func mustProbe(t *testing.T, path string) []flvPacket {
	t.Helper()
	pkts, err := probePackets(path)
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}

// checkTimeline asserts strictly increasing dts per stream and no missing
// video frame: every step is one frame interval, 33 or 34 ms at 30 fps in
// FLV's millisecond timestamps.
func checkTimeline(t *testing.T, what string, pkts []flvPacket) {
	t.Helper()
	for _, codec := range []string{"video", "audio"} {
		s := codecPackets(pkts, codec)
		for i := 1; i < len(s); i++ {
			if s[i].dts <= s[i-1].dts {
				t.Errorf("%s: %s dts goes from %d to %d at packet %d", what, codec, s[i-1].dts, s[i].dts, i)
				break
			}
		}
	}
	video := codecPackets(pkts, "video")
	var smallest, largest int64 = 1 << 62, 0
	for i := 1; i < len(video); i++ {
		gap := video[i].dts - video[i-1].dts
		smallest, largest = min(smallest, gap), max(largest, gap)
	}
	if len(video) > 1 && (smallest < 1000/srcFPS || largest > 1000/srcFPS+1) {
		t.Errorf("%s: video dts gaps range over [%d, %d] ms, want one frame interval [%d, %d]", what, smallest, largest, 1000/srcFPS, 1000/srcFPS+1)
	}
}

// checkRelay asserts that a player's output is the source from one video
// keyframe to the end of the broadcast, with every frame in between and one
// constant timestamp offset (ffmpeg rebases a late joiner's timestamps).
// It returns the index of the first relayed frame among the source's video
// frames, and the offset.
func checkRelay(t *testing.T, what string, got, src []flvPacket) (start int, offset int64) {
	t.Helper()
	gv, sv := codecPackets(got, "video"), codecPackets(src, "video")
	if len(gv) == 0 {
		t.Fatalf("%s: no video received", what)
	}
	if !gv[0].key {
		t.Errorf("%s: first video packet {%v} is not a keyframe", what, gv[0])
	}
	start = len(sv) - len(gv)
	if start < 0 {
		t.Fatalf("%s: %d video packets, more than the source's %d", what, len(gv), len(sv))
	}
	offset = sv[start].dts - gv[0].dts
	shift := func(ps []flvPacket) []flvPacket {
		out := make([]flvPacket, len(ps))
		for i, p := range ps {
			p.dts += offset
			p.pts += offset
			out[i] = p
		}
		return out
	}
	if d := diffPackets(shift(gv), sv[start:]); d != "" {
		t.Errorf("%s: video is not the source's last %d frames (dts offset %d): %s", what, len(gv), offset, d)
	}
	ga, sa := codecPackets(got, "audio"), codecPackets(src, "audio")
	if len(ga) == 0 || len(ga) > len(sa) {
		t.Errorf("%s: %d audio packets, source has %d", what, len(ga), len(sa))
		return start, offset
	}
	if d := diffPackets(shift(ga), sa[len(sa)-len(ga):]); d != "" {
		t.Errorf("%s: audio is not the source's last %d packets (dts offset %d): %s", what, len(ga), offset, d)
	}
	// Audio resumes with the keyframe: none from before it, none skipped
	// after it (an AAC frame at 44.1 kHz lasts 23 ms).
	if first := sa[len(sa)-len(ga)].dts; first < sv[start].dts-50 || first > sv[start].dts+100 {
		t.Errorf("%s: audio starts at source dts %d, video at keyframe dts %d", what, first, sv[start].dts)
	}
	return start, offset
}
