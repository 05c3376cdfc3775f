package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
)

// A fake LL-HLS origin for the viewer tests: one stream whose parts the
// test adds one at a time, served with the URL layout and blocking
// semantics of mediad's media listener (index.m3u8 with _HLS_msn and
// _HLS_part, sN.P.m4s parts, the preload-hinted part held until it
// exists, init1.mp4). Faults are injected per request.

var testSPS = []byte{
	0x67, 0x42, 0xc0, 0x28, 0xd9, 0x00, 0x78, 0x02,
	0x27, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
	0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9,
	0x20,
}

func testInit(t testing.TB) []byte {
	t.Helper()
	init := fmp4.Init{Tracks: []*fmp4.InitTrack{
		{ID: 1, TimeScale: 1000, Codec: &codecs.H264{SPS: testSPS, PPS: []byte{0x08}}},
		{ID: 2, TimeScale: 1000, Codec: &codecs.MPEG4Audio{Config: mpeg4audio.AudioSpecificConfig{
			Type: 2, SampleRate: 44100, ChannelConfig: 2,
		}}},
	}}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testPart is a part with a video and an audio track; its first video
// sample is a sync sample if key. audioFirst puts the audio traf first.
func testPart(t testing.TB, key, audioFirst bool) []byte {
	t.Helper()
	video := &fmp4.PartTrack{ID: 1, Samples: []*fmp4.Sample{
		{Duration: 33, IsNonSyncSample: !key, Payload: []byte{0, 0, 0, 1, 0x65}},
		{Duration: 33, IsNonSyncSample: true, Payload: []byte{0, 0, 0, 1, 0x41}},
	}}
	audio := &fmp4.PartTrack{ID: 2, Samples: []*fmp4.Sample{{Duration: 23, Payload: []byte{1, 2, 3}}}}
	p := fmp4.Part{Tracks: []*fmp4.PartTrack{video, audio}}
	if audioFirst {
		p.Tracks = []*fmp4.PartTrack{audio, video}
	}
	var buf seekablebuffer.Buffer
	if err := p.Marshal(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type fakeSeg struct {
	msn    uint64
	start  time.Time
	parts  []fakePart
	closed bool
}

type fakePart struct {
	dur   time.Duration
	indep bool
	body  []byte
	gone  bool // 404 from now on
}

type fakeOrigin struct {
	t         testing.TB
	initBody  []byte
	keyBody   []byte
	interBody []byte
	partDur   time.Duration

	mu      sync.Mutex
	changed chan struct{}
	segs    []fakeSeg
	ended   bool
	// waiting counts blocked playlist and part requests.
	waiting int
	// fault, if set, may answer a request itself (status != 0).
	fault func(r *http.Request) int
	// hold is how long a blocking request waits before a 503.
	hold time.Duration

	srv *httptest.Server
}

func newFakeOrigin(t testing.TB) *fakeOrigin {
	f := &fakeOrigin{
		t:         t,
		initBody:  testInit(t),
		keyBody:   testPart(t, true, false),
		interBody: testPart(t, false, false),
		partDur:   200 * time.Millisecond,
		changed:   make(chan struct{}),
		hold:      3 * time.Second,
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// add appends a part, opening a segment (PDT start, the part independent)
// if the last one is complete; last completes the segment with it, as
// mediad does when a keyframe arrives past the segment target: the part it
// hinted at is the segment's last, and the keyframe starts the next one.
func (f *fakeOrigin) add(last bool, start time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.segs)
	if n == 0 || f.segs[n-1].closed {
		msn := uint64(0)
		if n > 0 {
			msn = f.segs[n-1].msn + 1
		}
		f.segs = append(f.segs, fakeSeg{msn: msn, start: start})
		n++
	}
	s := &f.segs[n-1]
	key := len(s.parts) == 0
	body := f.interBody
	if key {
		body = f.keyBody
	}
	s.parts = append(s.parts, fakePart{dur: f.partDur, indep: key, body: body})
	s.closed = last
	f.signalLocked()
}

func (f *fakeOrigin) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// restart renumbers the stream from msn (a complete segment, then one
// part of the next): what a server that lost its state would do.
func (f *fakeOrigin) restart(msn uint64, start time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	done := fakeSeg{msn: msn, start: start, closed: true}
	for k := range 5 {
		done.parts = append(done.parts, fakePart{dur: f.partDur, indep: k == 0, body: f.interBody})
	}
	done.parts[0].body = f.keyBody
	open := fakeSeg{msn: msn + 1, start: start, parts: []fakePart{{dur: f.partDur, indep: true, body: f.keyBody}}}
	f.segs = []fakeSeg{done, open}
	f.signalLocked()
}

// drop makes a listed part answer 404.
func (f *fakeOrigin) drop(msn uint64, part int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.segs {
		if f.segs[i].msn == msn {
			f.segs[i].parts[part].gone = true
		}
	}
}

func (f *fakeOrigin) blocked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting
}

func (f *fakeOrigin) url() string { return f.srv.URL + "/live" }

var partPath = regexp.MustCompile(`^/live/[^/]+/s(\d+)\.(\d+)\.m4s$`)

func (f *fakeOrigin) serve(w http.ResponseWriter, r *http.Request) {
	if f.fault != nil {
		if st := f.fault(r); st != 0 {
			http.Error(w, "fault", st)
			return
		}
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/live/") && strings.HasSuffix(r.URL.Path, "/index.m3u8"):
		f.servePlaylist(w, r)
	case strings.HasPrefix(r.URL.Path, "/live/") && strings.HasSuffix(r.URL.Path, "/init1.mp4"):
		w.Write(f.initBody)
	case partPath.MatchString(r.URL.Path):
		m := partPath.FindStringSubmatch(r.URL.Path)
		msn, _ := strconv.ParseUint(m[1], 10, 64)
		idx, _ := strconv.Atoi(m[2])
		f.servePart(w, r, msn, idx)
	default:
		http.NotFound(w, r)
	}
}

// lookup finds part (msn, idx); next says it is the one the preload hint
// names.
func (f *fakeOrigin) lookupLocked(msn uint64, idx int) (p *fakePart, next bool) {
	for i := range f.segs {
		s := &f.segs[i]
		if s.msn != msn {
			continue
		}
		if idx < len(s.parts) {
			return &s.parts[idx], false
		}
		return nil, !s.closed && idx == len(s.parts)
	}
	last := f.segs[len(f.segs)-1]
	return nil, last.closed && msn == last.msn+1 && idx == 0
}

func (f *fakeOrigin) servePart(w http.ResponseWriter, r *http.Request, msn uint64, idx int) {
	deadline := time.After(f.hold)
	f.mu.Lock()
	for {
		p, next := f.lookupLocked(msn, idx)
		if p != nil && !p.gone {
			body := p.body
			f.mu.Unlock()
			w.Write(body)
			return
		}
		if !next {
			f.mu.Unlock()
			http.NotFound(w, r)
			return
		}
		ch := f.changed
		f.waiting++
		f.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			f.mu.Lock()
			f.waiting--
			f.mu.Unlock()
			http.NotFound(w, r)
			return
		case <-r.Context().Done():
			f.mu.Lock()
			f.waiting--
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		f.waiting--
	}
}

func (f *fakeOrigin) servePlaylist(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	hasMSN := q.Has("_HLS_msn")
	msn, _ := strconv.ParseUint(q.Get("_HLS_msn"), 10, 64)
	part, _ := strconv.Atoi(q.Get("_HLS_part"))
	deadline := time.After(f.hold)
	f.mu.Lock()
	for {
		edge := f.edgeLocked()
		want := pos{msn: msn, part: part}
		if limit := (pos{msn: edge.msn, part: edge.part + 3}); hasMSN && limit.less(want) {
			f.mu.Unlock()
			http.Error(w, "too far ahead", http.StatusBadRequest)
			return
		}
		if !hasMSN || want.less(edge) || f.ended {
			b := f.marshalLocked()
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
			w.Write(b)
			return
		}
		ch := f.changed
		f.waiting++
		f.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			f.mu.Lock()
			f.waiting--
			f.mu.Unlock()
			http.Error(w, "timeout", http.StatusServiceUnavailable)
			return
		case <-r.Context().Done():
			f.mu.Lock()
			f.waiting--
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		f.waiting--
	}
}

// edgeLocked is the position of the next part to come.
func (f *fakeOrigin) edgeLocked() pos {
	s := f.segs[len(f.segs)-1]
	if s.closed {
		return pos{msn: s.msn + 1}
	}
	return pos{msn: s.msn, part: len(s.parts)}
}

func (f *fakeOrigin) marshalLocked() []byte {
	hold := 5 * f.partDur
	pl := playlist.Media{
		Version:        9,
		TargetDuration: 1,
		ServerControl:  &playlist.MediaServerControl{CanBlockReload: true, PartHoldBack: &hold},
		PartInf:        &playlist.MediaPartInf{PartTarget: f.partDur},
		MediaSequence:  int(f.segs[0].msn),
		Map:            &playlist.MediaMap{URI: "init1.mp4"},
		Endlist:        f.ended,
	}
	if last := f.segs[len(f.segs)-1]; last.closed {
		pl.PreloadHint = &playlist.MediaPreloadHint{URI: "s" + strconv.FormatUint(last.msn+1, 10) + ".0.m4s"}
	}
	for _, s := range f.segs {
		var parts []*playlist.MediaPart
		var dur time.Duration
		for k, p := range s.parts {
			parts = append(parts, &playlist.MediaPart{Duration: p.dur, URI: "s" + strconv.FormatUint(s.msn, 10) + "." + strconv.Itoa(k) + ".m4s", Independent: p.indep})
			dur += p.dur
		}
		if !s.closed {
			pl.Parts = parts
			pl.PreloadHint = &playlist.MediaPreloadHint{URI: "s" + strconv.FormatUint(s.msn, 10) + "." + strconv.Itoa(len(s.parts)) + ".m4s"}
			continue
		}
		start := s.start.UTC()
		pl.Segments = append(pl.Segments, &playlist.MediaSegment{
			Duration: dur, URI: "s" + strconv.FormatUint(s.msn, 10) + ".m4s", DateTime: &start, Parts: parts,
		})
	}
	b, err := pl.Marshal()
	if err != nil {
		// No complete segment yet: what mediad answers then is not a
		// playlist.
		return []byte("#EXTM3U\n")
	}
	return b
}

func TestFakeOriginPlaylist(t *testing.T) {
	f := newFakeOrigin(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 7 {
		f.add(i%5 == 4, t0.Add(time.Duration(i)*f.partDur))
	}
	f.mu.Lock()
	b := f.marshalLocked()
	f.mu.Unlock()
	v, err := parseView(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if v.edge() != (pos{1, 2}) || v.hint != "s1.2.m4s" || len(v.parts) != 7 || !bytes.Contains(b, []byte("#EXT-X-PRELOAD-HINT")) {
		t.Errorf("edge %v hint %q parts %d\n%s", v.edge(), v.hint, len(v.parts), b)
	}
	if !strings.Contains(string(b), "CAN-BLOCK-RELOAD=YES") {
		t.Errorf("no blocking reload:\n%s", b)
	}
}
