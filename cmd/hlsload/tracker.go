package main

import (
	"time"
)

// Part availability delay
//
// A part covers the frames from its first to the next part's first. The
// server can list it, at the earliest, when the frame after its last one
// has entered: one part duration after its first frame entered. What the
// issue bounds ("part delay p99 ≤ 50 ms beyond the part duration") is the
// rest:
//
//	delay = seen − (PDT(segment) + offset + duration)
//
//   - seen: the wall clock when the viewer first had evidence that the part
//     exists: the blocking playlist reload that first lists it returned, or
//     the request for it as the preload hint returned its headers,
//     whichever came first. Only parts that first appeared while the viewer
//     was waiting for them count: parts already in a playlist it loaded
//     without a blocking directive (on joining, after an error) did not
//     appear at that moment.
//   - PDT(segment): the segment's EXT-X-PROGRAM-DATE-TIME. mediad stamps a
//     broadcast's first segment with its arrival and steps every later one
//     on by media time (moved towards the wall clock only beyond 500 ms
//     from it), so PDT + offset + duration is when the part's end was due
//     from a publisher on schedule, not when it came: a publisher that
//     lags its schedule (rtmpload, on a busy machine) adds its lag to the
//     delay. Before mediad stepped date-times by media time, each was the
//     arrival of the segment's first frame, and the publisher's lag was
//     not counted. The open segment has no PDT in the
//     playlist; the observation waits until a later playlist lists the
//     segment complete, with its PDT (if that never comes, the previous
//     segment's PDT plus its EXTINF stands in).
//   - offset: the durations of the parts before it in its segment, so that
//     PDT + offset is the wall clock of the part's first frame, and
//     + duration that of the frame after its last.
//
// The server and the viewers share one clock (same machine). A delay below
// zero means the part was listed before its nominal end (for instance, a
// part closed by a keyframe before its full duration).
//
// Largest gap
//
// The wall-clock interval between two successive parts received (body
// complete), whatever the path. In steady state it is about one part
// duration; a stall shows as a longer gap. "stall" is the gap minus the
// duration of the part that ended it: the extra wait beyond the part's
// own length.

// obs is one part's first sighting, waiting for its segment's PDT.
type obs struct {
	pos
	seen     time.Time
	offset   time.Duration
	duration time.Duration
	// estStart is the segment's start as estimated when the part was seen
	// (previous PDT + EXTINF); zero if it could not be.
	estStart time.Time
}

// hintRec is a part received through its preload hint, until a playlist
// lists it.
type hintRec struct {
	gap    time.Duration
	hasGap bool
	sync   syncState
}

// syncState is what a part's first video sample said.
type syncState uint8

const (
	syncUnknown syncState = iota // no video track found, or no init yet
	syncYes
	syncNo
)

// pendingLimit bounds the observations waiting for a PDT; older ones are
// settled with the estimate.
const pendingLimit = 30 * time.Second

// tracker is one viewer's bookkeeping: what it has seen in playlists, which
// parts it still has to fetch, what it received. Only the viewer's
// goroutine calls it, with explicit times, so that tests drive it with
// canned playlists.
type tracker struct {
	m *meter

	pl         *view // the newest playlist
	newest     pos   // the newest part any playlist listed
	haveNewest bool
	mediaSeq   uint64

	started bool // the start part is chosen
	waited  bool // the first playlists had no independent part
	queue   []partRef
	enq     pos // the last part queued (or received by hint)
	haveEnq bool

	// byHint holds the URIs of parts received as preload hints, with the
	// time their answer began; unlisted those of them no playlist has
	// listed yet. hintTried is the last hint asked for.
	byHint    map[string]time.Time
	unlisted  map[string]hintRec
	hintTried string
	pending   []obs

	lastRecv time.Time
	haveRecv bool

	joinStart      time.Time
	firstPart      bool
	firstDecodable bool
}

func newTracker(m *meter) *tracker {
	return &tracker{m: m, byHint: make(map[string]time.Time), unlisted: make(map[string]hintRec)}
}

// onPlaylist takes a playlist that arrived at at; blocking says it answered
// a blocking reload, so that parts new in it appeared while the viewer
// waited.
func (t *tracker) onPlaylist(v *view, at time.Time, blocking bool) {
	nw := v.newest()
	if t.haveNewest && (nw.less(t.newest) || v.mediaSequence < t.mediaSeq) {
		t.m.count(func(c *tally) { c.MSNBackwards++ })
		if nw.less(t.newest) {
			// A stream numbered anew: go on from its next part, as a
			// player that reloads would.
			t.newest, t.mediaSeq = nw, v.mediaSequence
			if t.started {
				t.queue, t.enq, t.haveEnq = nil, nw, true
			}
		}
	}
	t.mediaSeq = max(t.mediaSeq, v.mediaSequence)

	for _, p := range v.parts {
		if t.haveNewest && !t.newest.less(p.pos) {
			continue
		}
		seen, ok := time.Time{}, false
		if blocking && t.haveNewest {
			seen, ok = at, true
		}
		if h, hinted := t.byHint[p.uri]; hinted && (!ok || h.Before(seen)) {
			seen, ok = h, true
		}
		if ok {
			est, _ := v.startTime(p.msn)
			t.pending = append(t.pending, obs{pos: p.pos, seen: seen, offset: p.offset, duration: p.duration, estStart: est})
		}
	}
	if !t.haveNewest || t.newest.less(nw) {
		t.newest, t.haveNewest = nw, true
	}
	t.settle(v, at)

	t.pl = v
	t.enqueue(v)
	for _, p := range v.parts {
		if h, ok := t.unlisted[p.uri]; ok {
			delete(t.unlisted, p.uri)
			t.listedHint(p, h)
		}
	}
	for uri, h := range t.byHint {
		if at.Sub(h) > pendingLimit {
			delete(t.byHint, uri)
			delete(t.unlisted, uri)
		}
	}
}

// listedHint accounts for a part received by hint once a playlist says
// what it is.
func (t *tracker) listedHint(p partRef, h hintRec) {
	if h.hasGap {
		t.m.stall(h.gap - p.duration)
	}
	if p.independent && h.sync == syncNo {
		t.m.count(func(c *tally) { c.NotSync++ })
	}
}

// enqueue queues the parts of v after the last one queued; the first
// playlist with an independent part chooses where the viewer starts.
func (t *tracker) enqueue(v *view) {
	if !t.started {
		i, ok := v.startPart()
		if !ok {
			t.waited = true
			return
		}
		t.started = true
		t.queue = append(t.queue, v.parts[i:]...)
		t.enq, t.haveEnq = v.parts[len(v.parts)-1].pos, true
		return
	}
	if len(t.queue) > 0 && len(v.parts) > 0 && t.queue[0].less(v.parts[0].pos) {
		// Fallen behind the parts the playlist lists: what is queued
		// would be fetched late or not at all. Start again from the
		// live edge, as a player that falls out of the live window
		// does.
		n := uint64(len(t.queue))
		t.m.count(func(c *tally) { c.Resyncs++; c.PartsDropped += n })
		i, ok := v.startPart()
		if !ok {
			i = len(v.parts) - 1
		}
		t.queue = append(t.queue[:0], v.parts[i:]...)
		t.enq, t.haveEnq = v.parts[len(v.parts)-1].pos, true
		return
	}
	for _, p := range v.parts {
		if t.haveEnq && !t.enq.less(p.pos) {
			continue
		}
		if t.haveEnq && !t.follows(v, p.pos) {
			t.m.count(func(c *tally) { c.Skips++ })
		}
		t.enq, t.haveEnq = p.pos, true
		if _, hinted := t.byHint[p.uri]; !hinted {
			t.queue = append(t.queue, p)
		}
	}
}

// follows says whether p is the part after t.enq as far as v tells: the
// next part of its segment, or the first of the next segment once that one
// is complete with t.enq its last listed part.
func (t *tracker) follows(v *view, p pos) bool {
	e := t.enq
	if p.msn == e.msn {
		return p.part == e.part+1
	}
	if p.msn != e.msn+1 || p.part != 0 {
		return false
	}
	s, ok := v.segment(e.msn)
	if !ok || s.parts == 0 {
		// Its parts are no longer listed: nothing says one is missing.
		return true
	}
	return s.closed && s.parts == e.part+1
}

// settle turns into delays the observations whose segment v gives a PDT
// for, and those too old to wait for one.
func (t *tracker) settle(v *view, now time.Time) {
	keep := t.pending[:0]
	for _, o := range t.pending {
		start := time.Time{}
		if v != nil {
			if s, ok := v.segment(o.msn); ok && s.closed && !s.pdt.IsZero() {
				start = s.pdt
			}
		}
		if start.IsZero() && (v == nil || now.Sub(o.seen) > pendingLimit) {
			start = o.estStart
			if start.IsZero() {
				continue // dropped: nothing to measure against
			}
		}
		if start.IsZero() {
			keep = append(keep, o)
			continue
		}
		t.m.delay(o.seen.Sub(start.Add(o.offset + o.duration)))
	}
	t.pending = keep
}

// flush settles every observation with what is known: at the end of a
// viewer.
func (t *tracker) flush() { t.settle(nil, time.Time{}) }

// next returns the next part to fetch.
func (t *tracker) next() (partRef, bool) {
	for len(t.queue) > 0 {
		p := t.queue[0]
		t.queue = t.queue[1:]
		if _, hinted := t.byHint[p.uri]; !hinted {
			return p, true
		}
	}
	t.queue = nil
	return partRef{}, false
}

// requeue puts p back at the head of the queue (a fetch to retry).
func (t *tracker) requeue(p partRef) {
	t.queue = append([]partRef{p}, t.queue...)
}

// hint is the preload hint to fetch ahead, if the viewer has caught up with
// the listed parts and has not asked for it already. The caller asks for
// it.
func (t *tracker) hint() (string, bool) {
	if !t.started || len(t.queue) > 0 || t.pl == nil || t.pl.hint == "" || t.pl.hint == t.hintTried {
		return "", false
	}
	if _, done := t.byHint[t.pl.hint]; done {
		return "", false
	}
	t.hintTried = t.pl.hint
	return t.pl.hint, true
}

// received records a part's arrival: p is known for a listed part, hint
// is its URI for a part fetched as the preload hint (headers is when that
// answer began). sync is what its first video sample said; initOK that
// the viewer holds the init section.
func (t *tracker) received(p partRef, hint string, headers, at time.Time, sync syncState, initOK bool) {
	t.m.count(func(c *tally) { c.PartsReceived++ })
	var gap time.Duration
	hasGap := t.haveRecv
	if hasGap {
		gap = at.Sub(t.lastRecv)
		t.m.gap(gap)
	}
	t.lastRecv, t.haveRecv = at, true
	if hint != "" {
		t.byHint[hint] = headers
		h := hintRec{gap: gap, hasGap: hasGap, sync: sync}
		p, listed := t.pl.find(hint)
		if !listed {
			t.unlisted[hint] = h
			return
		}
		// The playlist that lists it came first: it was seen no later
		// than this answer began.
		for i := range t.pending {
			if o := &t.pending[i]; o.pos == p.pos && headers.Before(o.seen) {
				o.seen = headers
			}
		}
		t.listedHint(p, h)
		return
	}
	if hasGap {
		t.m.stall(gap - p.duration)
	}
	if p.independent && sync == syncNo {
		t.m.count(func(c *tally) { c.NotSync++ })
	}
	if t.firstDecodable {
		return
	}
	j := joinSample{firstPart: at.Sub(t.joinStart), startLatency: -1, waited: t.waited}
	if t.firstPart {
		j.firstPart = -1 // recorded already
	}
	t.firstPart = true
	if p.independent && sync != syncNo && initOK {
		t.firstDecodable = true
		j.decodable = true
		j.firstDecodable = at.Sub(t.joinStart)
		if start, _ := t.pl.startTime(p.msn); !start.IsZero() {
			j.startLatency = at.Sub(start.Add(p.offset))
		}
	}
	if j.firstPart >= 0 || j.decodable {
		t.m.joined(j)
	}
}
