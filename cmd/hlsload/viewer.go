package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// An LL-HLS viewer behaves like hls.js in low-latency mode. It loads the
// playlist, starts at an independent part PART-HOLD-BACK behind the live
// edge (view.startPart), fetches the init section and the parts from
// there on, one after the other, and keeps one blocking playlist reload
// outstanding for the part after the newest it knows
// (_HLS_msn/_HLS_part). Once it has fetched every listed part it asks
// for the preload hint, which the server holds until the part exists. So
// it has at most two requests in flight, a playlist and a part, on a
// keep-alive connection each.

// reqKind is what a request fetches.
type reqKind uint8

const (
	kPlaylist reqKind = iota // without delivery directives
	kBlocking                // with _HLS_msn and _HLS_part
	kPart
	kHint
	kInit
)

var kindNames = [...]string{"playlist", "playlist", "part", "hint", "init"}

func (k reqKind) String() string { return kindNames[k] }

// result is one finished request, sent back to the viewer's goroutine.
type result struct {
	kind    reqKind
	url     *url.URL
	uri     string  // part, hint, init: as listed
	part    partRef // kPart
	target  pos     // kBlocking
	status  int
	body    []byte        // playlists and init sections
	buf     *bytes.Buffer // holds a playlist's body: back to plBufs once parsed
	n       int64         // body bytes
	sync    syncState
	start   time.Time // the request was issued
	headers time.Time // the response headers arrived
	done    time.Time // the body was read
	err     error
}

// Limits on what a viewer reads: the server is under test, not trusted.
const (
	maxPlaylistBytes = 1 << 20
	maxPartBytes     = 64 << 20
	maxPartAttempts  = 3
)

// Backoff after failed requests: doubling from backoffMin, up to backoffMax.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 2 * time.Second
)

func backoff(fails int) time.Duration {
	d := backoffMin
	for i := 1; i < fails && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

var (
	partBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	plBufs   = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 16<<10)) }}
)

// hlsViewer is one LL-HLS viewer. Its fields belong to its run goroutine;
// requests run on goroutines of their own and report on results.
type hlsViewer struct {
	cfg   *runConfig
	m     *meter
	t     *tracker
	plURL *url.URL
	stop  context.Context
	// Playlist requests and part requests each take their own keep-alive
	// connection, as a browser's two requests in flight would.
	plLane, partLane *lane
	// leave: stop at the first decodable part.
	leave bool

	results  chan result
	plBusy   bool
	partBusy bool
	plAt     time.Time // the next playlist request waits until then
	partAt   time.Time
	plFails  int
	initFail int
	unsat    int
	// needPlain: the next playlist request goes without directives (the
	// first, and after a 400 or a failure).
	needPlain bool
	attempts  map[string]int // failed attempts of parts to retry

	initURI string // the init section held
	vt      videoTrack
	hasVT   bool

	ended   bool // ENDLIST
	lastErr error
}

// newHTTPClient is a viewer's client: its own pool of at most two
// keep-alive connections, each dial counted.
func newHTTPClient(m *meter) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			m.count(func(t *tally) { t.Dials++ })
			return d.DialContext(ctx, network, addr)
		},
		MaxConnsPerHost:     2,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		ReadBufferSize:      16 << 10,
	}}
}

func newHLSViewer(cfg *runConfig, key string, m *meter, stop context.Context) *hlsViewer {
	return &hlsViewer{
		cfg:       cfg,
		m:         m,
		t:         newTracker(m),
		plURL:     cfg.base.JoinPath(key, "index.m3u8"),
		plLane:    newLane(cfg.base.Host, m, stop, cfg.timeout).retryingUnanswered(cfg.retryUnanswered),
		partLane:  newLane(cfg.base.Host, m, stop, cfg.timeout).retryingUnanswered(cfg.retryUnanswered),
		stop:      stop,
		leave:     cfg.leaveAfterJoin,
		results:   make(chan result, 2),
		needPlain: true,
		attempts:  make(map[string]int),
	}
}

// run plays until stop, the end of the broadcast, or (leave) the first
// decodable part. It returns an error only if the viewer never received
// a part.
func (v *hlsViewer) run() error {
	defer v.finish()
	v.t.joinStart = time.Now()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer v.t.flush()
	for {
		now := time.Now()
		v.schedule(now)
		if v.ended && !v.plBusy && !v.partBusy {
			return v.outcome()
		}
		if v.leave && v.t.firstDecodable {
			return nil
		}
		if wake, ok := v.wake(); ok {
			timer.Reset(max(time.Until(wake), 0))
		}
		select {
		case res := <-v.results:
			v.handle(res)
		case <-timer.C:
		case <-v.stop.Done():
			return v.outcome()
		}
	}
}

// finish ends the requests still in flight, waits for them, and closes
// the connections: a lane belongs to one request at a time.
func (v *hlsViewer) finish() {
	v.plLane.interrupt()
	v.partLane.interrupt()
	for v.plBusy || v.partBusy {
		res := <-v.results
		if res.kind == kPlaylist || res.kind == kBlocking {
			v.plBusy = false
		} else {
			v.partBusy = false
		}
		if res.buf != nil {
			plBufs.Put(res.buf)
		}
	}
	v.plLane.close()
	v.partLane.close()
}

func (v *hlsViewer) outcome() error {
	if v.t.firstPart {
		return nil
	}
	if v.lastErr != nil {
		return fmt.Errorf("no part received; last error: %w", v.lastErr)
	}
	return errors.New("no part received")
}

// wake is the earliest retry the loop must wake up for.
func (v *hlsViewer) wake() (time.Time, bool) {
	var at time.Time
	if !v.plBusy && !v.plAt.IsZero() {
		at = v.plAt
	}
	if !v.partBusy && !v.partAt.IsZero() && (at.IsZero() || v.partAt.Before(at)) {
		at = v.partAt
	}
	return at, !at.IsZero()
}

// schedule issues the next playlist and part requests on whichever lane
// is free.
func (v *hlsViewer) schedule(now time.Time) {
	if !v.plBusy && !v.ended && !now.Before(v.plAt) {
		v.plAt = time.Time{}
		pl := v.t.pl
		switch {
		case pl == nil || v.needPlain || !pl.canBlock:
			v.m.count(func(t *tally) { t.Playlists++ })
			v.issue(result{kind: kPlaylist}, v.plURL)
		default:
			target := pl.edge()
			u := *v.plURL
			u.RawQuery = "_HLS_msn=" + strconv.FormatUint(target.msn, 10) + "&_HLS_part=" + strconv.Itoa(target.part)
			v.m.count(func(t *tally) { t.Blocking++ })
			v.issue(result{kind: kBlocking, target: target}, &u)
		}
	}
	if v.partBusy || now.Before(v.partAt) || !v.t.started {
		return
	}
	v.partAt = time.Time{}
	if pl := v.t.pl; pl.initURI != "" && pl.initURI != v.initURI {
		v.m.count(func(t *tally) { t.Inits++ })
		v.issue(result{kind: kInit, uri: pl.initURI}, v.resolve(pl.initURI))
		return
	}
	if p, ok := v.t.next(); ok {
		v.m.count(func(t *tally) { t.Parts++ })
		v.issue(result{kind: kPart, uri: p.uri, part: p}, v.resolve(p.uri))
		return
	}
	if h, ok := v.t.hint(); ok {
		v.m.count(func(t *tally) { t.Hints++ })
		v.issue(result{kind: kHint, uri: h}, v.resolve(h))
	}
}

func (v *hlsViewer) resolve(uri string) *url.URL {
	u, err := v.plURL.Parse(uri)
	if err != nil {
		return v.plURL.JoinPath("..", uri)
	}
	return u
}

// issue starts a request; its result comes back on v.results.
func (v *hlsViewer) issue(res result, u *url.URL) {
	l := v.partLane
	if res.kind == kPlaylist || res.kind == kBlocking {
		v.plBusy = true
		l = v.plLane
	} else {
		v.partBusy = true
	}
	vt, hasVT := v.vt, v.hasVT
	res.url = u
	start := time.Now()
	go func() {
		r := fetch(l, res, u.RequestURI(), vt, hasVT)
		r.start = start
		v.results <- r
	}()
}

// fetch performs one request. Playlists and init sections are returned
// whole; part bodies are read into a pooled buffer, and their first video
// sample checked.
func fetch(l *lane, res result, target string, vt videoTrack, hasVT bool) result {
	var (
		buf   *bytes.Buffer
		limit int64 = maxPlaylistBytes
	)
	if res.kind == kPart || res.kind == kHint {
		buf = partBufs.Get().(*bytes.Buffer)
		buf.Reset()
		defer partBufs.Put(buf)
		limit = maxPartBytes
	} else if res.kind == kInit {
		buf = new(bytes.Buffer)
	} else {
		buf = plBufs.Get().(*bytes.Buffer)
		buf.Reset()
		res.buf = buf
	}
	resp, err := l.get(target, buf, limit)
	res.headers, res.status, res.n = resp.headers, resp.status, resp.n
	res.done = time.Now()
	if res.headers.IsZero() {
		res.headers = res.done
	}
	res.err = err
	if err != nil || resp.status != http.StatusOK {
		return res
	}
	switch res.kind {
	case kPlaylist, kBlocking, kInit:
		res.body = buf.Bytes()
	default:
		if hasVT {
			res.sync = firstSync(buf.Bytes(), vt)
		}
	}
	return res
}

// stopped says whether the run is over: cancelled, or past its deadline
// (a connection's deadline, set from it, can fire before the context's
// own timer has marked it done).
func stopped(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// handle applies a finished request.
func (v *hlsViewer) handle(res result) {
	if res.kind == kPlaylist || res.kind == kBlocking {
		v.plBusy = false
	} else {
		v.partBusy = false
	}
	if res.buf != nil {
		// parseView copies what it keeps.
		defer plBufs.Put(res.buf)
	}
	if stopped(v.stop) {
		return // cancelled by the end of the run
	}
	v.m.count(func(t *tally) { t.Bytes += uint64(res.n) })
	what := res.kind.String()
	if res.err != nil {
		v.lastErr = fmt.Errorf("%s: %w", what, res.err)
		v.m.countError(what + "_" + classify(res.err))
		v.logFailure(res)
		v.failed(res)
		return
	}
	if res.status != http.StatusOK {
		v.lastErr = fmt.Errorf("%s: HTTP %d", what, res.status)
		v.m.countError(what + "_http_" + strconv.Itoa(res.status))
		v.logFailure(res)
		v.failed(res)
		return
	}
	switch res.kind {
	case kPlaylist, kBlocking:
		v.playlist(res)
	case kInit:
		v.initFail = 0
		v.initURI = res.uri
		v.vt, v.hasVT = parseInit(res.body)
		if !v.hasVT {
			v.m.countError("init_parse")
		}
	case kPart:
		delete(v.attempts, res.uri)
		v.t.received(res.part, "", res.headers, res.done, res.sync, v.initURI != "")
	case kHint:
		v.t.received(partRef{}, res.uri, res.headers, res.done, res.sync, v.initURI != "")
	}
}

func (v *hlsViewer) playlist(res result) {
	pl, err := parseView(res.body)
	if errors.Is(err, errNoSegment) {
		// Starting: not an error; ask again in a part's time.
		v.needPlain = true
		v.plAt = time.Now().Add(200 * time.Millisecond)
		return
	}
	if err != nil {
		v.lastErr = err
		v.m.countError("playlist_parse")
		v.plFails++
		v.needPlain = true
		v.plAt = time.Now().Add(backoff(v.plFails))
		return
	}
	v.plFails = 0
	v.needPlain = false
	v.t.onPlaylist(pl, res.done, res.kind == kBlocking)
	if pl.endlist {
		v.ended = true
		return
	}
	switch {
	case res.kind == kBlocking && !pl.has(res.target):
		// Answered without what it waited for: the server let go of the
		// request (for instance, the stream moved to a new process). Ask
		// again at once, then back off if it keeps happening.
		v.m.count(func(t *tally) { t.Unsatisfied++ })
		v.unsat++
		if v.unsat > 1 {
			v.plAt = time.Now().Add(min(20*time.Millisecond<<(v.unsat-2), 500*time.Millisecond))
		}
	case !pl.canBlock:
		v.unsat = 0
		v.plAt = time.Now().Add(max(pl.partTarget, pl.target/2, 100*time.Millisecond))
	default:
		v.unsat = 0
	}
}

// failed schedules what follows a failed request.
func (v *hlsViewer) failed(res result) {
	now := time.Now()
	switch res.kind {
	case kPlaylist, kBlocking:
		v.plFails++
		switch res.status {
		case http.StatusBadRequest:
			// Too far ahead: reload without directives, at once.
			v.needPlain = true
		default:
			// 503 (nothing new within three target durations), 404 (no
			// such stream), a connection failure: back off, then start
			// over from a plain reload.
			v.needPlain = true
			v.plAt = now.Add(backoff(v.plFails))
		}
	case kPart:
		if res.status == http.StatusNotFound || res.status == http.StatusGone {
			v.m.count(func(t *tally) { t.PartsMissing++ })
			return
		}
		n := v.attempts[res.uri] + 1
		if n >= maxPartAttempts {
			delete(v.attempts, res.uri)
			v.m.count(func(t *tally) { t.PartsMissing++ })
			return
		}
		v.attempts[res.uri] = n
		v.t.requeue(res.part)
		v.partAt = now.Add(backoff(n))
	case kHint:
		// The part comes through the playlist instead.
		v.m.count(func(t *tally) { t.HintsFailed++ })
	case kInit:
		v.initFail++
		v.partAt = now.Add(backoff(v.initFail))
	}
}

// logFailure logs a failed request while the run's -log-errors budget
// lasts.
func (v *hlsViewer) logFailure(res result) {
	if v.cfg.logErrors == nil || v.cfg.logErrors.Add(-1) < 0 {
		return
	}
	what := strconv.Itoa(res.status)
	if res.err != nil {
		what = res.err.Error()
	}
	newest := "none"
	if pl := v.t.pl; pl != nil {
		newest = pl.newest().String()
	}
	v.cfg.logf("%s GET %s: %s after %.1f ms (newest part listed %s)", res.kind, res.url, what, float64(time.Since(res.start).Microseconds())/1000, newest)
}

// classify names a request failure for the error counts.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "conn"
}
