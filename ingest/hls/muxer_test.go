package hls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/state"
)

// msg is one media message of the capture.
type msg struct {
	typ     uint8
	ts      uint32
	payload []byte
}

// captureMessages reads the audio and video messages of a real ffmpeg 5.1
// publish (3 s of H.264 at 30 fps, GOP 30, and AAC): the RTMP handshake
// is skipped, the chunk stream parsed.
func captureMessages(t testing.TB) []msg {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "rtmp", "ffmpeg51_publish.bin"))
	if err != nil {
		t.Fatal(err)
	}
	// C0, C1, C2.
	b = b[1+1536+1536:]
	var out []msg
	r := chunk.NewReader(0)
	if err := r.Feed(b, func(m *chunk.Message) error {
		if m.TypeID == chunk.TypeAudio || m.TypeID == chunk.TypeVideo {
			out = append(out, msg{m.TypeID, m.Timestamp, bytes.Clone(m.Payload)})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(out) < 200 {
		t.Fatalf("capture has %d media messages", len(out))
	}
	return out
}

// clock gives every message a wall-clock time on its own time line, so
// that runs are reproducible to the byte.
func clock(m msg) time.Time {
	return time.Unix(1800000000, 0).Add(time.Duration(m.ts) * time.Millisecond)
}

func newTestMuxer(t *testing.T, dir string) *Muxer {
	t.Helper()
	m, err := New(Config{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func feed(m *Muxer, msgs []msg) {
	for _, x := range msgs {
		m.Write(x.typ, x.ts, x.payload, clock(x))
	}
}

func TestMuxerCutsPartsAndSegments(t *testing.T) {
	msgs := captureMessages(t)
	m := newTestMuxer(t, t.TempDir())
	feed(m, msgs)
	m.mu.Lock()
	st := m.st
	m.mu.Unlock()
	// Keyframes at 0, 1 and 2 s: two closed segments and the open one.
	if len(st.Segments) != 3 || !st.Segments[0].Closed || !st.Segments[1].Closed || st.Segments[2].Closed {
		t.Fatalf("segments: %+v", st.Segments)
	}
	for _, s := range st.Segments {
		if !s.Parts[0].Independent {
			t.Errorf("segment %d does not start with an independent part", s.MSN)
		}
		var off int64
		for i, p := range s.Parts {
			if p.DurationMS > 200 || p.DurationMS <= 0 {
				t.Errorf("segment %d part %d lasts %d ms, target 200", s.MSN, i, p.DurationMS)
			}
			if p.Offset != off {
				t.Errorf("segment %d part %d at %d, want %d", s.MSN, i, p.Offset, off)
			}
			off += p.Size
		}
		if s.Closed {
			if d := segDuration(s); d < 1000 || d > 1100 {
				t.Errorf("segment %d lasts %d ms", s.MSN, d)
			}
			fi, err := os.Stat(m.segPath(s.MSN))
			if err != nil || fi.Size() != off {
				t.Errorf("segment %d file: %v, %d bytes, parts %d", s.MSN, err, fi.Size(), off)
			}
		}
	}
	b, moved, err := m.Playlist(context.Background(), Request{})
	if err != nil || moved {
		t.Fatal(err, moved)
	}
	var pl playlist.Media
	if err := pl.Unmarshal(b); err != nil {
		t.Fatalf("playlist does not parse: %v\n%s", err, b)
	}
	if pl.MediaSequence != 0 || len(pl.Segments) != 2 || pl.Map == nil || pl.Map.URI != "init1.mp4" ||
		pl.PreloadHint == nil || !pl.ServerControl.CanBlockReload || pl.PartInf.PartTarget != 200*time.Millisecond {
		t.Fatalf("playlist:\n%s", b)
	}
	if len(pl.Parts) != len(st.Segments[2].Parts) || pl.PreloadHint.URI != partURI(2, len(pl.Parts)) {
		t.Errorf("trailing parts %d, hint %s:\n%s", len(pl.Parts), pl.PreloadHint.URI, b)
	}
}

// TestAudioReachesEveryPartsEnd: in every listed part, the audio lasts at
// least to the part's end (where its video ends), and by less than one
// AAC frame more. A part whose audio stopped a frame short, the last frame
// held back for want of its successor, froze hls.js 1.7.4 when it started
// inside that part's segment: it asked for the segment again and again for
// the few missing milliseconds.
func TestAudioReachesEveryPartsEnd(t *testing.T) {
	msgs := captureMessages(t)
	m := newTestMuxer(t, t.TempDir())
	feed(m, msgs)
	m.mu.Lock()
	segs := slices.Clone(m.st.Segments)
	m.mu.Unlock()
	const aacFrameMS = 23 // 1024 samples at 44.1 kHz
	parts := 0
	for _, s := range segs {
		b, err := os.ReadFile(m.segPath(s.MSN))
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range s.Parts {
			var fp fmp4.Parts
			if err := fp.Unmarshal(b[p.Offset : p.Offset+p.Size]); err != nil {
				t.Fatalf("segment %d part %d: %v", s.MSN, i, err)
			}
			var end [2]int64
			for _, pt := range fp[0].Tracks {
				e := int64(pt.BaseTime)
				for _, smp := range pt.Samples {
					e += int64(smp.Duration)
				}
				end[pt.ID-1] = e
			}
			video, audio := end[trackVideo], end[trackAudio]
			if video == 0 || audio == 0 {
				t.Fatalf("segment %d part %d: video ends at %d, audio at %d: a track is missing", s.MSN, i, video, audio)
			}
			if audio < video || audio-video > aacFrameMS {
				t.Errorf("segment %d part %d: audio ends at %d ms, video (the part's end) at %d: want audio to %d..%d", s.MSN, i, audio, video, video, video+aacFrameMS)
			}
			parts++
		}
	}
	if parts < 10 {
		t.Fatalf("%d parts checked, the capture should give more than 10", parts)
	}
}

// TestProgramDateTimeStepsWithEXTINF: a publish whose first frames arrive
// late (ffmpeg's start: the first keyframe 88 ms behind its media time)
// still lists date-times that step exactly as the segments' durations.
func TestProgramDateTimeStepsWithEXTINF(t *testing.T) {
	msgs := captureMessages(t)
	m := newTestMuxer(t, t.TempDir())
	base := time.Unix(1800000000, 0)
	for _, x := range msgs {
		at := base.Add(time.Duration(x.ts) * time.Millisecond)
		if x.ts < 88 {
			at = base.Add(88 * time.Millisecond)
		}
		m.Write(x.typ, x.ts, x.payload, at)
	}
	b, _, err := m.Playlist(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	var pl playlist.Media
	if err := pl.Unmarshal(b); err != nil {
		t.Fatalf("playlist does not parse: %v\n%s", err, b)
	}
	if len(pl.Segments) < 2 {
		t.Fatalf("%d segments listed, want at least 2:\n%s", len(pl.Segments), b)
	}
	if first := *pl.Segments[0].DateTime; !first.Equal(base.Add(88 * time.Millisecond)) {
		t.Errorf("first segment's date-time %s, want its arrival %s", first, base.Add(88*time.Millisecond))
	}
	for i := 1; i < len(pl.Segments); i++ {
		prev, s := pl.Segments[i-1], pl.Segments[i]
		if step := s.DateTime.Sub(*prev.DateTime); step != prev.Duration {
			t.Errorf("%s: date-time steps %v from %s, whose EXTINF is %v", s.URI, step, prev.URI, prev.Duration)
		}
	}
}

// TestNextStart: how a segment's program date-time follows from the one
// before and the wall clock.
func TestNextStart(t *testing.T) {
	const prevStart = int64(1800000000) * int64(time.Second)
	seg := func(durMS ...int64) state.HLSSegment {
		s := state.HLSSegment{Start: prevStart}
		for _, d := range durMS {
			s.Parts = append(s.Parts, state.HLSPart{DurationMS: d})
		}
		return s
	}
	at := func(d time.Duration) time.Time { return time.Unix(0, prevStart).Add(d) }
	tests := []struct {
		name string
		open []state.HLSSegment
		disc bool
		now  time.Time
		want time.Duration // after prevStart
	}{
		{"first segment: the wall clock", nil, false, at(7 * time.Second), 7 * time.Second},
		{"after a discontinuity: the wall clock", []state.HLSSegment{seg(1000)}, true, at(900 * time.Millisecond), 900 * time.Millisecond},
		{"arrival early: media time", []state.HLSSegment{seg(200, 200, 200, 200, 200)}, false, at(912 * time.Millisecond), time.Second},
		{"arrival late: media time", []state.HLSSegment{seg(1000)}, false, at(1400 * time.Millisecond), time.Second},
		{"drifted late past the slack: 1 ms towards it", []state.HLSSegment{seg(1000)}, false, at(1000*time.Millisecond + pdtSlack + 30*time.Millisecond), time.Second + time.Millisecond},
		{"drifted late just past the slack: the excess", []state.HLSSegment{seg(1000)}, false, at(1000*time.Millisecond + pdtSlack + 300*time.Microsecond), time.Second + 300*time.Microsecond},
		{"drifted early past the slack: 1 ms towards it", []state.HLSSegment{seg(1000)}, false, at(1000*time.Millisecond - pdtSlack - 30*time.Millisecond), time.Second - time.Millisecond},
		{"a long segment moves more", []state.HLSSegment{seg(6000)}, false, at(6*time.Second + pdtSlack + time.Second), 6*time.Second + 6*time.Millisecond},
		{"too far ahead: the wall clock", []state.HLSSegment{seg(1000)}, false, at(time.Second + pdtResync + time.Millisecond), time.Second + pdtResync + time.Millisecond},
		{"too far behind: the wall clock", []state.HLSSegment{seg(1000)}, false, at(time.Second - pdtResync - time.Millisecond), time.Second - pdtResync - time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMuxer(t, t.TempDir())
			m.st.Segments = tc.open
			got := time.Duration(m.nextStartLocked(tc.now, tc.disc) - prevStart)
			if got != tc.want {
				t.Errorf("next start %v after the open segment's, want %v", got, tc.want)
			}
		})
	}
}

// TestMuxerExportRestoreIsInvisible cuts the feed at every kind of point,
// hands the muxer over as an upgrade does, and checks that the files and
// the playlist come out byte for byte as without the handover.
func TestMuxerExportRestoreIsInvisible(t *testing.T) {
	msgs := captureMessages(t)
	ref := newTestMuxer(t, t.TempDir())
	feed(ref, msgs)
	want := snapshot(t, ref)

	for _, cut := range []int{1, 2, 3, 40, 97, len(msgs) / 2, len(msgs) - 1} {
		_, st := handOverAt(t, msgs, cut)
		vs, as := seqHeaders(msgs[:cut])
		b, err := Restore(Config{}, st, vs, as)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		feed(b, msgs[cut:])
		got := snapshot(t, b)
		if !slices.Equal(got.names, want.names) {
			t.Fatalf("cut %d: files %v, want %v", cut, got.names, want.names)
		}
		for i := range got.files {
			if !bytes.Equal(got.files[i], want.files[i]) {
				t.Errorf("cut %d: %s differs", cut, got.names[i])
			}
		}
		if !bytes.Equal(got.playlist, want.playlist) {
			t.Errorf("cut %d: playlist\n%s\nwant\n%s", cut, got.playlist, want.playlist)
		}
	}
}

// handOverAt feeds msgs[:cut] to a muxer in a directory of its own, then
// exports it and lets it go, as the old process of an upgrade does.
func handOverAt(t *testing.T, msgs []msg, cut int) (*Muxer, state.HLS) {
	t.Helper()
	a := newTestMuxer(t, t.TempDir())
	feed(a, msgs[:cut])
	st, err := a.Export()
	if err != nil {
		t.Fatal(err)
	}
	a.Detach()
	return a, st
}

// seqHeaders are the last video and audio sequence headers in msgs: what
// the publisher's state carries across an upgrade.
func seqHeaders(msgs []msg) (video, audio []byte) {
	for _, x := range msgs {
		if f, err := parse(x); err == nil && f.config {
			if x.typ == typeVideo {
				video = x.payload
			} else {
				audio = x.payload
			}
		}
	}
	return video, audio
}

func parse(x msg) (frame, error) {
	if x.typ == typeVideo {
		return parseVideo(x.payload)
	}
	return parseAudio(x.payload)
}

type snap struct {
	names    []string
	files    [][]byte
	playlist []byte
}

func snapshot(t *testing.T, m *Muxer) snap {
	t.Helper()
	var s snap
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == pendingFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s.names = append(s.names, e.Name())
		s.files = append(s.files, b)
	}
	s.playlist, _, err = m.Playlist(context.Background(), Request{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPlaylistBlocking(t *testing.T) {
	msgs := captureMessages(t)
	m := newTestMuxer(t, t.TempDir())
	half := len(msgs) / 2
	feed(m, msgs[:half])
	m.mu.Lock()
	open := *m.openLocked()
	m.mu.Unlock()
	next := Request{MSN: open.MSN, Part: uint64(len(open.Parts)), HasMSN: true, HasPart: true}

	done := make(chan error, 1)
	go func() {
		b, _, err := m.Playlist(context.Background(), next)
		if err == nil && !bytes.Contains(b, []byte(partURI(open.MSN, len(open.Parts)))) {
			err = errors.New("answered without the part it waited for")
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("answered before the part existed: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	feed(m, msgs[half:])
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		req  Request
		want error
	}{
		{"three segments ahead", Request{MSN: open.MSN + 5, HasMSN: true}, ErrTooFarAhead},
		{"parts far ahead", Request{MSN: 2, Part: 40, HasMSN: true, HasPart: true}, ErrTooFarAhead},
		{"an old segment", Request{MSN: 0, HasMSN: true}, nil},
	} {
		_, _, err := m.Playlist(context.Background(), tc.req)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	m.mu.Lock()
	last := *m.openLocked()
	m.mu.Unlock()
	wait := Request{MSN: last.MSN, Part: uint64(len(last.Parts)), HasMSN: true, HasPart: true}
	// A part that never comes: answered at the deadline, not held.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := m.Playlist(ctx, wait); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("pending request: %v", err)
	}
	// Detach answers waiting requests with what there is.
	go func() {
		time.Sleep(20 * time.Millisecond)
		m.Detach()
	}()
	if _, moved, err := m.Playlist(context.Background(), wait); err != nil || !moved {
		t.Errorf("after detach: moved %v, %v", moved, err)
	}
}

func TestOpenFiles(t *testing.T) {
	msgs := captureMessages(t)
	m := newTestMuxer(t, t.TempDir())
	feed(m, msgs)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"init1.mp4", true}, {"init2.mp4", false}, {"s0.m4s", true}, {"s0.0.m4s", true}, {"s1.3.m4s", true},
		{"s0.9.m4s", false}, {"s9.m4s", false}, {"../x", false}, {"s01.m4s", false}, {"s-1.m4s", false},
	} {
		f, err := m.Open(context.Background(), tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if f != nil {
			f.Close()
		}
	}
}

// TestSatisfied covers the delivery directives against a window whose
// live segment 5 is open with two parts, after 4 closed with three.
func TestSatisfied(t *testing.T) {
	closed := func(msn uint64, n int) state.HLSSegment {
		return state.HLSSegment{MSN: msn, Closed: true, Parts: make([]state.HLSPart, n)}
	}
	withOpen := []state.HLSSegment{closed(3, 3), closed(4, 3), {MSN: 5, Parts: make([]state.HLSPart, 2)}}
	allClosed := []state.HLSSegment{closed(3, 3), closed(4, 3)}
	for _, tc := range []struct {
		name  string
		segs  []state.HLSSegment
		req   Request
		ready bool
		err   error
	}{
		{"no directive", withOpen, Request{}, true, nil},
		{"before the window", withOpen, Request{MSN: 1, HasMSN: true}, true, nil},
		{"closed segment", withOpen, Request{MSN: 4, HasMSN: true}, true, nil},
		{"open segment whole", withOpen, Request{MSN: 5, HasMSN: true}, false, nil},
		{"open segment listed part", withOpen, Request{MSN: 5, Part: 1, HasMSN: true, HasPart: true}, true, nil},
		{"open segment next part", withOpen, Request{MSN: 5, Part: 2, HasMSN: true, HasPart: true}, false, nil},
		{"open segment last allowed part", withOpen, Request{MSN: 5, Part: 4, HasMSN: true, HasPart: true}, false, nil},
		{"open segment too far", withOpen, Request{MSN: 5, Part: 5, HasMSN: true, HasPart: true}, false, ErrTooFarAhead},
		{"past a closed segment's parts", withOpen, Request{MSN: 4, Part: 4, HasMSN: true, HasPart: true}, true, nil},
		{"past a closed segment into the wait", withOpen, Request{MSN: 4, Part: 5, HasMSN: true, HasPart: true}, false, nil},
		{"next segment", withOpen, Request{MSN: 6, HasMSN: true}, false, nil},
		{"two ahead", withOpen, Request{MSN: 7, HasMSN: true}, false, ErrTooFarAhead},
		{"between segments: past the last part", allClosed, Request{MSN: 4, Part: 3, HasMSN: true, HasPart: true}, false, nil},
		{"between segments: next part 2", allClosed, Request{MSN: 5, Part: 2, HasMSN: true, HasPart: true}, false, nil},
		{"between segments: too far", allClosed, Request{MSN: 5, Part: 3, HasMSN: true, HasPart: true}, false, ErrTooFarAhead},
		{"nothing closed yet", []state.HLSSegment{{MSN: 0, Parts: make([]state.HLSPart, 2)}}, Request{}, false, nil},
	} {
		m := &Muxer{st: state.HLS{Segments: tc.segs}}
		ready, err := m.satisfiedLocked(tc.req)
		if ready != tc.ready || !errors.Is(err, tc.err) {
			t.Errorf("%s: ready %v err %v, want %v %v", tc.name, ready, err, tc.ready, tc.err)
		}
	}
}

// TestGoneSegmentsStayServable: a segment out of the window keeps its
// file and its parts until its deadline, since a playlist listed them a
// few seconds before.
func TestGoneSegmentsStayServable(t *testing.T) {
	msgs := captureMessages(t)
	m := newTestMuxer(t, t.TempDir())
	m.cfg.Window = 1
	feed(m, msgs)
	m.mu.Lock()
	gone := slices.Clone(m.st.Gone)
	m.mu.Unlock()
	if len(gone) != 1 || gone[0].MSN != 0 || len(gone[0].Parts) != 5 {
		t.Fatalf("gone: %+v", gone)
	}
	whole, err := os.ReadFile(m.segPath(0))
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range gone[0].Parts {
		f, err := m.Open(context.Background(), partURI(0, i))
		if err != nil {
			t.Fatalf("part %d of a gone segment: %v", i, err)
		}
		b := make([]byte, f.Size)
		if _, err := f.Reader().Read(b); err != nil || !bytes.Equal(b, whole[p.Offset:p.Offset+p.Size]) {
			t.Errorf("part %d: %v", i, err)
		}
		f.Close()
	}
	if _, err := m.Open(context.Background(), partURI(0, 5)); !errors.Is(err, ErrNotFound) {
		t.Errorf("part past a gone segment: %v", err)
	}
	// Past the deadline the file goes at the next segment's close.
	m.mu.Lock()
	m.removeExpiredLocked(time.Unix(0, gone[0].Expiry+1))
	m.mu.Unlock()
	if _, err := os.Stat(m.segPath(0)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("expired segment still on disk: %v", err)
	}
	if _, err := m.Open(context.Background(), segURI(0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired segment: %v", err)
	}
}

// TestEndKeepsTheTail: at the end of a broadcast every frame fed is in a
// part, the playlist ends with ENDLIST and answers blocked requests, and
// the files stay until Remove.
func TestEndKeepsTheTail(t *testing.T) {
	msgs := captureMessages(t)
	m := newTestMuxer(t, t.TempDir())
	feed(m, msgs)
	var frames int
	for _, x := range msgs {
		if f, err := parse(x); err == nil && !f.config && !f.skip {
			frames++
		}
	}
	m.End()
	m.mu.Lock()
	st := m.st
	pending := len(m.pending)
	m.mu.Unlock()
	if pending != 0 || st.Segments[len(st.Segments)-1].Closed != true {
		t.Fatalf("after End: %d pending, segments %+v", pending, st.Segments)
	}
	b, _, err := m.Playlist(context.Background(), Request{MSN: 9, HasMSN: true})
	if err != nil || !bytes.Contains(b, []byte("#EXT-X-ENDLIST")) || bytes.Contains(b, []byte("PRELOAD-HINT")) {
		t.Fatalf("ended playlist: %v\n%s", err, b)
	}
	// Every frame of the capture from the first keyframe is in a part.
	all, err := os.ReadFile(m.initPath(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Segments {
		seg, err := os.ReadFile(m.segPath(s.MSN))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, seg...)
	}
	path := filepath.Join(t.TempDir(), "all.mp4")
	if err := os.WriteFile(path, all, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "packet=stream_index", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	if got := bytes.Count(out, []byte("\n")); got != frames {
		t.Errorf("the broadcast's files hold %d frames, %d were fed (the capture starts on a keyframe)", got, frames)
	}
	m.Remove()
	if _, err := os.Stat(m.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("files left after Remove: %v", err)
	}
}

// A preload hint names the part the playlist's next version lists. Each
// state a blocked request can wake up to is looked at: a hint whose part
// never came (the segment closed first) is what a player gets 404 for.
func TestEveryPreloadHintComes(t *testing.T) {
	msgs := captureMessages(t)
	m := newTestMuxer(t, t.TempDir())
	var hints []string
	m.onChange = func() {
		b, err := m.marshalLocked()
		if err != nil {
			return // no complete segment yet: no playlist
		}
		_, rest, ok := bytes.Cut(b, []byte(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="`))
		if !ok {
			return
		}
		uri, _, _ := bytes.Cut(rest, []byte(`"`))
		if len(hints) == 0 || hints[len(hints)-1] != string(uri) {
			hints = append(hints, string(uri))
		}
	}
	feed(m, msgs)
	m.mu.Lock()
	m.onChange = nil
	m.mu.Unlock()
	if len(hints) < 8 {
		t.Fatalf("%d preload hints over %d messages", len(hints), len(msgs))
	}
	// The last hint is the part still being filled.
	for _, h := range hints[:len(hints)-1] {
		nm, _ := parseName(h)
		m.mu.Lock()
		_, size, wait, err := m.locateLocked(nm)
		m.mu.Unlock()
		if err != nil || wait || size == 0 {
			t.Errorf("hinted %s: size %d, wait %v, err %v", h, size, wait, err)
		}
	}
}

// After a stream moved, the old process answers a request for a part it
// had hinted, or one just after, with the part the new process writes to
// the shared file: byte for byte what the new process serves under that
// name, or 404 where the new process has no such part.
func TestMovedPartComesFromTheNewProcess(t *testing.T) {
	msgs := captureMessages(t)
	nextSeg, notFound := 0, 0
	for cut := 90; cut < len(msgs)-20; cut += 5 {
		a, st := handOverAt(t, msgs, cut)
		pl, moved, err := a.Playlist(context.Background(), Request{})
		if err != nil || !moved {
			t.Fatalf("cut %d: stale playlist: moved %v, err %v", cut, moved, err)
		}
		_, rest, ok := bytes.Cut(pl, []byte(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="`))
		if !ok {
			t.Fatalf("cut %d: no preload hint in\n%s", cut, pl)
		}
		hint, _, _ := bytes.Cut(rest, []byte(`"`))
		h, _ := parseName(string(hint))
		if h.part == 0 {
			nextSeg++
		}
		// The hint, the two parts after it, and the first two of the
		// next segment.
		names := []string{partURI(h.n, int(h.part)), partURI(h.n, int(h.part)+1), partURI(h.n, int(h.part)+2)}
		if h.part > 0 {
			names = append(names, partURI(h.n+1, 0), partURI(h.n+1, 1))
		}
		type result struct {
			b   []byte
			err error
		}
		ctx, cancel := context.WithCancel(context.Background())
		got := make([]chan result, len(names))
		for i, name := range names {
			got[i] = make(chan result, 1)
			go func() {
				f, err := a.Open(ctx, name)
				if err != nil {
					got[i] <- result{err: err}
					return
				}
				defer f.Close()
				if !f.Moved {
					err = errors.New("not marked moved")
				}
				b, rerr := io.ReadAll(f.Reader())
				got[i] <- result{b, errors.Join(err, rerr)}
			}()
		}
		vs, as := seqHeaders(msgs[:cut])
		b, err := Restore(Config{}, st, vs, as)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		feed(b, msgs[cut:])
		for i, name := range names {
			nm, _ := parseName(name)
			b.mu.Lock()
			_, _, wait, err := b.locateLocked(nm)
			closed := false
			for _, sg := range b.st.Segments {
				closed = closed || sg.MSN == nm.n && sg.Closed
			}
			b.mu.Unlock()
			if wait || errors.Is(err, ErrNotFound) && !closed {
				continue // not written yet: the old process waits for it too
			}
			r := <-got[i]
			if errors.Is(err, ErrNotFound) {
				notFound++
				if !errors.Is(r.err, ErrNotFound) {
					t.Errorf("cut %d: %s: the new process has no such part, the old one answered %d bytes, err %v", cut, name, len(r.b), r.err)
				}
				continue
			}
			f, err := b.Open(context.Background(), name)
			if err != nil {
				t.Fatalf("cut %d: new process's %s: %v", cut, name, err)
			}
			want, _ := io.ReadAll(f.Reader())
			f.Close()
			if r.err != nil || !bytes.Equal(r.b, want) {
				t.Errorf("cut %d: old process's %s: %d bytes, err %v; new process's %d bytes", cut, name, len(r.b), r.err, len(want))
			}
		}
		cancel()
	}
	if nextSeg == 0 || notFound == 0 {
		t.Errorf("cuts left %d hints for a next segment's first part and asked %d times for a part that never came: the test misses a case", nextSeg, notFound)
	}
}

// What crosses an upgrade per stream is the index, never media: after 90 s
// of a live broadcast (a window of 7 segments, and the parts of those that
// left it in the last 40 s) it is about 19 KB, against some 3 MB of media
// on disk. The bound catches an index that grows with the broadcast.
func TestExportedIndexIsSmall(t *testing.T) {
	msgs := captureMessages(t)
	m := newTestMuxer(t, t.TempDir())
	loop := msgs[len(msgs)-1].ts + 33
	var n int
	for k := uint32(0); k*loop < 90_000; k++ {
		for _, x := range msgs {
			x.ts += k * loop
			m.Write(x.typ, x.ts, x.payload, clock(x))
			n++
		}
	}
	st, err := m.Export()
	if err != nil {
		t.Fatal(err)
	}
	env, err := state.Encode(state.KindPublisher, &state.Stream{HLS: &st})
	if err != nil {
		t.Fatal(err)
	}
	b, err := state.MarshalEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages, %d segments listed, %d gone, index %d bytes", n, len(st.Segments), len(st.Gone), len(b))
	if len(st.Gone) == 0 || len(st.Gone) > 45 || len(b) > 24<<10 {
		t.Errorf("index of %d bytes with %d gone segments", len(b), len(st.Gone))
	}
}

// BenchmarkMuxer is the publisher goroutine's cost of LL-HLS: one
// iteration is the 3 s capture (H.264 at 30 fps and AAC), cut into parts
// and segments written to disk.
func BenchmarkMuxer(b *testing.B) {
	msgs := captureMessages(b)
	m, err := New(Config{}, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	loop := msgs[len(msgs)-1].ts + 33
	b.ReportAllocs()
	b.ResetTimer()
	for k := uint32(0); k < uint32(b.N); k++ {
		for _, x := range msgs {
			x.ts += k * loop
			m.Write(x.typ, x.ts, x.payload, clock(x))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/(float64(loop)/1000), "µs/media-s")
}

// TestNewestPartsComeFromMemory: the newest MemParts parts are served from
// memory, every older one from its file, and both give the bytes the
// file holds.
func TestNewestPartsComeFromMemory(t *testing.T) {
	msgs := captureMessages(t)
	for _, tc := range []struct {
		memParts int
		want     int // parts served from memory
	}{{0, 6}, {3, 3}, {-1, 0}} {
		m, err := New(Config{MemParts: tc.memParts}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		feed(m, msgs)
		checkFromMemory(t, m, tc.want)
	}
}

// TestRestoredMuxerHasTheNewestParts: a muxer restored in the new process
// serves every part from its file until LoadRecent (after the commit),
// then the newest from memory, as the old one did; a second LoadRecent
// changes nothing.
func TestRestoredMuxerHasTheNewestParts(t *testing.T) {
	msgs := captureMessages(t)
	_, st := handOverAt(t, msgs, len(msgs)*2/3)
	video, audio := seqHeaders(msgs)
	m, err := Restore(Config{}, st, video, audio)
	if err != nil {
		t.Fatal(err)
	}
	checkFromMemory(t, m, 0)
	m.LoadRecent()
	checkFromMemory(t, m, 6)
	m.LoadRecent()
	checkFromMemory(t, m, 6)
	feed(m, msgs[len(msgs)*2/3:])
	checkFromMemory(t, m, 6)
}

// TestLoadRecentAfterNewParts: the server loads a restored muxer's newest
// parts once the moved publishers have read again, by which time the
// publisher may have made parts of its own here: those stay, the loaded
// ones go before them, and the newest six come from memory.
func TestLoadRecentAfterNewParts(t *testing.T) {
	msgs := captureMessages(t)
	cut := len(msgs) * 2 / 3
	_, st := handOverAt(t, msgs, cut)
	video, audio := seqHeaders(msgs)
	for _, more := range []int{10, 40, len(msgs) - cut} {
		m, err := Restore(Config{}, st, video, audio)
		if err != nil {
			t.Fatal(err)
		}
		feed(m, msgs[cut:cut+more])
		m.mu.Lock()
		made := len(m.recent)
		m.mu.Unlock()
		m.LoadRecent()
		t.Logf("%d messages after the restore made %d parts", more, made)
		checkFromMemory(t, m, 6)
		m.Detach()
		// The next restore starts from the same files.
		_, st = handOverAt(t, msgs, cut)
	}
}

// checkFromMemory opens every listed part: each must hold the bytes its
// file holds, and exactly the newest want must come from memory.
func checkFromMemory(t *testing.T, m *Muxer, want int) {
	t.Helper()
	type ref struct {
		msn  uint64
		idx  int
		part state.HLSPart
	}
	var all []ref
	m.mu.Lock()
	for _, s := range m.st.Segments {
		for i, p := range s.Parts {
			all = append(all, ref{s.MSN, i, p})
		}
	}
	m.mu.Unlock()
	if len(all) < 10 {
		t.Fatalf("only %d parts listed", len(all))
	}
	var fromMem []int
	for i, r := range all {
		name := fmt.Sprintf("s%d.%d.m4s", r.msn, r.idx)
		f, err := m.Open(context.Background(), name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.f == nil {
			fromMem = append(fromMem, i)
		}
		var got bytes.Buffer
		if _, err := f.WriteTo(&got); err != nil {
			t.Fatal(err)
		}
		f.Close()
		disk, err := os.ReadFile(m.segPath(r.msn))
		if err != nil {
			t.Fatal(err)
		}
		if w := disk[r.part.Offset : r.part.Offset+r.part.Size]; !bytes.Equal(got.Bytes(), w) {
			t.Errorf("%s: %d bytes served, the file's range has %d and differs", name, got.Len(), len(w))
		}
	}
	if len(fromMem) != want {
		t.Fatalf("%d parts from memory, want %d", len(fromMem), want)
	}
	for k, i := range fromMem {
		if w := len(all) - want + k; i != w {
			t.Errorf("part %d of %d from memory, want the newest %d", i, len(all), want)
		}
	}
}

// BenchmarkHandOver is one stream's LL-HLS share of an upgrade, after 90 s
// of media: Export while parked (the held-back frames to a file of the
// stream's own, as for a version-5 build, or into the park's shared
// spill), the envelope both ways, Restore in the new process. Every
// session of the park waits for the slowest stream.
func BenchmarkHandOver(b *testing.B) {
	for _, shared := range []bool{false, true} {
		name := "own-file"
		if shared {
			name = "shared-spill"
		}
		b.Run(name, func(b *testing.B) { benchHandOver(b, shared) })
	}
}

func benchHandOver(b *testing.B, shared bool) {
	msgs := captureMessages(b)
	dir := b.TempDir()
	m, err := New(Config{}, filepath.Join(dir, "s"))
	if err != nil {
		b.Fatal(err)
	}
	loop := msgs[len(msgs)-1].ts + 33
	for k := uint32(0); k*loop < 90_000; k++ {
		for _, x := range msgs {
			x.ts += k * loop
			m.Write(x.typ, x.ts, x.payload, clock(x))
		}
	}
	video, audio := seqHeaders(msgs)
	var export, encode, decode, restore time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	// One spill serves every stream of a park: its creation is shared too.
	var sp *Spill
	if shared {
		sp = NewSpill(dir)
		defer sp.Discard()
	}
	for range b.N {
		t0 := time.Now()
		st, err := m.ExportTo(sp)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		env, err := state.Encode(state.KindPublisher, &state.Stream{HLS: &st})
		if err != nil {
			b.Fatal(err)
		}
		wire, err := state.MarshalEnvelope(env)
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		env, err = state.UnmarshalEnvelope(wire)
		if err != nil {
			b.Fatal(err)
		}
		var got state.Stream
		if err := state.Decode(env, &got); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		m.Detach()
		spills := NewSpills()
		next, err := RestoreFrom(Config{}, *got.HLS, video, audio, spills)
		if err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		if !shared {
			// The shared spill stays for the next iteration's export.
			if err := spills.Close(); err != nil {
				b.Fatal(err)
			}
		}
		m = next
		export += t1.Sub(t0)
		encode += t2.Sub(t1)
		decode += t3.Sub(t2)
		restore += t4.Sub(t3)
	}
	n := float64(b.N)
	b.ReportMetric(float64(export.Microseconds())/n, "export-µs")
	b.ReportMetric(float64(encode.Microseconds())/n, "encode-µs")
	b.ReportMetric(float64(decode.Microseconds())/n, "decode-µs")
	b.ReportMetric(float64(restore.Microseconds())/n, "restore-µs")
}
