package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// runConfig is a parsed command line.
type runConfig struct {
	base      *url.URL // http://host:port/APP; keys are appended
	keyPrefix string
	first, n  int // streams PREFIX-first .. PREFIX-(first+n-1)
	viewers   int // per stream
	flv       bool

	duration time.Duration
	ramp     time.Duration
	timeout  time.Duration // per request
	// joinAfter and joinWithin: each viewer starts at a random moment in
	// [joinAfter, joinAfter+joinWithin) from the start (or from the
	// trigger). Both zero: viewers start spread over ramp.
	joinAfter, joinWithin time.Duration
	trigger               *joinTrigger
	leaveAfterJoin        bool
	// retryUnanswered: a request on a new connection that the server
	// closes before any byte of an answer is sent again once, as a
	// browser's player would, and counted apart.
	retryUnanswered bool
	verbose         bool
	cpuProfile      string
	// logErrors, if set, is how many more failed requests to log.
	logErrors *atomic.Int64
	logf      func(format string, args ...any)
}

// runner holds a run's viewers' meters and reports on them.
type runner struct {
	cfg   *runConfig
	log   io.Writer
	logMu sync.Mutex
	start time.Time
	cpu0  time.Duration

	keys   []string
	meters []*meter

	mu      sync.Mutex // guards the fields below: reports come from two goroutines
	all     window     // every interval so far
	seq     int
	lastAt  time.Time
	lastCPU time.Duration
}

func newRunner(cfg *runConfig, log io.Writer) *runner {
	r := &runner{cfg: cfg, log: log}
	cfg.logf = r.logf
	for i := range cfg.n {
		key := fmt.Sprintf("%s-%d", cfg.keyPrefix, cfg.first+i)
		for range cfg.viewers {
			m := &meter{}
			m.life.state = stateSkipped
			r.keys = append(r.keys, key)
			r.meters = append(r.meters, m)
		}
	}
	return r
}

// Viewer outcomes.
const (
	stateOK      = "ok"
	stateRunning = "running" // interval reports only
	stateFailed  = "failed"  // never received a part
	stateSkipped = "skipped" // the run ended before its turn
)

func (r *runner) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.log, "hlsload: "+format+"\n", args...)
}

// run starts every viewer at its moment and returns once all have ended:
// at the end of -duration or when ctx is cancelled.
func (r *runner) run(ctx context.Context) {
	r.start = time.Now()
	r.lastAt = r.start
	r.cpu0 = cpuTime()
	r.lastCPU = r.cpu0
	stop, cancel := context.WithTimeout(ctx, r.cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	for k := range r.meters {
		wg.Go(func() { r.runViewer(stop, k) })
	}
	wg.Wait()
}

func (r *runner) runViewer(stop context.Context, k int) {
	if !r.wait(stop, k) {
		return
	}
	m := r.meters[k]
	m.setState(stateRunning, nil)
	var err error
	if r.cfg.flv {
		err = newFLVViewer(r.cfg, r.keys[k], m, stop).run()
	} else {
		err = newHLSViewer(r.cfg, r.keys[k], m, stop).run()
	}
	if err != nil {
		m.setState(stateFailed, err)
		if r.cfg.verbose {
			r.logf("viewer %d of %s: %v", k%r.cfg.viewers, r.keys[k], err)
		}
		return
	}
	m.setState(stateOK, nil)
}

// wait sleeps until viewer k's moment; false if the run stopped first.
// Without a trigger the moment is its place in the ramp plus -join-after
// plus a random part of -join-within: with one viewer per stream and the
// same -ramp as rtmpload's, viewer k joins its publisher's stream that
// long after the publisher started. With a trigger it counts from the
// trigger, without the ramp.
func (r *runner) wait(stop context.Context, k int) bool {
	from := r.start
	var d time.Duration
	if t := r.cfg.trigger; t != nil {
		select {
		case <-t.fired:
			from = t.at
		case <-stop.Done():
			return false
		}
	} else if r.cfg.ramp > 0 {
		d = time.Duration(int64(r.cfg.ramp) * int64(k) / int64(len(r.meters)))
	}
	d += r.cfg.joinAfter
	if r.cfg.joinWithin > 0 {
		d += rand.N(r.cfg.joinWithin)
	}
	t := time.NewTimer(time.Until(from.Add(d)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop.Done():
		return false
	}
	if stop.Err() != nil {
		return false
	}
	if tr := r.cfg.trigger; tr != nil {
		m := r.meters[k]
		m.mu.Lock()
		m.life.afterTrigger = time.Since(tr.at)
		m.mu.Unlock()
	}
	return true
}

// Report is what the viewers measured over an interval (kind "interval":
// since the previous report) or over the whole run (kind "final").
type Report struct {
	Kind             string  `json:"kind"`
	Seq              int     `json:"seq"`
	Mode             string  `json:"mode"` // ll-hls or http-flv
	URL              string  `json:"url"`
	Streams          int     `json:"streams"`
	FirstStream      int     `json:"first_stream"`
	ViewersPerStream int     `json:"viewers_per_stream"`
	From             string  `json:"from"` // wall clock, RFC 3339
	To               string  `json:"to"`
	ElapsedS         float64 `json:"elapsed_s"`  // since the start of the run
	IntervalS        float64 `json:"interval_s"` // what this report covers

	Viewers     ViewerTotals  `json:"viewers"`
	Requests    RequestTotals `json:"requests"`
	Connections uint64        `json:"connections"`
	// UnansweredRetries: requests on a new connection closed with no
	// answer, sent again (-retry-unanswered).
	UnansweredRetries uint64            `json:"unanswered_retries"`
	BytesRecv         uint64            `json:"bytes_received"`
	ErrorsTotal       uint64            `json:"errors_total"`
	Errors            map[string]uint64 `json:"errors"`

	PartsReceived      uint64 `json:"parts_received"`
	FramesReceived     uint64 `json:"frames_received,omitempty"`
	PartsMissing       uint64 `json:"parts_missing"`
	Resyncs            uint64 `json:"resyncs"`
	PartsDropped       uint64 `json:"parts_dropped"`
	Skips              uint64 `json:"skips"`
	MSNBackwards       uint64 `json:"msn_backwards"`
	ReloadsUnsatisfied uint64 `json:"reloads_unsatisfied"`
	HintsFailed        uint64 `json:"hints_failed"`
	IndependentNotSync uint64 `json:"independent_not_sync"`

	// PartDelayMs: a part's availability delay beyond its duration
	// (tracker.go). GapMs: between two successive parts (video tags for
	// HTTP-FLV) received by a viewer; StallMs: a gap minus the media
	// duration it should have taken.
	PartDelayMs Dist `json:"part_delay_ms"`
	GapMs       Dist `json:"gap_ms"`
	StallMs     Dist `json:"stall_ms"`

	Join JoinTotals `json:"join"`

	GeneratorCPUS float64        `json:"generator_cpu_s"`
	ViewerList    []ViewerReport `json:"viewer_list,omitempty"`
}

// ViewerTotals counts viewers by outcome (final report) and what the
// interval saw of their starts.
type ViewerTotals struct {
	Count   int `json:"count"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	Running int `json:"running"`
}

// RequestTotals counts requests by kind.
type RequestTotals struct {
	Playlist int `json:"playlist"`
	Blocking int `json:"blocking"`
	Part     int `json:"part"`
	Hint     int `json:"hint"`
	Init     int `json:"init"`
	FLV      int `json:"flv"`
}

// JoinTotals: the viewers that started in the report's span. FirstPartMs
// is from a viewer's first request to its first part (HTTP-FLV: video
// tag); FirstDecodableMs to the first it could decode (an INDEPENDENT part
// with a sync sample first and the init section in hand; HTTP-FLV: the
// first keyframe after the sequence header): the "instant start" figure.
// StartLatencyMs is how far behind the live edge that part's first frame
// was when it arrived. Waited counts the viewers that found no
// independent part listed and waited for one.
type JoinTotals struct {
	Joined           int  `json:"joined"`
	Decodable        int  `json:"decodable"`
	Waited           int  `json:"waited"`
	FirstPartMs      Dist `json:"first_part_ms"`
	FirstDecodableMs Dist `json:"first_decodable_ms"`
	StartLatencyMs   Dist `json:"start_latency_ms"`
}

// ViewerReport is one viewer over the whole run.
type ViewerReport struct {
	Key              string  `json:"key"`
	Viewer           int     `json:"viewer"`
	State            string  `json:"state"`
	Error            string  `json:"error,omitempty"`
	Requests         uint64  `json:"requests"`
	Parts            uint64  `json:"parts"`
	Errors           uint64  `json:"errors"`
	Skips            uint64  `json:"skips"`
	MSNBackwards     uint64  `json:"msn_backwards"`
	FirstPartMs      float64 `json:"first_part_ms"`
	FirstDecodableMs float64 `json:"first_decodable_ms"`
	StartLatencyMs   float64 `json:"start_latency_ms"`
	GapMaxMs         float64 `json:"gap_max_ms"`
	DelayMaxMs       float64 `json:"delay_max_ms"`
	// StartAfterTriggerMs: from the join trigger to the viewer's first
	// request, -1 without a trigger (-join-on-signal).
	StartAfterTriggerMs float64 `json:"start_after_trigger_ms"`
}

func msf(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return float64(d.Microseconds()/100) / 10
}

// report takes every viewer's interval figures and reports them (final:
// the whole run, with the viewer list).
func (r *runner) report(final bool) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	cpu := cpuTime()
	var w window
	for _, m := range r.meters {
		mw := m.take()
		w.merge(&mw)
	}
	r.all.merge(&w)
	rep := &Report{
		Kind:             "interval",
		Seq:              r.seq,
		Mode:             "ll-hls",
		URL:              r.cfg.base.String(),
		Streams:          r.cfg.n,
		FirstStream:      r.cfg.first,
		ViewersPerStream: r.cfg.viewers,
		From:             r.lastAt.Format(time.RFC3339Nano),
		To:               now.Format(time.RFC3339Nano),
		ElapsedS:         now.Sub(r.start).Seconds(),
		IntervalS:        now.Sub(r.lastAt).Seconds(),
		GeneratorCPUS:    (cpu - r.lastCPU).Seconds(),
	}
	if r.cfg.flv {
		rep.Mode = "http-flv"
	}
	if final {
		w = r.all
		rep.Kind = "final"
		rep.From = r.start.Format(time.RFC3339Nano)
		rep.IntervalS = rep.ElapsedS
		rep.GeneratorCPUS = (cpu - r.cpu0).Seconds()
	}
	r.seq++
	r.lastAt, r.lastCPU = now, cpu
	rep.fill(&w)
	for k, m := range r.meters {
		m.mu.Lock()
		l := m.life
		m.mu.Unlock()
		rep.Viewers.Count++
		switch l.state {
		case stateOK:
			rep.Viewers.OK++
		case stateFailed:
			rep.Viewers.Failed++
		case stateSkipped:
			rep.Viewers.Skipped++
		case stateRunning:
			rep.Viewers.Running++
		}
		if final {
			rep.ViewerList = append(rep.ViewerList, viewerReport(r.keys[k], k%r.cfg.viewers, &l))
		}
	}
	return rep
}

func viewerReport(key string, i int, l *life) ViewerReport {
	v := ViewerReport{
		Key: key, Viewer: i, State: l.state, Error: l.err,
		Requests: l.requests, Parts: l.parts, Errors: l.errors, Skips: l.skips, MSNBackwards: l.backwards,
		FirstPartMs: -1, FirstDecodableMs: -1, StartLatencyMs: -1,
		GapMaxMs: msf(l.gapMax), DelayMaxMs: -1, StartAfterTriggerMs: -1,
	}
	if l.afterTrigger > 0 {
		v.StartAfterTriggerMs = msf(l.afterTrigger)
	}
	if l.hasDelay {
		v.DelayMaxMs = float64(l.delayMax.Microseconds()/100) / 10
	}
	if l.joined {
		v.FirstPartMs = msf(l.join.firstPart)
		if l.join.decodable {
			v.FirstDecodableMs = msf(l.join.firstDecodable)
			v.StartLatencyMs = msf(l.join.startLatency)
		}
	}
	return v
}

func (rep *Report) fill(w *window) {
	t := &w.tally
	rep.Requests = RequestTotals{
		Playlist: int(t.Playlists), Blocking: int(t.Blocking), Part: int(t.Parts),
		Hint: int(t.Hints), Init: int(t.Inits), FLV: int(t.FLV),
	}
	rep.Connections = t.Dials
	rep.UnansweredRetries = t.UnansweredRetries
	rep.BytesRecv = t.Bytes
	rep.Errors = t.Errors
	if rep.Errors == nil {
		rep.Errors = map[string]uint64{}
	}
	rep.ErrorsTotal = t.errorsTotal()
	rep.PartsReceived = t.PartsReceived
	rep.FramesReceived = t.FramesReceived
	rep.PartsMissing = t.PartsMissing
	rep.Resyncs = t.Resyncs
	rep.PartsDropped = t.PartsDropped
	rep.Skips = t.Skips
	rep.MSNBackwards = t.MSNBackwards
	rep.ReloadsUnsatisfied = t.Unsatisfied
	rep.HintsFailed = t.HintsFailed
	rep.IndependentNotSync = t.NotSync
	rep.PartDelayMs = distUS(w.delays)
	rep.GapMs = distUS(w.gaps)
	rep.StallMs = distUS(w.stalls)

	var first, dec, lat []time.Duration
	for _, j := range w.joins {
		if j.firstPart >= 0 {
			rep.Join.Joined++
			first = append(first, j.firstPart)
			if j.waited {
				rep.Join.Waited++
			}
		}
		if j.decodable {
			rep.Join.Decodable++
			dec = append(dec, j.firstDecodable)
			if j.startLatency >= 0 {
				lat = append(lat, j.startLatency)
			}
		}
	}
	rep.Join.FirstPartMs = distDur(first)
	rep.Join.FirstDecodableMs = distDur(dec)
	rep.Join.StartLatencyMs = distDur(lat)
}

// failures lists the viewers that never received anything.
func (rep *Report) failures() []string {
	var out []string
	for _, v := range rep.ViewerList {
		if v.State == stateFailed {
			out = append(out, fmt.Sprintf("viewer %d of %s: %s", v.Viewer, v.Key, v.Error))
		}
	}
	return slices.Clip(out)
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
