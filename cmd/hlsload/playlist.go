package main

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
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

// parseView decodes a media playlist. gohlslib drops the
// EXT-X-PROGRAM-DATE-TIME of the open segment (the tag before its parts),
// so that one is read from the text directly.
func parseView(b []byte) (*view, error) {
	var m playlist.Media
	if err := m.Unmarshal(b); err != nil {
		if err.Error() == "no segments found" {
			return nil, errNoSegment
		}
		return nil, fmt.Errorf("playlist: %w", err)
	}
	if m.MediaSequence < 0 {
		return nil, fmt.Errorf("playlist: media sequence %d", m.MediaSequence)
	}
	v := &view{
		mediaSequence: uint64(m.MediaSequence),
		target:        time.Duration(m.TargetDuration) * time.Second,
		endlist:       m.Endlist,
	}
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
	addParts := func(seg *segRef, parts []*playlist.MediaPart) {
		var off time.Duration
		for i, p := range parts {
			v.parts = append(v.parts, partRef{
				pos: pos{msn: seg.msn, part: i}, uri: p.URI,
				duration: p.Duration, independent: p.Independent, offset: off,
			})
			off += p.Duration
		}
		seg.parts = len(parts)
	}
	for _, s := range m.Segments {
		seg := segRef{msn: msn, closed: true, duration: s.Duration}
		if s.DateTime != nil {
			seg.pdt = *s.DateTime
		}
		addParts(&seg, s.Parts)
		v.segments = append(v.segments, seg)
		msn++
	}
	if len(m.Parts) > 0 {
		seg := segRef{msn: msn, pdt: trailingPDT(b)}
		addParts(&seg, m.Parts)
		for _, p := range m.Parts {
			seg.duration += p.Duration
		}
		v.segments = append(v.segments, seg)
	}
	return v, nil
}

// trailingPDT is the EXT-X-PROGRAM-DATE-TIME given after the last segment
// URI, if any: the open segment's.
func trailingPDT(b []byte) time.Time {
	// The last line that is neither a tag nor empty is the last segment's
	// URI.
	end := len(b)
	tail := -1
	for end > 0 {
		start := bytes.LastIndexByte(b[:end], '\n') + 1
		line := bytes.TrimSpace(b[start:end])
		if len(line) > 0 && line[0] != '#' {
			tail = end
			break
		}
		if start == 0 {
			break
		}
		end = start - 1
	}
	if tail < 0 {
		return time.Time{}
	}
	const tag = "#EXT-X-PROGRAM-DATE-TIME:"
	rest := b[tail:]
	i := bytes.Index(rest, []byte(tag))
	if i < 0 {
		return time.Time{}
	}
	line := rest[i+len(tag):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	s := string(bytes.TrimSpace(line))
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
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
