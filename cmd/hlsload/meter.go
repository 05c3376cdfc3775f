package main

import (
	"math"
	"slices"
	"sync"
	"time"
)

// tally counts one viewer's requests and the problems it saw.
type tally struct {
	// Requests by kind: plain playlist loads, blocking reloads (with
	// _HLS_msn/_HLS_part), parts from the playlist, preload hints, init
	// sections, HTTP-FLV streams.
	Playlists uint64
	Blocking  uint64
	Parts     uint64
	Hints     uint64
	Inits     uint64
	FLV       uint64
	Bytes     uint64
	// Dials is how many connections the viewer opened.
	Dials uint64
	// UnansweredRetries: requests sent again after a new connection was
	// closed with no answer (-retry-unanswered).
	UnansweredRetries uint64

	// PartsReceived counts parts received, by playlist or by hint;
	// FramesReceived the video tags of an HTTP-FLV viewer.
	PartsReceived  uint64
	FramesReceived uint64
	// PartsMissing: a listed part that could not be fetched (404, or
	// failed three times). Skips: a part the viewer received next was not
	// the one after the previous (a part or segment missing from the
	// playlists). MSNBackwards: a playlist whose newest part or media
	// sequence was older than one seen before. Unsatisfied: a blocking
	// reload answered with a playlist without the part it asked for.
	// HintsFailed: a preload-hint request that did not return the part.
	// NotSync: a part marked INDEPENDENT=YES whose first video sample is
	// not a sync sample.
	PartsMissing uint64
	// Resyncs: the viewer fell so far behind that the parts it was to
	// fetch next were no longer listed, and started again from the live
	// edge; PartsDropped counts the parts it gave up.
	Resyncs      uint64
	PartsDropped uint64
	Skips        uint64
	MSNBackwards uint64
	Unsatisfied  uint64
	HintsFailed  uint64
	NotSync      uint64

	// Errors counts failed requests by kind: "<request>_<what>", where
	// request is playlist, part, hint, init or flv and what an HTTP status
	// (http_503) or a connection failure (refused, reset, eof, timeout,
	// conn) or an undecodable answer (parse).
	Errors map[string]uint64
}

func (t *tally) add(o *tally) {
	t.Playlists += o.Playlists
	t.Blocking += o.Blocking
	t.Parts += o.Parts
	t.Hints += o.Hints
	t.Inits += o.Inits
	t.FLV += o.FLV
	t.Bytes += o.Bytes
	t.Dials += o.Dials
	t.UnansweredRetries += o.UnansweredRetries
	t.PartsReceived += o.PartsReceived
	t.FramesReceived += o.FramesReceived
	t.PartsMissing += o.PartsMissing
	t.Resyncs += o.Resyncs
	t.PartsDropped += o.PartsDropped
	t.Skips += o.Skips
	t.MSNBackwards += o.MSNBackwards
	t.Unsatisfied += o.Unsatisfied
	t.HintsFailed += o.HintsFailed
	t.NotSync += o.NotSync
	for k, n := range o.Errors {
		t.addError(k, n)
	}
}

func (t *tally) addError(kind string, n uint64) {
	if t.Errors == nil {
		t.Errors = make(map[string]uint64)
	}
	t.Errors[kind] += n
}

func (t *tally) errorsTotal() uint64 {
	var n uint64
	for _, c := range t.Errors {
		n += c
	}
	return n
}

// joinSample is one viewer's start.
type joinSample struct {
	// FirstPart: from the viewer's first request to its first part (or
	// HTTP-FLV video tag) received. FirstDecodable: to the first part that
	// a decoder can start at (INDEPENDENT=YES, a sync sample first, the
	// init section in hand), or the first keyframe tag after the sequence
	// headers. StartLatency: how far behind the live edge that frame was
	// when it arrived (LL-HLS only; -1 otherwise).
	firstPart, firstDecodable, startLatency time.Duration
	decodable                               bool
	// waited: no listed part was independent when the viewer joined, so it
	// waited for the next keyframe.
	waited bool
}

// window is what viewers measured over some time: the current interval
// of one viewer, or the sum over viewers and intervals.
type window struct {
	tally
	// Durations in microseconds.
	delays, gaps, stalls []int32
	joins                []joinSample
}

func us(d time.Duration) int32 {
	v := d.Microseconds()
	return int32(min(max(v, math.MinInt32), math.MaxInt32))
}

func (w *window) merge(o *window) {
	w.tally.add(&o.tally)
	w.delays = append(w.delays, o.delays...)
	w.gaps = append(w.gaps, o.gaps...)
	w.stalls = append(w.stalls, o.stalls...)
	w.joins = append(w.joins, o.joins...)
}

// life is one viewer over the whole run, for the viewer list.
type life struct {
	state     string
	err       string
	parts     uint64
	errors    uint64
	gapMax    time.Duration
	delayMax  time.Duration
	hasDelay  bool
	join      joinSample
	joined    bool
	requests  uint64
	skips     uint64
	backwards uint64
	// afterTrigger: from the join trigger to the viewer's start.
	afterTrigger time.Duration
}

// meter is where one viewer's goroutines record what they measure; the
// reporter takes the interval's figures from it. Everything goes through
// its mutex, which only the reporter ever contends for.
type meter struct {
	mu   sync.Mutex
	cur  window
	life life
}

func (m *meter) count(f func(t *tally)) {
	m.mu.Lock()
	f(&m.cur.tally)
	m.mu.Unlock()
}

func (m *meter) countError(kind string) {
	m.mu.Lock()
	m.cur.addError(kind, 1)
	m.life.errors++
	m.mu.Unlock()
}

func (m *meter) delay(d time.Duration) {
	m.mu.Lock()
	m.cur.delays = append(m.cur.delays, us(d))
	if !m.life.hasDelay || d > m.life.delayMax {
		m.life.delayMax, m.life.hasDelay = d, true
	}
	m.mu.Unlock()
}

func (m *meter) gap(d time.Duration) {
	m.mu.Lock()
	m.cur.gaps = append(m.cur.gaps, us(d))
	m.life.gapMax = max(m.life.gapMax, d)
	m.mu.Unlock()
}

func (m *meter) stall(d time.Duration) {
	m.mu.Lock()
	m.cur.stalls = append(m.cur.stalls, us(d))
	m.mu.Unlock()
}

// joined records a viewer's first part (firstPart ≥ 0) or first decodable
// part (decodable), or both.
func (m *meter) joined(j joinSample) {
	m.mu.Lock()
	m.cur.joins = append(m.cur.joins, j)
	l := &m.life.join
	if !m.life.joined {
		*l = joinSample{firstPart: -1, firstDecodable: -1, startLatency: -1}
		m.life.joined = true
	}
	if j.firstPart >= 0 {
		l.firstPart, l.waited = j.firstPart, j.waited
	}
	if j.decodable {
		l.decodable, l.firstDecodable, l.startLatency = true, j.firstDecodable, j.startLatency
	}
	m.mu.Unlock()
}

// take returns the interval's figures and starts a new interval.
func (m *meter) take() window {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.cur
	m.cur = window{}
	m.life.parts += w.PartsReceived + w.FramesReceived
	m.life.requests += w.Playlists + w.Blocking + w.Parts + w.Hints + w.Inits + w.FLV
	m.life.skips += w.Skips
	m.life.backwards += w.MSNBackwards
	return w
}

func (m *meter) setState(state string, err error) {
	m.mu.Lock()
	m.life.state = state
	if err != nil {
		m.life.err = err.Error()
	}
	m.mu.Unlock()
}

// Dist summarises a distribution in milliseconds; every figure is -1 when
// Count is 0. Percentiles are nearest-rank.
type Dist struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Min   float64 `json:"min"`
}

func distUS(v []int32) Dist {
	if len(v) == 0 {
		return Dist{P50: -1, P99: -1, Max: -1, Min: -1}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	ms := func(x int32) float64 { return math.Round(float64(x)/100) / 10 }
	return Dist{
		Count: len(s),
		P50:   ms(s[rank(len(s), 50)]),
		P99:   ms(s[rank(len(s), 99)]),
		Max:   ms(s[len(s)-1]),
		Min:   ms(s[0]),
	}
}

func distDur(v []time.Duration) Dist {
	s := make([]int32, len(v))
	for i, d := range v {
		s[i] = us(d)
	}
	return distUS(s)
}

// rank is the index of the p-th percentile (nearest rank) among n sorted
// values.
func rank(n int, p float64) int {
	i := int(math.Ceil(p/100*float64(n))) - 1
	return min(max(i, 0), n-1)
}
