package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// pos is a part's place in the stream: media sequence number and index
// within its segment. Positions order parts in time.
type pos struct {
	msn  uint64
	part int
}

func (p pos) less(q pos) bool {
	return p.msn < q.msn || p.msn == q.msn && p.part < q.part
}

func (p pos) String() string { return fmt.Sprintf("%d.%d", p.msn, p.part) }

// partRef is one EXT-X-PART of a playlist.
type partRef struct {
	pos
	uri         string // as listed: relative to the playlist
	duration    time.Duration
	independent bool
	// offset is the sum of the durations of the parts before it in its
	// segment: its first frame is offset after the segment's first.
	offset time.Duration
}

// segRef is one segment of a playlist: a complete one, or the open one
// that the trailing EXT-X-PART tags belong to.
type segRef struct {
	msn      uint64
	closed   bool
	duration time.Duration // EXTINF; the open one: its parts so far
	// pdt is EXT-X-PROGRAM-DATE-TIME: the server's wall clock at the
	// segment's first frame. Zero when the playlist does not give it.
	pdt time.Time
	// parts is how many EXT-X-PART tags it has in this playlist (0 for
	// segments listed without parts).
	parts int
}

// view is what a viewer needs of a media playlist, flattened.
type view struct {
	mediaSequence uint64
	segments      []segRef  // oldest first; the open one, if any, last
	parts         []partRef // every listed part, oldest first
	hint          string    // EXT-X-PRELOAD-HINT URI, "" if none
	initURI       string    // EXT-X-MAP URI
	target        time.Duration
	partTarget    time.Duration
	partHoldBack  time.Duration
	canBlock      bool
	endlist       bool
}

// errNoSegment is a playlist without a complete segment: a stream that is
// starting. gohlslib refuses such a playlist; the viewer waits.
var errNoSegment = errors.New("playlist has no complete segment yet")

// parseView decodes a media playlist: only the tags a viewer acts on, in
// one pass over the lines. A thousand viewers parse some 5,000 playlists
// a second, on the cores the server under test has too: gohlslib's
// general decoder cost the load client a quarter of its CPU. The tests
// hold this parser to gohlslib's on every playlist both accept
// (TestParseViewMatchesGohlslib, FuzzParseView).
func parseView(b []byte) (*view, error) {
	v := &view{}
	var (
		first    = true
		seg      uint64 // index of the segment being listed
		extinf   time.Duration
		hasInf   bool
		pdt      time.Time
		parts    int // of the segment being listed
		partsOff time.Duration
	)
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		line = bytes.TrimRight(line, "\r")
		if first {
			if string(line) != "#EXTM3U" {
				return nil, errors.New("playlist: does not start with #EXTM3U")
			}
			first = false
			continue
		}
		if len(line) == 0 {
			continue
		}
		if line[0] != '#' {
			// A segment's URI ends the segment.
			if !hasInf {
				return nil, fmt.Errorf("playlist: segment %q without #EXTINF", line)
			}
			v.segments = append(v.segments, segRef{msn: seg, closed: true, duration: extinf, pdt: pdt, parts: parts})
			seg++
			extinf, hasInf, pdt, parts, partsOff = 0, false, time.Time{}, 0, 0
			continue
		}
		tag, val, hasVal := bytes.Cut(line, []byte{':'})
		if !hasVal {
			if string(line) == "#EXT-X-ENDLIST" {
				v.endlist = true
			}
			continue
		}
		var err error
		switch string(tag) {
		case "#EXT-X-TARGETDURATION":
			// Whole seconds; a fraction is ignored, as gohlslib does.
			n, _, _ := bytes.Cut(val, []byte{'.'})
			var t uint64
			t, err = strconv.ParseUint(string(n), 10, 31)
			v.target = time.Duration(t) * time.Second
		case "#EXT-X-MEDIA-SEQUENCE":
			v.mediaSequence, err = strconv.ParseUint(string(val), 10, 63)
		case "#EXT-X-SERVER-CONTROL":
			var a [2][]byte
			v.canBlock, v.partHoldBack = false, 0
			if err = attrList(val, a[:], "CAN-BLOCK-RELOAD", "PART-HOLD-BACK"); err == nil {
				v.canBlock = string(a[0]) == "YES"
				err = parseSeconds(a[1], &v.partHoldBack)
			}
		case "#EXT-X-PART-INF":
			var a [1][]byte
			v.partTarget = 0
			if err = attrList(val, a[:], "PART-TARGET"); err == nil {
				err = parseSeconds(a[0], &v.partTarget)
			}
		case "#EXT-X-MAP":
			var a [1][]byte
			err = attrList(val, a[:], "URI")
			v.initURI = string(a[0])
		case "#EXT-X-PROGRAM-DATE-TIME":
			pdt, err = parsePDT(val)
		case "#EXTINF":
			d, _, _ := bytes.Cut(val, []byte{','})
			err = parseSeconds(d, &extinf)
			hasInf = true
		case "#EXT-X-PART":
			var a [3][]byte
			p := partRef{pos: pos{msn: seg, part: parts}, offset: partsOff}
			if err = attrList(val, a[:], "DURATION", "URI", "INDEPENDENT"); err == nil {
				err = parseSeconds(a[0], &p.duration)
				p.uri, p.independent = string(a[1]), string(a[2]) == "YES"
			}
			if err == nil && p.uri == "" {
				err = errors.New("URI missing")
			}
			v.parts = append(v.parts, p)
			parts++
			partsOff += p.duration
		case "#EXT-X-PRELOAD-HINT":
			var a [1][]byte
			err = attrList(val, a[:], "URI")
			v.hint = string(a[0])
		}
		if err != nil {
			return nil, fmt.Errorf("playlist: %s: %w", tag, err)
		}
	}
	if first {
		return nil, errors.New("playlist: empty")
	}
	if len(v.segments) == 0 {
		return nil, errNoSegment
	}
	if parts > 0 {
		v.segments = append(v.segments, segRef{msn: seg, pdt: pdt, parts: parts, duration: partsOff})
	}
	// Numbers were counted from the first segment listed: the media
	// sequence number may come anywhere.
	for i := range v.segments {
		v.segments[i].msn += v.mediaSequence
	}
	for i := range v.parts {
		v.parts[i].msn += v.mediaSequence
	}
	return v, nil
}

// attrList reads an attribute list (NAME=VALUE,...; a quoted value loses
// its quotes) into vals: the value of each of names, the last one given
// if repeated, nil if absent.
func attrList(b []byte, vals [][]byte, names ...string) error {
	for len(b) > 0 {
		k, rest, ok := bytes.Cut(b, []byte{'='})
		if !ok {
			return fmt.Errorf("bad attribute list %q", b)
		}
		k = bytes.TrimLeft(k, " ")
		var val []byte
		if len(rest) > 0 && rest[0] == '"' {
			end := bytes.IndexByte(rest[1:], '"')
			if end < 0 {
				return fmt.Errorf("unterminated quoted value of %s", k)
			}
			val, rest = rest[1:1+end], rest[2+end:]
			switch {
			case len(rest) == 0:
			case rest[0] == ',':
				rest = rest[1:]
			default:
				return fmt.Errorf("bad attribute list after %s", k)
			}
		} else {
			val, rest, _ = bytes.Cut(rest, []byte{','})
		}
		for i, n := range names {
			if string(k) == n {
				vals[i] = val
			}
		}
		b = rest
	}
	return nil
}

// parseSeconds reads a decimal number of seconds, as gohlslib does; an
// absent value (nil) leaves d alone.
func parseSeconds(b []byte, d *time.Duration) error {
	if b == nil {
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	*d = time.Duration(f * float64(time.Second))
	return nil
}

func parsePDT(b []byte) (time.Time, error) {
	// gohlslib's layouts: with or without a colon in the zone offset.
	s := string(bytes.TrimSpace(b))
	t, err := time.Parse("2006-01-02T15:04:05.999Z07:00", s)
	if err == nil {
		return t, nil
	}
	if t, err2 := time.Parse("2006-01-02T15:04:05.999Z0700", s); err2 == nil {
		return t, nil
	}
	return time.Time{}, err
}

// edge is the position just after the newest content: the open segment's
// next part, or part 0 of the segment after the last complete one.
func (v *view) edge() pos {
	if n := len(v.segments); n > 0 && !v.segments[n-1].closed {
		s := v.segments[n-1]
		return pos{msn: s.msn, part: s.parts}
	}
	return pos{msn: v.mediaSequence + uint64(len(v.segments))}
}

// newest is the position of the newest part listed, or of the last
// complete segment's end when no part is: what an MSN regression is
// measured by.
func (v *view) newest() pos {
	e := v.edge()
	if e.part > 0 {
		return pos{msn: e.msn, part: e.part - 1}
	}
	if n := len(v.segments); n > 0 {
		s := v.segments[n-1]
		return pos{msn: s.msn, part: max(s.parts, 1) - 1}
	}
	return pos{}
}

// has says whether the playlist lists p or anything after it, which is
// what a blocking reload for p waits for (RFC 8216bis §6.2.5.2).
func (v *view) has(p pos) bool {
	return !v.edge().less(pos{msn: p.msn, part: p.part + 1})
}

// segment returns the segment msn, if listed.
func (v *view) segment(msn uint64) (segRef, bool) {
	if msn < v.mediaSequence {
		return segRef{}, false
	}
	i := msn - v.mediaSequence
	if i >= uint64(len(v.segments)) {
		return segRef{}, false
	}
	return v.segments[i], true
}

// startTime is the server's wall clock at the first frame of segment msn:
// its PDT, or, for a segment listed without one (the open segment), the
// previous segment's PDT plus its duration. exact says it was the PDT.
func (v *view) startTime(msn uint64) (t time.Time, exact bool) {
	s, ok := v.segment(msn)
	if !ok {
		return time.Time{}, false
	}
	if !s.pdt.IsZero() {
		return s.pdt, true
	}
	if msn == v.mediaSequence {
		return time.Time{}, false
	}
	prev, _ := v.segment(msn - 1)
	if prev.pdt.IsZero() {
		return time.Time{}, false
	}
	return prev.pdt.Add(prev.duration), false
}

// startPart chooses where a joining viewer starts, as hls.js does in
// low-latency mode: the target is PART-HOLD-BACK behind the live edge, and
// the viewer starts at the last INDEPENDENT part at or before it, else at
// the first one after it. ok is false when no listed part is
// independent: the viewer then waits for one.
func (v *view) startPart() (int, bool) {
	if len(v.parts) == 0 {
		return 0, false
	}
	// Times on a line that starts at the first listed part: the listed
	// parts are consecutive (the recent segments, each whole).
	var live time.Duration
	at := make([]time.Duration, len(v.parts))
	for i, p := range v.parts {
		at[i] = live
		live += p.duration
	}
	target := live - v.partHoldBack
	best := -1
	for i, p := range v.parts {
		if !p.independent {
			continue
		}
		if at[i] <= target {
			best = i
			continue
		}
		if best < 0 {
			best = i
		}
		break
	}
	return best, best >= 0
}

// find returns the listed part with that URI.
func (v *view) find(uri string) (partRef, bool) {
	for i := len(v.parts) - 1; i >= 0; i-- {
		if v.parts[i].uri == uri {
			return v.parts[i], true
		}
	}
	return partRef{}, false
}
