package main

import (
	"testing"
	"time"
)

// llPlaylist is shaped like mediad's: two complete segments with parts,
// the open segment's parts after them, the preload hint.
const llPlaylist = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.00000
#EXT-X-PART-INF:PART-TARGET=0.20000
#EXT-X-MEDIA-SEQUENCE:40
#EXT-X-MAP:URI="init1.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z
#EXT-X-PART:DURATION=0.20000,URI="s40.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="s40.1.m4s"
#EXT-X-PART:DURATION=0.20000,URI="s40.2.m4s"
#EXT-X-PART:DURATION=0.20000,URI="s40.3.m4s"
#EXT-X-PART:DURATION=0.20000,URI="s40.4.m4s"
#EXTINF:1.00000,
s40.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:01.003Z
#EXT-X-PART:DURATION=0.20000,URI="s41.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="s41.1.m4s"
#EXT-X-PART:DURATION=0.20000,URI="s41.2.m4s"
#EXT-X-PART:DURATION=0.20000,URI="s41.3.m4s"
#EXT-X-PART:DURATION=0.20000,URI="s41.4.m4s"
#EXTINF:1.00000,
s41.m4s
#EXT-X-PART:DURATION=0.20000,URI="s42.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI="s42.1.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="s42.2.m4s"
`

var t2026 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestParseView(t *testing.T) {
	v, err := parseView([]byte(llPlaylist))
	if err != nil {
		t.Fatal(err)
	}
	if v.mediaSequence != 40 || len(v.segments) != 3 || len(v.parts) != 12 {
		t.Fatalf("media sequence %d, %d segments, %d parts", v.mediaSequence, len(v.segments), len(v.parts))
	}
	if v.hint != "s42.2.m4s" || v.initURI != "init1.mp4" || !v.canBlock || v.partHoldBack != time.Second || v.partTarget != 200*time.Millisecond {
		t.Errorf("hint %q init %q block %v hold back %v part target %v", v.hint, v.initURI, v.canBlock, v.partHoldBack, v.partTarget)
	}
	open := v.segments[2]
	if open.closed || open.msn != 42 || open.parts != 2 || open.duration != 400*time.Millisecond || !open.pdt.IsZero() {
		t.Errorf("open segment %+v", open)
	}
	p := v.parts[8]
	if p.pos != (pos{41, 3}) || p.offset != 600*time.Millisecond || p.independent || p.uri != "s41.3.m4s" {
		t.Errorf("part 8: %+v", p)
	}
	if e := v.edge(); e != (pos{42, 2}) {
		t.Errorf("edge %v, want 42.2", e)
	}
	if n := v.newest(); n != (pos{42, 1}) {
		t.Errorf("newest %v, want 42.1", n)
	}
	for _, tt := range []struct {
		p    pos
		want bool
	}{{pos{42, 1}, true}, {pos{42, 2}, false}, {pos{41, 9}, true}, {pos{43, 0}, false}} {
		if got := v.has(tt.p); got != tt.want {
			t.Errorf("has(%v) = %v", tt.p, got)
		}
	}
	for _, tt := range []struct {
		msn   uint64
		want  time.Time
		exact bool
	}{
		{40, t2026, true},
		{41, t2026.Add(1003 * time.Millisecond), true},
		{42, t2026.Add(2003 * time.Millisecond), false}, // 41's PDT + EXTINF
		{43, time.Time{}, false},
		{39, time.Time{}, false},
	} {
		got, exact := v.startTime(tt.msn)
		if !got.Equal(tt.want) || exact != tt.exact {
			t.Errorf("startTime(%d) = %v, %v; want %v, %v", tt.msn, got, exact, tt.want, tt.exact)
		}
	}
}

// TestOpenSegmentPDT: the open segment's EXT-X-PROGRAM-DATE-TIME, which
// comes before its parts, is read (gohlslib drops it).
func TestOpenSegmentPDT(t *testing.T) {
	tests := []struct {
		name, text string
		want       time.Time
	}{
		{"none given", llPlaylist, time.Time{}},
		{"open segment's", "#EXTM3U\n#EXTINF:1,\ns1.m4s\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:02.5Z\n#EXT-X-PART:DURATION=0.2,URI=\"a\"\n", t2026.Add(2500 * time.Millisecond)},
		{"offset zone", "#EXTM3U\n#EXTINF:1,\ns1.m4s\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T01:00:02.000+0100\n#EXT-X-PART:DURATION=0.2,URI=\"a\"\n", t2026.Add(2 * time.Second)},
		{"CRLF and blank lines", "#EXTM3U\r\n#EXTINF:1,\r\ns1.m4s\r\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:03Z\r\n\r\n#EXT-X-PART:DURATION=0.2,URI=\"a\"\r\n\r\n", t2026.Add(3 * time.Second)},
	}
	for _, tt := range tests {
		v, err := parseView([]byte(tt.text))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		open := v.segments[len(v.segments)-1]
		if open.closed || !open.pdt.Equal(tt.want) {
			t.Errorf("%s: open segment %+v, want PDT %v", tt.name, open, tt.want)
		}
	}
}

func TestParseViewErrors(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		want       error
	}{
		{"no segment yet", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PART:DURATION=0.2,URI=\"s0.0.m4s\"\n", errNoSegment},
		{"not a playlist", "<html>", nil},
		{"empty", "", nil},
		{"segment without EXTINF", "#EXTM3U\ns1.m4s\n", nil},
		{"part without URI", "#EXTM3U\n#EXTINF:1,\ns1.m4s\n#EXT-X-PART:DURATION=0.2\n", nil},
		{"bad duration", "#EXTM3U\n#EXTINF:x,\ns1.m4s\n", nil},
		{"unterminated quote", "#EXTM3U\n#EXT-X-MAP:URI=\"init\n#EXTINF:1,\ns1.m4s\n", nil},
		{"bad media sequence", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:-1\n#EXTINF:1,\ns1.m4s\n", nil},
	} {
		_, err := parseView([]byte(tt.text))
		if err == nil || tt.want != nil && err != tt.want {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
	}
}

// view builds a playlist view from segments given as part counts, the
// last one open when open is set, with 200 ms parts, independent first.
func testView(first uint64, counts []int, open bool, holdBack time.Duration) *view {
	v := &view{mediaSequence: first, partHoldBack: holdBack, canBlock: true, partTarget: 200 * time.Millisecond}
	for i, n := range counts {
		s := segRef{msn: first + uint64(i), closed: !open || i < len(counts)-1, parts: n,
			pdt: t2026.Add(time.Duration(i) * time.Second)}
		if !s.closed {
			s.pdt = time.Time{}
		}
		for k := range n {
			d := 200 * time.Millisecond
			v.parts = append(v.parts, partRef{pos: pos{s.msn, k}, uri: pos{s.msn, k}.String(), duration: d, independent: k == 0, offset: time.Duration(k) * d})
			s.duration += d
		}
		v.segments = append(v.segments, s)
	}
	return v
}

func TestStartPart(t *testing.T) {
	tests := []struct {
		name     string
		counts   []int
		open     bool
		holdBack time.Duration
		want     pos
		ok       bool
	}{
		// Live edge at 2.4 s; target 1.4 s: the keyframe at 1.0 s.
		{"keyframe before the hold-back point", []int{5, 5, 2}, true, time.Second, pos{1, 0}, true},
		// Target 2.2 s: the keyframe at 2.0 s.
		{"short hold back", []int{5, 5, 2}, true, 200 * time.Millisecond, pos{2, 0}, true},
		// Target before every part: the first keyframe after it.
		{"hold back beyond the window", []int{5, 2}, true, 5 * time.Second, pos{0, 0}, true},
		{"no parts", []int{0, 0}, false, time.Second, pos{}, false},
	}
	for _, tt := range tests {
		v := testView(0, tt.counts, tt.open, tt.holdBack)
		i, ok := v.startPart()
		if ok != tt.ok || ok && v.parts[i].pos != tt.want {
			t.Errorf("%s: start %d (%v), want %v, %v", tt.name, i, ok, tt.want, tt.ok)
		}
	}
	// Only non-independent parts listed: wait.
	v := testView(0, []int{3}, true, time.Second)
	v.parts[0].independent = false
	if _, ok := v.startPart(); ok {
		t.Error("started without an independent part")
	}
}
