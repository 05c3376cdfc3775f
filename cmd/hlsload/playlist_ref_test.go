package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// referenceView decodes a playlist with gohlslib, the reference that
// parseView is held to. gohlslib drops the open segment's
// EXT-X-PROGRAM-DATE-TIME, so the caller compares that separately.
func referenceView(b []byte) (*view, bool) {
	var m playlist.Media
	if err := m.Unmarshal(b); err != nil || m.MediaSequence < 0 {
		return nil, false
	}
	v := &view{mediaSequence: uint64(m.MediaSequence), target: time.Duration(m.TargetDuration) * time.Second, endlist: m.Endlist}
	if m.PartInf != nil {
		v.partTarget = m.PartInf.PartTarget
	}
	if c := m.ServerControl; c != nil {
		v.canBlock = c.CanBlockReload
		if c.PartHoldBack != nil {
			v.partHoldBack = *c.PartHoldBack
		}
	}
	if m.Map != nil {
		v.initURI = m.Map.URI
	}
	if m.PreloadHint != nil {
		v.hint = m.PreloadHint.URI
	}
	msn := v.mediaSequence
	add := func(seg *segRef, parts []*playlist.MediaPart) {
		var off time.Duration
		for i, p := range parts {
			v.parts = append(v.parts, partRef{pos: pos{msn: seg.msn, part: i}, uri: p.URI, duration: p.Duration, independent: p.Independent, offset: off})
			off += p.Duration
		}
		seg.parts = len(parts)
	}
	for _, s := range m.Segments {
		seg := segRef{msn: msn, closed: true, duration: s.Duration}
		if s.DateTime != nil {
			seg.pdt = *s.DateTime
		}
		add(&seg, s.Parts)
		v.segments = append(v.segments, seg)
		msn++
	}
	if len(m.Parts) > 0 {
		seg := segRef{msn: msn}
		add(&seg, m.Parts)
		for _, p := range m.Parts {
			seg.duration += p.Duration
		}
		v.segments = append(v.segments, seg)
	}
	return v, true
}

// sameView compares two views, the open segment's PDT aside.
func sameView(t *testing.T, got, want *view) {
	t.Helper()
	g := *got
	g.segments = append([]segRef(nil), got.segments...)
	if n := len(g.segments); n > 0 && !g.segments[n-1].closed {
		g.segments[n-1].pdt = time.Time{}
	}
	for i := range g.segments {
		// Compare instants, not locations.
		g.segments[i].pdt = g.segments[i].pdt.UTC()
	}
	w := *want
	w.segments = append([]segRef(nil), want.segments...)
	for i := range w.segments {
		w.segments[i].pdt = w.segments[i].pdt.UTC()
	}
	if !reflect.DeepEqual(&g, &w) {
		t.Fatalf("parseView:\n%+v\ngohlslib:\n%+v", g, w)
	}
}

const plainPlaylist = `#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00Z
#EXTINF:2.002,
s7.m4s
#EXT-X-DISCONTINUITY
#EXTINF:1.5,title
s8.m4s
#EXT-X-ENDLIST
`

func TestParseViewMatchesGohlslib(t *testing.T) {
	for _, text := range []string{llPlaylist, plainPlaylist} {
		want, ok := referenceView([]byte(text))
		if !ok {
			t.Fatalf("gohlslib refuses the sample:\n%s", text)
		}
		got, err := parseView([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		sameView(t, got, want)
	}
}

// FuzzParseView: on every playlist gohlslib accepts, parseView agrees
// with it; on anything, parseView does not panic.
func FuzzParseView(f *testing.F) {
	f.Add([]byte(llPlaylist))
	f.Add([]byte(plainPlaylist))
	f.Add([]byte("#EXTM3U\n#EXT-X-MAP:URI=\"a,b\",BYTERANGE=\"1@0\"\n#EXTINF:1,\ns.m4s\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseView(b)
		want, ok := referenceView(b)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("gohlslib accepts, parseView: %v", err)
		}
		sameView(t, got, want)
	})
}
