package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawOrigin answers each request on a real 127.0.0.1 socket with the next
// of its scripted raw responses; a response of "" closes the connection
// without answering, "hang" never answers, and "|close" after an answer
// closes the connection after it.
type rawOrigin struct {
	ln      net.Listener
	answers chan string
	paths   chan string
}

func newRawOrigin(t *testing.T, answers ...string) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{ln: ln, answers: make(chan string, len(answers)), paths: make(chan string, 16)}
	for _, a := range answers {
		o.answers <- a
	}
	close(o.answers)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go o.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return o
}

func (o *rawOrigin) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		o.paths <- req.URL.RequestURI()
		a, ok := <-o.answers
		if !ok || a == "" {
			return
		}
		if a == "hang" {
			_, _ = io.Copy(io.Discard, c) // until the client closes
			return
		}
		closeAfter := strings.HasSuffix(a, "|close")
		if _, err := io.WriteString(c, strings.TrimSuffix(a, "|close")); err != nil || closeAfter {
			return
		}
	}
}

func TestLaneGet(t *testing.T) {
	const ok5 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	for _, tc := range []struct {
		name    string
		answers []string
		limit   int64
		// per request: the body wanted, or an error that errors.Is must
		// match (nil: any error), and the status
		want   []string
		errs   []error
		status []int
		dials  uint64
		// retry: -retry-unanswered; retried: unanswered retries counted
		retry   bool
		retried uint64
	}{
		{name: "keep-alive", answers: []string{ok5, ok5}, want: []string{"hello", "hello"}, status: []int{200, 200}, dials: 1},
		{name: "chunked with trailer, then reuse",
			answers: []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n", ok5},
			want:    []string{"abcde", "hello"}, status: []int{200, 200}, dials: 1},
		{name: "Connection: close dials again",
			answers: []string{"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello|close", ok5},
			want:    []string{"hello", "hello"}, status: []int{200, 200}, dials: 2},
		{name: "HTTP/1.0 is not kept",
			answers: []string{"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", ok5},
			want:    []string{"hello", "hello"}, status: []int{200, 200}, dials: 2},
		{name: "idle connection closed by the server: sent again once",
			answers: []string{ok5, "", ok5}, want: []string{"hello", "hello"}, status: []int{200, 200}, dials: 2},
		{name: "error status keeps the connection",
			answers: []string{"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", ok5},
			want:    []string{"busy", "hello"}, status: []int{503, 200}, dials: 1},
		{name: "no length: read to close",
			answers: []string{"HTTP/1.1 200 OK\r\n\r\nuntil close|close", ok5},
			want:    []string{"until close", "hello"}, status: []int{200, 200}, dials: 2},
		{name: "over the limit", limit: 4, answers: []string{ok5},
			want: []string{""}, errs: []error{errBodyTooLarge}, status: []int{200}, dials: 1},
		{name: "chunked over the limit", limit: 4,
			answers: []string{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
			want:    []string{""}, errs: []error{errBodyTooLarge}, status: []int{200}, dials: 1},
		{name: "truncated body", answers: []string{"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello|close"},
			want: []string{""}, errs: []error{io.ErrUnexpectedEOF}, status: []int{200}, dials: 1},
		{name: "bad status line", answers: []string{"HTTP/1.1 2x0 OK\r\n\r\n"},
			want: []string{""}, errs: []error{nil}, status: []int{0}, dials: 1},
		{name: "not HTTP", answers: []string{"SSH-2.0-OpenSSH\r\n\r\n"},
			want: []string{""}, errs: []error{nil}, status: []int{0}, dials: 1},
		{name: "bad Content-Length", answers: []string{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"},
			want: []string{""}, errs: []error{nil}, status: []int{0}, dials: 1},
		{name: "closed before an answer on a new connection: no retry", answers: []string{""},
			want: []string{""}, errs: []error{io.EOF}, status: []int{0}, dials: 1},
		{name: "closed before an answer on a new connection, -retry-unanswered: sent again once", retry: true,
			answers: []string{"", ok5}, want: []string{"hello"}, status: []int{200}, dials: 2, retried: 1},
		{name: "-retry-unanswered retries once only", retry: true, answers: []string{"", ""},
			want: []string{""}, errs: []error{io.EOF}, status: []int{0}, dials: 2, retried: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newRawOrigin(t, tc.answers...)
			m := &meter{}
			l := newLane(o.ln.Addr().String(), m, context.Background(), 5*time.Second).retryingUnanswered(tc.retry)
			defer l.close()
			limit := tc.limit
			if limit == 0 {
				limit = 1 << 20
			}
			for i, want := range tc.want {
				var body bytes.Buffer
				resp, err := l.get("/a/b?x=1", &body, limit)
				if tc.errs != nil && i < len(tc.errs) {
					if err == nil || tc.errs[i] != nil && !errors.Is(err, tc.errs[i]) {
						t.Fatalf("request %d: error %v, want %v", i, err, tc.errs[i])
					}
				} else if err != nil {
					t.Fatalf("request %d: %v", i, err)
				} else if body.String() != want {
					t.Fatalf("request %d: body %q, want %q", i, body.String(), want)
				}
				if resp.status != tc.status[i] {
					t.Errorf("request %d: status %d, want %d", i, resp.status, tc.status[i])
				}
				if p := <-o.paths; p != "/a/b?x=1" {
					t.Errorf("request %d: path %q", i, p)
				}
			}
			if d := peek(m).Dials; d != tc.dials {
				t.Errorf("%d connections, want %d", d, tc.dials)
			}
			if r := peek(m).UnansweredRetries; r != tc.retried {
				t.Errorf("%d unanswered retries, want %d", r, tc.retried)
			}
		})
	}
}

// TestLaneCancel: the end of the run ends the request in flight at once,
// as it must end every blocking reload.
func TestLaneCancel(t *testing.T) {
	o := newRawOrigin(t, "hang")
	ctx, cancel := context.WithCancel(context.Background())
	l := newLane(o.ln.Addr().String(), &meter{}, ctx, time.Minute)
	defer l.close()
	errc := make(chan error, 1)
	go func() {
		var body bytes.Buffer
		_, err := l.get("/wait", &body, 1<<20)
		errc <- err
	}()
	<-o.paths
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled request did not end")
	}
}

// TestLaneTimeout: a request that gets no answer fails at its timeout, as
// a timeout.
func TestLaneTimeout(t *testing.T) {
	o := newRawOrigin(t, "hang")
	l := newLane(o.ln.Addr().String(), &meter{}, context.Background(), 100*time.Millisecond)
	defer l.close()
	var body bytes.Buffer
	_, err := l.get("/wait", &body, 1<<20)
	if classify(err) != "timeout" {
		t.Fatalf("error %v (%s), want a timeout", err, classify(err))
	}
}
