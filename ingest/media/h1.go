package media

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// HTTP1 serves the media handler over HTTP/1.1, in place of net/http's
// server, because of what LL-HLS viewers ask of it. A thousand viewers
// make ten thousand small requests a second, most of them waiting
// (blocking reloads, preload hints) and answered in a burst when a part
// completes. net/http spends about five system calls on each (the read
// of the request; a background read, on a goroutine of its own, that only
// learns EAGAIN; two writes for a 12 KB part through its 4 KiB buffer;
// the read that learns the connection is idle again). Here a request costs
// a read and one write (and the read that finds the connection idle
// again): the answer is built in memory and written whole with its head
// (writev), on the connection's one goroutine.
//
// What it leaves out, because the media handler needs none of it: request
// bodies (a request with one is answered, then the connection closed),
// HTTP/2, trailers, Expect: 100-continue. A client that goes away while its
// request waits is noticed when the answer is written; the handler bounds
// every wait (three target durations), the listener's limits bound how
// many wait.
//
// Shutdown answers every request it has accepted, even one read after the
// shutdown began. net/http drops those with no answer, which in an upgrade
// is a viewer that redialled the moment it was told its stream moved.
type HTTP1 struct {
	h   http.Handler
	cfg HTTP1Config

	ctx    context.Context // requests' context: ended by Close
	cancel context.CancelFunc

	draining atomic.Bool // Shutdown began: no keep-alive, idle connections end

	mu      sync.Mutex
	closed  bool
	lns     map[net.Listener]struct{}
	conns   map[*h1conn]struct{}
	serving int           // Serve loops running
	gone    chan struct{} // a token when a connection or a Serve loop ends
	nextID  uint64
	round   *parkRound // the park in progress (park.go)
	moved   bool       // a park was committed: accept no more
	// opening is closed when the connections of the last restore are
	// all served (nil when none is under way); openLeft of them are
	// still descriptors.
	opening  chan struct{}
	openLeft int

	date atomic.Pointer[dateLine]
}

// HTTP1Config holds the limits a public listener needs.
type HTTP1Config struct {
	// ReadHeaderTimeout bounds the reading of a request's head once its
	// first byte came.
	ReadHeaderTimeout time.Duration
	// WriteTimeout bounds the writing of an answer. It is re-armed at most
	// every quarter of itself, so the bound is between 3/4 and all of it.
	WriteTimeout time.Duration
	// IdleTimeout: a keep-alive connection with no request for this long
	// is closed (within a quarter of it).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's head: past it, 431.
	MaxHeaderBytes int
	// Adopt, if set, wraps a connection taken over from the old process,
	// as the listener wraps those it accepts.
	Adopt func(net.Conn) net.Conn
	Log   zerolog.Logger
}

// NewHTTP1 returns a server for h.
func NewHTTP1(h http.Handler, cfg HTTP1Config) *HTTP1 {
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 5 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 16 << 10
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &HTTP1{
		h: h, cfg: cfg, ctx: ctx, cancel: cancel,
		lns: make(map[net.Listener]struct{}), conns: make(map[*h1conn]struct{}),
		gone: make(chan struct{}, 1),
	}
}

// Serve accepts connections on ln until it is closed; it returns
// http.ErrServerClosed after Shutdown or Close.
func (s *HTTP1) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed || s.draining.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.serving++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.serving--
		s.mu.Unlock()
		s.signal()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.draining.Load() || s.isClosed() {
				return http.ErrServerClosed
			}
			s.mu.Lock()
			r := s.round
			s.mu.Unlock()
			if r != nil {
				// A park woke Accept: wait for its outcome. After a commit
				// the new process accepts; this one's copy of the
				// listener closes.
				<-r.decided
				s.mu.Lock()
				moved := s.moved
				s.mu.Unlock()
				if moved {
					ln.Close()
					return http.ErrServerClosed
				}
				continue
			}
			// Out of descriptors, or a connection reset before it was
			// taken: wait and go on, as net/http does.
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.cfg.Log.Warn().Err(err).Dur("retry_in", backoff).Msg("media: accept failed")
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		hc := newH1Conn(s, c)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return http.ErrServerClosed
		}
		s.nextID++
		hc.id = s.nextID
		s.conns[hc] = struct{}{}
		s.mu.Unlock()
		go hc.serve()
	}
}

func (s *HTTP1) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *HTTP1) signal() {
	select {
	case s.gone <- struct{}{}:
	default:
	}
}

func (s *HTTP1) forget(c *h1conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.signal()
}

// Shutdown stops accepting, ends idle connections, answers every request
// accepted (each answer closing its connection) and returns when none is
// left, or cuts what is left when ctx ends and returns its error.
func (s *HTTP1) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.wakeIfIdle()
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		left := len(s.conns) + s.serving
		s.mu.Unlock()
		if left == 0 {
			s.Close()
			return nil
		}
		select {
		case <-s.gone:
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		}
	}
}

// Close stops accepting and closes every connection at once; requests
// that wait end.
func (s *HTTP1) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	conns := make([]*h1conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.conn.Close()
	}
	return nil
}

// dateLine is the Date header of one second.
type dateLine struct {
	sec  int64
	line []byte
}

func (s *HTTP1) dateHeader(now time.Time) []byte {
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.sec == sec {
		return d.line
	}
	d := &dateLine{sec: sec, line: []byte("Date: " + now.UTC().Format(http.TimeFormat) + "\r\n")}
	s.date.Store(d)
	return d.line
}

// Connection states for Shutdown.
const (
	// connNew: accepted, waiting for its first request. Shutdown leaves
	// it be: the request is most likely on its way (a client dials and
	// sends at once), and its wait is bounded by ReadHeaderTimeout.
	connNew    int32 = iota
	connActive       // a request is being read or answered
	connIdle         // waiting for the next request, nothing of it read
)

// h1conn is one client connection, served on its own goroutine.
type h1conn struct {
	s       *HTTP1
	id      uint64
	conn    net.Conn     // what the listener gave, closed at the end
	tcp     *net.TCPConn // the socket under conn, for writev; nil if none
	remote  string       // conn.RemoteAddr().String(), made once
	state   atomic.Int32 // connNew, connActive or connIdle
	br      *bufio.Reader
	rdl     time.Time     // the read deadline set, zero for none
	rdlIdle bool          // rdl is an idle deadline (not a header one)
	wdl     time.Time     // the write deadline set
	head    []byte        // an answer's head, built here
	body    []byte        // an answer's body while it is small
	bufArr  [5][]byte     // what one writev sends
	bufs    net.Buffers   // over bufArr
	req0    *http.Request // an empty request with the server's context
	resp    h1resp
	long    []byte // a head line longer than the reader's buffer

	// The park of an upgrade (park.go).
	park     atomic.Int32 // parkNone, parkAsked, parkDone or parkOut
	round    *parkRound   // set before park turns parkAsked
	cut      atomic.Bool  // a park cancelled the context
	cancelMu sync.Mutex
	ctx      context.Context // the requests': the server's, cut by a park
	cancel   context.CancelFunc
	unread   []byte     // what goes with the connection when it parks
	fresh    bool       // it parked before its first request
	rest     restReader // what was read before a park, read again
}

// newContext gives the connection's requests a context of their own, which
// a park can cancel.
func (c *h1conn) newContext() {
	c.cancelMu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.ctx, c.cancel = context.WithCancel(c.s.ctx)
	c.cancelMu.Unlock()
	c.cut.Store(false)
	c.req0 = (&http.Request{}).WithContext(c.ctx)
}

// cancelWait ends the wait of a request in its handler, for a park.
func (c *h1conn) cancelWait() {
	c.cancelMu.Lock()
	defer c.cancelMu.Unlock()
	if c.cancel != nil {
		c.cut.Store(true)
		c.cancel()
	}
}

func newH1Conn(s *HTTP1, c net.Conn) *h1conn {
	hc := &h1conn{s: s, conn: c}
	inner := c
	if cc, ok := c.(*countedConn); ok {
		inner = cc.Conn
	}
	if tc, ok := inner.(*net.TCPConn); ok {
		hc.tcp = tc
	}
	hc.resp.c = hc
	return hc
}

// setReadDeadline arms the read deadline; an idle one is moved only when a
// quarter of it has passed, so a busy connection does not re-arm its timer
// on every request.
func (c *h1conn) setReadDeadline(now time.Time, d time.Duration, idle bool) error {
	if idle && c.rdlIdle && !c.rdl.IsZero() && c.rdl.Sub(now) > d-d/4 {
		return nil
	}
	c.rdl, c.rdlIdle = now.Add(d), idle
	return c.conn.SetReadDeadline(c.rdl)
}

func (c *h1conn) armWrite(now time.Time) error {
	d := c.s.cfg.WriteTimeout
	if !c.wdl.IsZero() && c.wdl.Sub(now) > d-d/4 {
		return nil
	}
	c.wdl = now.Add(d)
	return c.conn.SetWriteDeadline(c.wdl)
}

// wakeIfIdle ends the wait of an idle connection: Shutdown began.
func (c *h1conn) wakeIfIdle() {
	if c.state.Load() == connIdle {
		_ = c.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

func (c *h1conn) serve() {
	c.br = bufio.NewReaderSize(c.conn, 4<<10)
	c.newContext()
	c.run()
}

// serveRestored serves a connection taken over from the old process: what
// it had read there is read first.
func (c *h1conn) serveRestored() {
	c.br = bufio.NewReaderSize(c.conn, 4<<10)
	c.goOn()
	c.run()
}

func (c *h1conn) run() {
	hijacked := false
	defer func() {
		if c.park.CompareAndSwap(parkAsked, parkOut) {
			c.round.arrive(nil) // ended before it could stop
		}
		if !hijacked {
			c.conn.Close()
		}
		c.s.forget(c)
		c.cancelMu.Lock()
		c.cancel()
		c.cancelMu.Unlock()
	}()
	c.remote = c.conn.RemoteAddr().String()
	for {
		switch c.park.Load() {
		case parkAsked:
			if c.park.CompareAndSwap(parkAsked, parkDone) && !c.parkHere() {
				return // the new process has it
			}
			continue
		case parkOut:
			// Left out of a park: undo its wake and its cut.
			c.park.Store(parkNone)
			c.rdl = time.Time{}
			if c.cut.Load() {
				c.newContext()
			}
		}
		now := time.Now()
		// The deadline first, then the state: Shutdown wakes an idle
		// connection by a deadline in the past, which must come after
		// this one.
		switch {
		case c.state.Load() == connNew:
			if err := c.setReadDeadline(now, c.s.cfg.ReadHeaderTimeout, false); err != nil {
				return
			}
			if _, err := c.br.Peek(1); err != nil {
				if c.park.Load() != parkNone {
					continue // woken for a park
				}
				return // nothing came in time, or the client closed
			}
			c.state.Store(connActive)
		case c.br.Buffered() == 0:
			if err := c.setReadDeadline(now, c.s.cfg.IdleTimeout, true); err != nil {
				return
			}
			c.state.Store(connIdle)
			if c.s.draining.Load() {
				return
			}
			if _, err := c.br.Peek(1); err != nil {
				if c.park.Load() != parkNone {
					continue // woken for a park
				}
				return // idle timeout, Shutdown, or the client closed
			}
			c.state.Store(connActive)
		}
		// A head that came whole in the read needs no deadline of its own.
		if !bytes.Contains(peekBuffered(c.br), []byte("\r\n\r\n")) {
			if err := c.setReadDeadline(time.Now(), c.s.cfg.ReadHeaderTimeout, false); err != nil {
				return
			}
		}
		req, status, err := c.readRequest()
		if err != nil {
			if status != 0 {
				c.writeError(status, err)
			}
			return
		}
		if err := c.armWrite(time.Now()); err != nil {
			return
		}
		w := &c.resp
		w.reset(req)
		if !c.handle(w, req) {
			return
		}
		if w.hijacked {
			hijacked = true
			return
		}
		if c.cut.Load() && !w.sent {
			// A park cut the request's wait short: it is answered after
			// the park, here or in the new process, as if read again.
			c.unread = append(requestHead(req), c.takeUnread()...)
			c.goOn()
			continue
		}
		err = w.finish()
		c.release()
		if err != nil || w.closeAfter {
			return
		}
	}
}

// peekBuffered is what the reader holds, without reading.
func peekBuffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// handle runs the handler. A panic ends this connection only, logged with
// its stack; false means the connection cannot go on.
func (c *h1conn) handle(w *h1resp, r *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			ok = false
			if v != http.ErrAbortHandler {
				c.s.cfg.Log.Error().Str("peer", c.remote).Str("path", r.URL.Path).
					Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).Msg("media: handler panicked; connection closed")
			}
		}
	}()
	c.s.h.ServeHTTP(w, r)
	return true
}

// errHeaderTooLarge: the request's head passed MaxHeaderBytes.
var errHeaderTooLarge = errors.New("request head too large")

// readRequest reads one request's head. status is what to answer when the
// request is refused (0: the connection just ends).
func (c *h1conn) readRequest() (*http.Request, int, error) {
	limit := c.s.cfg.MaxHeaderBytes
	line, err := c.readLine(&limit)
	if err != nil {
		return nil, lineStatus(err), err
	}
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(method) == 0 || !isToken(method) || len(target) == 0 {
		return nil, http.StatusBadRequest, fmt.Errorf("malformed request line %q", line)
	}
	var minor int
	protoName := "HTTP/1.0"
	switch string(proto) {
	case "HTTP/1.1":
		minor, protoName = 1, "HTTP/1.1"
	case "HTTP/1.0":
	default:
		if bytes.HasPrefix(proto, []byte("HTTP/")) {
			return nil, http.StatusHTTPVersionNotSupported, fmt.Errorf("unsupported protocol %q", proto)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("malformed request line %q", line)
	}
	if target[0] != '/' && !bytes.HasPrefix(target, []byte("http://")) && !bytes.HasPrefix(target, []byte("https://")) {
		return nil, http.StatusBadRequest, fmt.Errorf("request target %q: want a path", target)
	}
	rawTarget := string(target)
	u, err := url.ParseRequestURI(rawTarget)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("request target: %w", err)
	}
	// A copy of an empty request made with the server's context carries
	// that context: one allocation, where WithContext would be a second.
	if c.req0 == nil {
		c.req0 = (&http.Request{}).WithContext(c.s.ctx)
	}
	r := new(http.Request)
	*r = *c.req0
	r.Method, r.URL, r.Proto, r.ProtoMajor, r.ProtoMinor = methodString(method), u, protoName, 1, minor
	r.Header, r.Body, r.RequestURI, r.RemoteAddr, r.Close = make(http.Header, 8), http.NoBody, rawTarget, c.remote, minor == 0
	for {
		line, err := c.readLine(&limit)
		if err != nil {
			return nil, lineStatus(err), err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, http.StatusBadRequest, errors.New("folded header line")
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(k) == 0 || !isToken(k) {
			return nil, http.StatusBadRequest, fmt.Errorf("malformed header line %q", line)
		}
		key := headerKey(k)
		val := string(bytes.Trim(v, " \t"))
		switch key {
		case "Host":
			if r.Host != "" {
				return nil, http.StatusBadRequest, errors.New("two Host headers")
			}
			r.Host = val
			continue
		case "Connection":
			if hasToken(val, "close") {
				r.Close = true
			} else if minor == 0 && hasToken(val, "keep-alive") {
				r.Close = false
			}
		case "Content-Length":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				return nil, http.StatusBadRequest, fmt.Errorf("bad Content-Length %q", val)
			}
			if n > 0 {
				// The body is not read: the connection cannot carry
				// another request after it.
				r.Close = true
			}
		case "Transfer-Encoding":
			r.Close = true
		}
		r.Header[key] = append(r.Header[key], val)
	}
	if minor == 1 && r.Host == "" {
		return nil, http.StatusBadRequest, errors.New("missing Host header")
	}
	if u.Host != "" {
		r.Host = u.Host
	}
	return r, 0, nil
}

// readLine reads one line of a request's head, without its CR LF, taking
// its length from *limit.
func (c *h1conn) readLine(limit *int) ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	*limit -= len(line)
	if errors.Is(err, bufio.ErrBufferFull) {
		// Longer than the reader's buffer: gathered aside, up to the
		// limit.
		c.long = append(c.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) && *limit >= 0 {
			line, err = c.br.ReadSlice('\n')
			*limit -= len(line)
			c.long = append(c.long, line...)
		}
		line = c.long
	}
	if *limit < 0 {
		return nil, errHeaderTooLarge
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func lineStatus(err error) int {
	if errors.Is(err, errHeaderTooLarge) {
		return http.StatusRequestHeaderFieldsTooLarge
	}
	return 0 // the client closed, or was too slow: nobody to answer
}

func methodString(b []byte) string {
	switch string(b) { // no allocation: the compiler compares in place
	case "GET":
		return http.MethodGet
	case "HEAD":
		return http.MethodHead
	case "OPTIONS":
		return http.MethodOptions
	}
	return string(b)
}

// commonHeaders are the canonical names of the headers viewers send, so
// that their keys are not allocated per request.
var commonHeaders = []string{
	"Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "Connection",
	"Range", "If-Range", "If-Modified-Since", "If-None-Match", "If-Match", "If-Unmodified-Since",
	"Origin", "Referer", "Cache-Control", "Pragma", "Content-Length", "Transfer-Encoding",
	"Icy-Metadata", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Ch-Ua",
	"Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform", "Upgrade-Insecure-Requests", "Dnt",
}

func headerKey(k []byte) string {
	for _, h := range commonHeaders {
		if len(h) == len(k) && asciiEqualFold(k, h) {
			return h
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(k))
}

func asciiEqualFold(b []byte, s string) bool {
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// isToken: RFC 9110 token characters only.
func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds tok, in any
// case.
func hasToken(v, tok string) bool {
	for len(v) > 0 {
		var el string
		el, v, _ = strings.Cut(v, ",")
		el = strings.Trim(el, " \t")
		if len(el) == len(tok) && asciiEqualFold([]byte(el), tok) {
			return true
		}
	}
	return false
}

// writeError answers a request that could not be read, and the
// connection ends.
func (c *h1conn) writeError(status int, err error) {
	text := http.StatusText(status)
	body := strconv.Itoa(status) + " " + text + ": " + err.Error() + "\n"
	msg := "HTTP/1.1 " + strconv.Itoa(status) + " " + text + "\r\n" + string(c.s.dateHeader(time.Now())) +
		"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c.conn, msg)
}

// write sends the buffers in one system call where the socket allows.
func (c *h1conn) write(bufs ...[]byte) error {
	// net.Buffers.WriteTo consumes the slice it is called on: a fresh
	// one over the connection's array each time, held in the connection
	// so that taking its address allocates nothing.
	c.bufs = append(c.bufArr[:0], bufs...)
	var err error
	if c.tcp != nil {
		_, err = c.bufs.WriteTo(c.tcp)
	} else {
		_, err = c.bufs.WriteTo(c.conn)
	}
	clear(c.bufArr[:])
	return err
}

// smallBody is how much of an answer without a declared length is held
// to be sent with its head; past it, the answer goes out chunked.
const smallBody = 64 << 10

// h1resp is the http.ResponseWriter of one request. It holds the answer
// until it is complete (or large), then writes the head and the body
// together.
type h1resp struct {
	c          *h1conn
	req        *http.Request
	header     http.Header
	status     int
	wroteHead  bool  // WriteHeader was called
	sent       bool  // the head went out
	chunked    bool  // the body goes out in chunks
	declared   int64 // Content-Length set by the handler, or -1
	written    int64 // body bytes the handler wrote
	closeAfter bool
	hijacked   bool
	autoLength int64 // a Content-Length the server adds, or -1
	err        error // a write failed: the connection ends
}

func (w *h1resp) reset(r *http.Request) {
	h := w.header
	if h == nil {
		h = make(http.Header, 8)
	}
	clear(h)
	c := w.c
	*w = h1resp{c: c, req: r, header: h, declared: -1, closeAfter: r.Close, autoLength: -1}
	c.body = c.body[:0]
}

func (w *h1resp) Header() http.Header { return w.header }

func (w *h1resp) WriteHeader(code int) {
	if w.wroteHead || w.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 {
		return // no interim answers here
	}
	w.wroteHead, w.status = true, code
	if v := w.header.Get("Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil && n >= 0 {
			w.declared = n
		} else {
			w.header.Del("Content-Length")
		}
	}
	if hasToken(w.header.Get("Connection"), "close") {
		w.closeAfter = true
	}
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func (w *h1resp) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.req.Method == http.MethodHead {
		return len(p), nil
	}
	c := w.c
	switch {
	case w.sent && w.chunked:
		if len(p) > 0 {
			w.err = c.write([]byte(strconv.FormatInt(int64(len(p)), 16)+"\r\n"), p, []byte("\r\n"))
		}
	case w.sent:
		w.err = c.write(p)
	case w.declared >= 0 && (w.written == w.declared || len(c.body)+len(p) > smallBody):
		// The whole body is here (or it is large): head, what was held
		// and this, in one write, with no copy of this.
		w.err = c.write(w.buildHead(sniffOf(c.body, p)), c.body, p)
		w.sent = true
	case len(c.body)+len(p) > smallBody:
		w.chunked = w.req.ProtoMinor >= 1
		if !w.chunked {
			w.closeAfter = true // HTTP/1.0: the body ends with the connection
		}
		head := w.buildHead(sniffOf(c.body, p))
		if w.chunked {
			n := len(c.body) + len(p)
			w.err = c.write(head, []byte(strconv.FormatInt(int64(n), 16)+"\r\n"), c.body, p, []byte("\r\n"))
		} else {
			w.err = c.write(head, c.body, p)
		}
		w.sent = true
	default:
		c.body = append(c.body, p...)
		return len(p), nil
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// buildHead writes the status line and the headers into c.head. Before the
// body is complete it is called only with a declared length or chunked.
func (w *h1resp) buildHead(sniff []byte) []byte {
	c := w.c
	now := time.Now()
	if c.s.draining.Load() {
		w.closeAfter = true
	}
	h := w.header
	if _, ok := h["Content-Type"]; !ok && bodyAllowed(w.status) && w.written > 0 && h.Get("Transfer-Encoding") == "" {
		h.Set("Content-Type", http.DetectContentType(sniff))
	}
	b := c.head[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(w.status)...)
	b = append(b, "\r\n"...)
	for k, vs := range h {
		if k == "Connection" || k == "Transfer-Encoding" {
			continue // set below, from what this answer does
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendHeaderValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	if _, ok := h["Date"]; !ok {
		b = append(b, c.s.dateHeader(now)...)
	}
	if w.autoLength >= 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, w.autoLength, 10)
		b = append(b, "\r\n"...)
	}
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	} else if w.req.ProtoMinor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = append(b, "\r\n"...)
	c.head = b
	return b
}

// sniffOf is what Content-Type sniffing looks at: the body's start.
func sniffOf(held, p []byte) []byte {
	if len(held) > 0 {
		return held
	}
	return p
}

// appendHeaderValue appends v with CR and LF replaced by spaces, so that a
// value cannot end the head.
func appendHeaderValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if ch == '\r' || ch == '\n' {
			ch = ' '
		}
		b = append(b, ch)
	}
	return b
}

// finish completes the answer once the handler returned.
func (w *h1resp) finish() error {
	if w.hijacked {
		return nil
	}
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	c := w.c
	if !w.sent {
		if bodyAllowed(w.status) && w.declared < 0 {
			n := len(c.body)
			if w.req.Method == http.MethodHead {
				n = int(w.written)
			}
			if n > 0 || w.req.Method != http.MethodHead {
				w.autoLength = int64(n)
			}
		}
		if !bodyAllowed(w.status) {
			w.header.Del("Content-Length")
		}
		head := w.buildHead(c.body)
		if w.req.Method == http.MethodHead || !bodyAllowed(w.status) {
			w.err = c.write(head)
		} else {
			if w.declared >= 0 && w.written < w.declared {
				w.closeAfter = true // the head promised more than came
			}
			w.err = c.write(head, c.body)
		}
		w.sent = true
		return w.err
	}
	switch {
	case w.chunked:
		w.err = c.write([]byte("0\r\n\r\n"))
	case w.declared >= 0 && w.written < w.declared:
		w.closeAfter = true
	}
	return w.err
}

// release drops buffers a large answer grew, so that an idle connection
// holds little.
func (c *h1conn) release() {
	if cap(c.body) > 16<<10 {
		c.body = nil
	}
	if cap(c.long) > 0 {
		c.long = nil
	}
}

// Hijack gives the connection to the handler (HTTP-FLV): the server no
// longer reads, writes, times or closes it. The connection given is the
// listener's, so that its per-client slot is freed when it is closed.
func (w *h1resp) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.sent {
		return nil, nil, errors.New("hijack: the answer has started")
	}
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	c := w.c
	c.s.forget(c)
	return c.conn, bufio.NewReadWriter(c.br, bufio.NewWriter(c.conn)), nil
}
