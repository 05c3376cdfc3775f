package main

import (
	"slices"
	"testing"
	"time"
)

// seg describes a segment for mkView: n parts of 200 ms, independent
// first; a zero pdt makes it the open segment (last).
type seg struct {
	n   int
	pdt time.Time
}

const partDur = 200 * time.Millisecond

func mkView(first uint64, segs ...seg) *view {
	v := &view{mediaSequence: first, partHoldBack: 0, canBlock: true, partTarget: partDur, initURI: "init1.mp4"}
	for i, sg := range segs {
		s := segRef{msn: first + uint64(i), closed: !sg.pdt.IsZero(), pdt: sg.pdt, parts: sg.n}
		for k := range sg.n {
			p := pos{s.msn, k}
			v.parts = append(v.parts, partRef{pos: p, uri: "s" + p.String() + ".m4s", duration: partDur, independent: k == 0, offset: time.Duration(k) * partDur})
			s.duration += partDur
		}
		v.segments = append(v.segments, s)
	}
	e := v.edge()
	v.hint = "s" + e.String() + ".m4s"
	return v
}

// at is a moment on the test's time line, in ms after t2026.
func at(ms float64) time.Time { return t2026.Add(time.Duration(ms * float64(time.Millisecond))) }

// ms converts the meter's microseconds.
func msList(v []int32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x) / 1000
	}
	return out
}

// step is one event fed to a tracker.
type step struct {
	playlist *view
	blocking bool
	// or a part received: hint names it when it came as the preload hint.
	part    *pos
	hint    string
	headers float64
	at      float64
}

func run(t *testing.T, steps []step) (*tracker, window) {
	t.Helper()
	m := &meter{}
	tr := newTracker(m)
	tr.joinStart = at(0)
	for _, s := range steps {
		if s.playlist != nil {
			tr.onPlaylist(s.playlist, at(s.at), s.blocking)
			continue
		}
		if s.hint != "" {
			tr.received(partRef{}, s.hint, at(s.headers), at(s.at), syncYes, true)
			continue
		}
		p, ok := tr.pl.find("s" + s.part.String() + ".m4s")
		if !ok {
			t.Fatalf("part %v not in the playlist", s.part)
		}
		tr.received(p, "", at(s.headers), at(s.at), syncYes, true)
	}
	tr.flush()
	return tr, m.take()
}

func TestPartDelay(t *testing.T) {
	// Segment 0 starts at 0 ms; segment 1 at 1002 ms (its keyframe
	// entered 2 ms late). Part 1.2 ends nominally at 1002+400+200 = 1602.
	pdt0, pdt1 := at(0), at(1002)
	before := mkView(0, seg{5, pdt0}, seg{2, time.Time{}})
	with12 := mkView(0, seg{5, pdt0}, seg{3, time.Time{}})
	closed := mkView(0, seg{5, pdt0}, seg{3, pdt1}, seg{1, time.Time{}})
	tests := []struct {
		name  string
		steps []step
		want  []float64
	}{
		{
			name: "blocking reload lists it; PDT comes when its segment closes",
			steps: []step{
				{playlist: before, at: 1500},
				{playlist: with12, blocking: true, at: 1605},
				// 2.0 starts at 1002+600 = 1602, ends 1802; seen at 1810.
				{playlist: closed, blocking: true, at: 1810},
			},
			// 2.0 never gets its PDT: estimated from 1's PDT + EXTINF.
			want: []float64{3, 8},
		},
		{
			name: "the preload hint answered before the playlist",
			steps: []step{
				{playlist: before, at: 1500},
				{part: &pos{1, 0}, at: 1501}, {part: &pos{1, 1}, at: 1502},
				{hint: "s1.2.m4s", headers: 1601, at: 1603},
				{playlist: with12, blocking: true, at: 1605},
				{playlist: closed, blocking: true, at: 1810},
			},
			want: []float64{-1, 8},
		},
		{
			name: "the playlist before the hint's answer",
			steps: []step{
				{playlist: before, at: 1500},
				{playlist: with12, blocking: true, at: 1605},
				{hint: "s1.2.m4s", headers: 1601.5, at: 1606},
				{playlist: closed, blocking: true, at: 1810},
			},
			want: []float64{-0.5, 8},
		},
		{
			name: "parts in a plain reload did not appear then",
			steps: []step{
				{playlist: before, at: 1500},
				{playlist: with12, at: 1605},
				{playlist: closed, at: 1810},
			},
		},
		{
			name:  "nothing new in the first playlist",
			steps: []step{{playlist: closed, blocking: true, at: 1810}},
		},
	}
	for _, tt := range tests {
		_, w := run(t, tt.steps)
		got := msList(w.delays)
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: delays %v ms, want %v", tt.name, got, tt.want)
		}
	}
}

func TestGapsAndJoin(t *testing.T) {
	pl := mkView(0, seg{5, at(0)}, seg{2, time.Time{}})
	_, w := run(t, []step{
		{playlist: pl, at: 1400},
		// holdBack 0: the viewer starts at the last keyframe, 1.0.
		{part: &pos{1, 0}, headers: 1440, at: 1450},
		{part: &pos{1, 1}, at: 1460},
		{hint: "s1.2.m4s", headers: 1600, at: 1700},
		{playlist: mkView(0, seg{5, at(0)}, seg{3, time.Time{}}), blocking: true, at: 1650},
	})
	if got := msList(w.gaps); !slices.Equal(got, []float64{10, 240}) {
		t.Errorf("gaps %v, want [10 240]", got)
	}
	// Stalls: each gap minus the 200 ms of the part that ended it; the
	// hinted part's once a playlist lists it.
	if got := msList(w.stalls); !slices.Equal(got, []float64{-190, 40}) {
		t.Errorf("stalls %v, want [-190 40]", got)
	}
	if len(w.joins) != 1 {
		t.Fatalf("joins %+v", w.joins)
	}
	j := w.joins[0]
	// Segment 1 starts at 0 + 1000 (estimated: open); 1.0 arrived at 1450.
	if !j.decodable || j.firstPart != 1450*time.Millisecond || j.firstDecodable != 1450*time.Millisecond || j.startLatency != 450*time.Millisecond || j.waited {
		t.Errorf("join %+v", j)
	}
	if w.PartsReceived != 3 {
		t.Errorf("%d parts received, want 3", w.PartsReceived)
	}
}

func TestJoinWaitsForIndependentPart(t *testing.T) {
	m := &meter{}
	tr := newTracker(m)
	tr.joinStart = at(0)
	v := mkView(0, seg{0, at(0)}, seg{2, time.Time{}})
	for i := range v.parts {
		v.parts[i].independent = false
	}
	tr.onPlaylist(v, at(10), false)
	if _, ok := tr.next(); ok || tr.started {
		t.Fatal("started without an independent part")
	}
	tr.onPlaylist(mkView(0, seg{0, at(0)}, seg{2, at(1000)}, seg{1, time.Time{}}), at(1100), true)
	p, ok := tr.next()
	if !ok || p.pos != (pos{2, 0}) {
		t.Fatalf("first part %v %v, want 2.0", p.pos, ok)
	}
	tr.received(p, "", at(1190), at(1200), syncYes, true)
	w := m.take()
	if len(w.joins) != 1 || !w.joins[0].waited || w.joins[0].firstDecodable != 1200*time.Millisecond {
		t.Errorf("joins %+v", w.joins)
	}
}

func TestRegressionsAndSkips(t *testing.T) {
	open := time.Time{}
	tests := []struct {
		name      string
		views     []*view
		backwards uint64
		skips     uint64
		queued    []pos
	}{
		{
			name: "parts in order across a segment boundary",
			views: []*view{
				mkView(0, seg{5, at(0)}, seg{4, open}),
				mkView(0, seg{5, at(0)}, seg{5, open}),
				mkView(0, seg{5, at(0)}, seg{5, at(1000)}, seg{1, open}),
			},
			queued: []pos{{1, 0}, {1, 1}, {1, 2}, {1, 3}, {1, 4}, {2, 0}},
		},
		{
			name: "segment closed early: its last part is the one before",
			views: []*view{
				mkView(0, seg{5, at(0)}, seg{3, open}),
				mkView(0, seg{5, at(0)}, seg{3, at(1000)}, seg{1, open}),
			},
			queued: []pos{{1, 0}, {1, 1}, {1, 2}, {2, 0}},
		},
		{
			name: "a segment missing",
			views: []*view{
				mkView(0, seg{5, at(0)}, seg{2, open}),
				mkView(3, seg{5, at(0)}, seg{2, at(1000)}, seg{1, open}),
			},
			// 1.0 1.1, then 3.0: segment 2 never listed.
			skips:  1,
			queued: []pos{{1, 0}, {1, 1}, {3, 0}, {3, 1}, {3, 2}, {3, 3}, {3, 4}, {4, 0}, {4, 1}, {5, 0}},
		},
		{
			name: "the stream renumbered from 0",
			views: []*view{
				mkView(5, seg{5, at(0)}, seg{2, open}),
				mkView(0, seg{2, open}),
			},
			backwards: 1,
			queued:    []pos{{6, 0}, {6, 1}},
		},
		{
			name: "media sequence went back with newer parts",
			views: []*view{
				mkView(5, seg{5, at(0)}, seg{2, open}),
				mkView(4, seg{5, at(0)}, seg{5, at(1000)}, seg{3, open}),
			},
			backwards: 1,
			queued:    []pos{{6, 0}, {6, 1}, {6, 2}},
		},
	}
	for _, tt := range tests {
		m := &meter{}
		tr := newTracker(m)
		var got []pos
		for i, v := range tt.views {
			tr.onPlaylist(v, at(float64(1000*i)), i > 0)
			for {
				p, ok := tr.next()
				if !ok {
					break
				}
				got = append(got, p.pos)
			}
		}
		w := m.take()
		if w.MSNBackwards != tt.backwards || w.Skips != tt.skips {
			t.Errorf("%s: %d backwards, %d skips; want %d, %d", tt.name, w.MSNBackwards, w.Skips, tt.backwards, tt.skips)
		}
		if !slices.Equal(got, tt.queued) {
			t.Errorf("%s: fetched %v, want %v", tt.name, got, tt.queued)
		}
	}
}

func TestHintNotFetchedTwice(t *testing.T) {
	m := &meter{}
	tr := newTracker(m)
	tr.onPlaylist(mkView(0, seg{5, at(0)}, seg{1, time.Time{}}), at(0), false)
	p, _ := tr.next()
	tr.received(p, "", at(1), at(2), syncYes, true)
	h, ok := tr.hint()
	if !ok || h != "s1.1.m4s" {
		t.Fatalf("hint %q %v", h, ok)
	}
	if _, again := tr.hint(); again {
		t.Error("the same hint asked for twice")
	}
	// Listed while the hint request is out: queued, then skipped once
	// the hint brought it.
	tr.onPlaylist(mkView(0, seg{5, at(0)}, seg{2, time.Time{}}), at(3), true)
	tr.received(partRef{}, h, at(3), at(4), syncNo, true)
	if p, ok := tr.next(); ok {
		t.Errorf("fetching %v again", p.pos)
	}
	if w := m.take(); w.NotSync != 0 || w.PartsReceived != 2 {
		t.Errorf("not sync %d, received %d", w.NotSync, w.PartsReceived)
	}
}

func TestNotSync(t *testing.T) {
	m := &meter{}
	tr := newTracker(m)
	tr.onPlaylist(mkView(0, seg{5, at(0)}, seg{1, time.Time{}}), at(0), false)
	p, _ := tr.next()
	tr.received(p, "", at(1), at(2), syncNo, true)
	w := m.take()
	if w.NotSync != 1 || len(w.joins) != 1 || w.joins[0].decodable {
		t.Errorf("not sync %d, joins %+v", w.NotSync, w.joins)
	}
}

func TestResyncWhenBehind(t *testing.T) {
	m := &meter{}
	tr := newTracker(m)
	tr.onPlaylist(mkView(0, seg{5, at(0)}, seg{2, time.Time{}}), at(1400), false)
	// 1.0 and 1.1 queued; the viewer fetches nothing for 4 s.
	tr.onPlaylist(mkView(3, seg{5, at(3000)}, seg{5, at(4000)}, seg{2, time.Time{}}), at(5400), true)
	var got []pos
	for {
		p, ok := tr.next()
		if !ok {
			break
		}
		got = append(got, p.pos)
	}
	w := m.take()
	if w.Resyncs != 1 || w.PartsDropped != 2 || w.Skips != 0 {
		t.Errorf("%d resyncs dropping %d, %d skips; want 1, 2, 0", w.Resyncs, w.PartsDropped, w.Skips)
	}
	if !slices.Equal(got, []pos{{5, 0}, {5, 1}}) {
		t.Errorf("fetching %v after the resync, want the last keyframe on: [5.0 5.1]", got)
	}
}
