package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"
)

// A lane is one keep-alive HTTP/1.1 connection that carries one kind of a
// viewer's requests (playlists, or parts), one at a time. The request's
// goroutine writes the request and reads the response itself: one write
// and usually one read per request. net/http's client spends about twice
// the CPU per request on its connection goroutines and the channels
// between them, and this client shares the machine's cores with the
// server it measures.
type lane struct {
	host    string // host:port
	m       *meter
	stop    context.Context
	timeout time.Duration // of one request
	br      *bufio.Reader
	req     []byte
	// retryUnanswered: see runConfig.
	retryUnanswered bool

	// mu guards conn against the end of the run, which interrupts
	// whatever request is in flight by a deadline in the past.
	mu      sync.Mutex
	conn    net.Conn
	stopped bool
}

// newLane makes a lane whose requests last at most timeout each and end
// when stop is done.
func newLane(host string, m *meter, stop context.Context, timeout time.Duration) *lane {
	l := &lane{host: host, m: m, stop: stop, timeout: timeout}
	// One hook per lane, not a context per request: at 10,000 requests a
	// second those were 7% of the load client's CPU.
	context.AfterFunc(stop, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.stopped = true
		if l.conn != nil {
			_ = l.conn.SetDeadline(time.Unix(1, 0))
		}
	})
	return l
}

// retryingUnanswered sets whether a request that a new connection was
// closed on, with no answer, is sent again once.
func (l *lane) retryingUnanswered(on bool) *lane {
	l.retryUnanswered = on
	return l
}

// errBodyTooLarge: the response is longer than the caller takes.
var errBodyTooLarge = errors.New("response body over the limit")

// response is what get learned of a response.
type response struct {
	status  int
	headers time.Time // when the status line and headers were read
	n       int64     // body bytes read
}

// get sends GET target (path and query) and reads the response's body
// into body, at most limit bytes. A connection the server closed while
// it sat idle is replaced once, as net/http does for idempotent requests.
func (l *lane) get(target string, body *bytes.Buffer, limit int64) (response, error) {
	deadline := time.Now().Add(l.timeout)
	if d, ok := l.stop.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for attempt := 0; ; attempt++ {
		reused := l.conn != nil
		resp, sent, err := l.try(deadline, target, body, limit)
		if err == nil {
			return resp, nil
		}
		l.close()
		if !sent && attempt == 0 && !l.isStopped() {
			if reused {
				continue
			}
			if l.retryUnanswered && errors.Is(err, io.EOF) {
				l.m.count(func(t *tally) { t.UnansweredRetries++ })
				continue
			}
		}
		return resp, l.stopErr(err)
	}
}

func (l *lane) isStopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

// interrupt makes the request in flight, if any, fail at once and any
// later one fail: the viewer is leaving.
func (l *lane) interrupt() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.conn != nil {
		_ = l.conn.SetDeadline(time.Unix(1, 0))
	}
}

// close drops the connection; the next request dials a new one. Only the
// goroutine that owns the lane's request calls it.
func (l *lane) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close()
		l.conn, l.br = nil, nil
	}
}

// try is one attempt. sent says whether any byte of a response came back:
// until then, a failure on a reused connection is the server having closed
// it, not an answer.
func (l *lane) try(deadline time.Time, target string, body *bytes.Buffer, limit int64) (resp response, sent bool, err error) {
	if l.conn == nil {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Deadline: deadline}
		c, err := d.DialContext(l.stop, "tcp", l.host)
		if err != nil {
			return resp, true, err
		}
		l.m.count(func(t *tally) { t.Dials++ })
		l.mu.Lock()
		if l.stopped {
			l.mu.Unlock()
			c.Close()
			return resp, true, context.Canceled
		}
		l.conn, l.br = c, bufio.NewReaderSize(c, 16<<10)
		l.mu.Unlock()
	}
	c := l.conn
	l.mu.Lock()
	if !l.stopped {
		_ = c.SetDeadline(deadline)
	}
	l.mu.Unlock()

	l.req = append(l.req[:0], "GET "...)
	l.req = append(l.req, target...)
	l.req = append(l.req, " HTTP/1.1\r\nHost: "...)
	l.req = append(l.req, l.host...)
	l.req = append(l.req, "\r\nUser-Agent: hlsload\r\n\r\n"...)
	if _, err := c.Write(l.req); err != nil {
		return resp, false, err
	}

	line, err := l.br.ReadSlice('\n')
	if err != nil {
		return resp, len(line) > 0, err
	}
	// HTTP/1.x NNN reason
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return resp, true, fmt.Errorf("bad status line %q", bytes.TrimSpace(line))
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return resp, true, fmt.Errorf("bad status line %q", bytes.TrimSpace(line))
	}
	keepAlive := line[7] == '1'
	length, chunked := int64(-1), false
	for {
		h, err := l.br.ReadSlice('\n')
		if err != nil {
			return resp, true, fmt.Errorf("reading headers: %w", err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return resp, true, fmt.Errorf("bad header line %q", h)
		}
		v = bytes.TrimSpace(v)
		switch {
		case asciiEqualFold(k, "content-length"):
			if length, err = strconv.ParseInt(string(v), 10, 64); err != nil || length < 0 {
				return resp, true, fmt.Errorf("bad Content-Length %q", v)
			}
		case asciiEqualFold(k, "transfer-encoding"):
			chunked = asciiEqualFold(v, "chunked")
		case asciiEqualFold(k, "connection"):
			if asciiEqualFold(v, "close") {
				keepAlive = false
			}
		}
	}
	resp.status, resp.headers = status, time.Now()

	var r io.Reader
	switch {
	case chunked:
		r = httputil.NewChunkedReader(l.br)
	case length >= 0:
		if length > limit {
			return resp, true, fmt.Errorf("%w: %d bytes, limit %d", errBodyTooLarge, length, limit)
		}
		r = io.LimitReader(l.br, length)
	default:
		// No length: the body ends when the server closes.
		r, keepAlive = l.br, false
	}
	resp.n, err = body.ReadFrom(io.LimitReader(r, limit+1))
	switch {
	case err != nil:
		return resp, true, fmt.Errorf("reading body: %w", err)
	case resp.n > limit:
		return resp, true, fmt.Errorf("%w: limit %d", errBodyTooLarge, limit)
	case length >= 0 && resp.n < length:
		return resp, true, fmt.Errorf("reading body: %w after %d of %d bytes", io.ErrUnexpectedEOF, resp.n, length)
	}
	if chunked {
		// The chunked reader stops after the last chunk; the trailer, if
		// any, and the blank line that ends the response follow.
		for {
			t, err := l.br.ReadSlice('\n')
			if err != nil {
				return resp, true, fmt.Errorf("reading trailer: %w", err)
			}
			if len(bytes.TrimRight(t, "\r\n")) == 0 {
				break
			}
		}
	}
	if !keepAlive {
		l.close()
	}
	return resp, true, nil
}

// stopErr reports a failure caused by the end of the run as such, not as
// the deadline that ended it.
func (l *lane) stopErr(err error) error {
	if stopped(l.stop) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w (%v)", context.Canceled, err)
	}
	return err
}

// asciiEqualFold compares a header name or token with a lower-case
// string, ignoring ASCII case.
func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
