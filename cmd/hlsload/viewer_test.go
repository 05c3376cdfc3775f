package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/flv"
)

// peek reads a meter's current interval without ending it.
func peek(m *meter) window {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.cur
	w.Errors = make(map[string]uint64, len(m.cur.Errors))
	for k, v := range m.cur.Errors {
		w.Errors[k] = v
	}
	w.delays = append([]int32(nil), m.cur.delays...)
	return w
}

// waitFor polls cond until it holds; the deadline only bounds a broken
// test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type viewerRun struct {
	m      *meter
	cancel context.CancelFunc
	done   chan error
}

func startViewer(t *testing.T, base string, flvMode bool) *viewerRun {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &runConfig{base: u, timeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	r := &viewerRun{m: &meter{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		if flvMode {
			r.done <- newFLVViewer(cfg, "k", r.m, ctx).run()
		} else {
			r.done <- newHLSViewer(cfg, "k", r.m, ctx).run()
		}
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *viewerRun) stop(t *testing.T) error {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("viewer did not stop")
		return nil
	}
}

// seed gives the fake origin segment 0 (five parts) and two parts of
// segment 1.
func seed(f *fakeOrigin) {
	for i := range 7 {
		f.add(i%5 == 4, time.Now())
	}
}

// caughtUp: the viewer has a blocking reload and the preload hint waiting,
// and has received want parts.
func caughtUp(f *fakeOrigin, m *meter, want uint64) func() bool {
	return func() bool { return f.blocked() == 2 && peek(m).PartsReceived == want }
}

func TestViewerFollowsLiveEdge(t *testing.T) {
	f := newFakeOrigin(t)
	seed(f)
	v := startViewer(t, f.url(), false)
	// Hold back 1 s from the edge at 1.4 s: it starts at 0.0.
	waitFor(t, "the join", caughtUp(f, v.m, 7))
	const more = 8
	for i := range more {
		f.add((7+i)%5 == 4, time.Now())
		waitFor(t, fmt.Sprintf("part %d", i), caughtUp(f, v.m, uint64(8+i)))
	}
	if err := v.stop(t); err != nil {
		t.Fatal(err)
	}
	w := v.m.take()
	if len(w.Errors) != 0 || w.Skips != 0 || w.MSNBackwards != 0 || w.PartsMissing != 0 || w.Unsatisfied != 0 || w.NotSync != 0 {
		t.Errorf("errors %v, %d skips, %d backwards, %d missing, %d unsatisfied, %d not sync",
			w.Errors, w.Skips, w.MSNBackwards, w.PartsMissing, w.Unsatisfied, w.NotSync)
	}
	// Every part after the join was waited for: one delay each.
	if len(w.delays) != more || len(w.gaps) != 7+more-1 {
		t.Errorf("%d delays, %d gaps; want %d, %d", len(w.delays), len(w.gaps), more, 7+more-1)
	}
	if w.Hints < more || w.Blocking < more || w.Inits != 1 || w.Playlists != 1 {
		t.Errorf("requests: %d hints, %d blocking, %d init, %d plain", w.Hints, w.Blocking, w.Inits, w.Playlists)
	}
	if w.Dials > 2 {
		t.Errorf("%d connections, want at most 2", w.Dials)
	}
	if len(w.joins) != 1 || !w.joins[0].decodable || w.joins[0].waited {
		t.Errorf("joins %+v", w.joins)
	}
}

func TestViewerTooFarAhead(t *testing.T) {
	f := newFakeOrigin(t)
	seed(f)
	var n atomic.Int32
	f.fault = func(r *http.Request) int {
		if r.URL.Query().Has("_HLS_msn") && n.Add(1) == 1 {
			return http.StatusBadRequest
		}
		return 0
	}
	v := startViewer(t, f.url(), false)
	waitFor(t, "the join", caughtUp(f, v.m, 7))
	f.add(false, time.Now())
	waitFor(t, "a part after the 400", caughtUp(f, v.m, 8))
	w := peek(v.m)
	if w.Errors["playlist_http_400"] != 1 || w.Playlists != 2 {
		t.Errorf("errors %v, %d plain reloads; want one 400 and a plain reload after it", w.Errors, w.Playlists)
	}
}

func TestViewerTimeout(t *testing.T) {
	f := newFakeOrigin(t)
	f.hold = 50 * time.Millisecond
	seed(f)
	v := startViewer(t, f.url(), false)
	waitFor(t, "a 503", func() bool { return peek(v.m).Errors["playlist_http_503"] >= 2 })
	f.add(false, time.Now())
	waitFor(t, "a part after the 503s", func() bool { return peek(v.m).PartsReceived == 8 })
	w := peek(v.m)
	if w.HintsFailed == 0 || w.Errors["hint_http_404"] != w.HintsFailed {
		t.Errorf("hints failed %d, errors %v", w.HintsFailed, w.Errors)
	}
	if w.PartsMissing != 0 || w.Skips != 0 {
		t.Errorf("%d missing, %d skips", w.PartsMissing, w.Skips)
	}
}

func TestViewerMissingPart(t *testing.T) {
	f := newFakeOrigin(t)
	seed(f)
	f.drop(0, 2)
	v := startViewer(t, f.url(), false)
	waitFor(t, "the join", caughtUp(f, v.m, 6))
	w := peek(v.m)
	if w.PartsMissing != 1 || w.Errors["part_http_404"] != 1 {
		t.Errorf("%d missing, errors %v", w.PartsMissing, w.Errors)
	}
}

func TestViewerRenumberedStream(t *testing.T) {
	f := newFakeOrigin(t)
	for i := range 12 {
		f.add(i%5 == 4, time.Now())
	}
	v := startViewer(t, f.url(), false)
	waitFor(t, "the join", func() bool { return f.blocked() == 2 && peek(v.m).PartsReceived > 0 })
	got := peek(v.m).PartsReceived
	f.restart(0, time.Now())
	waitFor(t, "the regression", func() bool { return f.blocked() == 2 && peek(v.m).MSNBackwards > 0 })
	f.add(false, time.Now())
	waitFor(t, "a part of the new numbering", caughtUp(f, v.m, got+1))
	if w := peek(v.m); w.Errors["playlist_http_400"] == 0 {
		t.Errorf("errors %v: the reload for the old numbering should have been too far ahead", w.Errors)
	}
}

func TestViewerEndlist(t *testing.T) {
	f := newFakeOrigin(t)
	seed(f)
	v := startViewer(t, f.url(), false)
	waitFor(t, "the join", caughtUp(f, v.m, 7))
	f.mu.Lock()
	f.ended = true
	f.signalLocked()
	f.mu.Unlock()
	select {
	case err := <-v.done:
		close(v.done)
		if err != nil {
			t.Errorf("viewer: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("viewer did not stop at ENDLIST")
	}
}

func TestViewerNoStream(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	v := startViewer(t, srv.URL+"/live", false)
	waitFor(t, "404s", func() bool { return peek(v.m).Errors["playlist_http_404"] >= 2 })
	if err := v.stop(t); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("viewer error %v, want a 404", err)
	}
}

func TestFLVViewer(t *testing.T) {
	avcHeader := []byte{0x17, 0, 0, 0, 0, 1, 0x42, 0xc0, 0x28}
	inter := []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41}
	key := []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65}
	aac := []byte{0xaf, 0, 0x12, 0x10}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/live/k.flv" {
			http.NotFound(w, r)
			return
		}
		b := flv.AppendFileHeader(nil, true, true)
		for _, tag := range []flv.Tag{
			{Type: flv.TagAudio, Data: aac},
			{Type: flv.TagVideo, Data: avcHeader},
			{Type: flv.TagVideo, Timestamp: 0, Data: inter},
			{Type: flv.TagVideo, Timestamp: 33, Data: inter},
		} {
			b, _ = flv.AppendTag(b, tag)
		}
		w.Write(b)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		b, _ = flv.AppendTag(nil, flv.Tag{Type: flv.TagVideo, Timestamp: 66, Data: key})
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	v := startViewer(t, srv.URL+"/live", true)
	waitFor(t, "the first video", func() bool { return peek(v.m).FramesReceived == 3 })
	if w := peek(v.m); len(w.joins) != 1 || w.joins[0].decodable || w.joins[0].firstPart < 0 {
		t.Errorf("before the keyframe: joins %+v", w.joins)
	}
	close(release)
	waitFor(t, "the keyframe", func() bool { return peek(v.m).FramesReceived == 4 })
	// The stream ends cleanly: the viewer is done.
	select {
	case err := <-v.done:
		close(v.done)
		if err != nil {
			t.Errorf("viewer: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("viewer did not stop at the end of the stream")
	}
	w := v.m.take()
	if len(w.joins) != 2 || !w.joins[1].decodable || w.joins[1].firstDecodable < w.joins[0].firstPart {
		t.Errorf("joins %+v", w.joins)
	}
	if len(w.gaps) != 2 || w.FLV != 1 || len(w.Errors) != 0 {
		t.Errorf("%d gaps, %d requests, errors %v", len(w.gaps), w.FLV, w.Errors)
	}
}
