package media

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

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest"
)

// h1Serve runs h on HTTP1 over a real listener on 127.0.0.1.
func h1Serve(t *testing.T, h http.Handler) (string, *HTTP1) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewHTTP1(h, HTTP1Config{Log: zerolog.Nop()})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String(), s
}

// testHandler answers by path, so that one server covers every case.
func testHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hello":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "hello "+r.URL.Query().Get("q"))
		case "/declared":
			body := bytes.Repeat([]byte("p"), 12000)
			w.Header().Set("Content-Length", "12000")
			w.Header().Set("Content-Type", "video/iso.segment")
			_, _ = w.Write(body)
		case "/short":
			// Promises more than it sends: the connection must end.
			w.Header().Set("Content-Length", "10")
			_, _ = io.WriteString(w, "abc")
		case "/big":
			// No length, larger than what is held: chunked.
			for range 10 {
				_, _ = w.Write(bytes.Repeat([]byte("b"), 10000))
			}
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/sniff":
			_, _ = io.WriteString(w, "<html><body>x</body></html>")
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		case "/panic":
			panic("handler failure")
		case "/headers":
			_, _ = io.WriteString(w, r.Host+"|"+r.Header.Get("X-Thing")+"|"+r.Header.Get("Range")+"|"+r.Method+"|"+r.RemoteAddr)
		case "/hijack":
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nraw")
			c.Close()
		default:
			http.Error(w, "no such thing", http.StatusNotFound)
		}
	})
}

type h1Answer struct {
	status  int
	body    string
	headers map[string]string // wanted header values ("" = absent)
	closed  bool              // the server ends the connection after it
	short   bool              // the body ends before its Content-Length
}

// TestHTTP1Answers sends each request on a keep-alive connection, then a
// second request on the same connection, and checks both answers.
func TestHTTP1Answers(t *testing.T) {
	addr, _ := h1Serve(t, testHandler())
	for _, tc := range []struct {
		name, req string
		want      h1Answer
	}{
		{"GET with query", "GET /hello?q=x HTTP/1.1\r\nHost: h\r\n\r\n",
			h1Answer{status: 200, body: "hello x", headers: map[string]string{"Content-Length": "7", "Content-Type": "text/plain", "Connection": ""}}},
		{"declared length, written whole", "GET /declared HTTP/1.1\r\nHost: h\r\n\r\n",
			h1Answer{status: 200, body: strings.Repeat("p", 12000), headers: map[string]string{"Content-Length": "12000"}}},
		{"HEAD keeps the length, sends no body", "HEAD /declared HTTP/1.1\r\nHost: h\r\n\r\n",
			h1Answer{status: 200, body: "", headers: map[string]string{"Content-Length": "12000"}}},
		{"promised more than sent: closed", "GET /short HTTP/1.1\r\nHost: h\r\n\r\n",
			h1Answer{status: 200, body: "abc", closed: true, short: true}},
		{"large body without a length: chunked", "GET /big HTTP/1.1\r\nHost: h\r\n\r\n",
			h1Answer{status: 200, body: strings.Repeat("b", 100000), headers: map[string]string{"Transfer-Encoding": "chunked"}}},
		{"204 has no body and no length", "GET /empty HTTP/1.1\r\nHost: h\r\n\r\n",
			h1Answer{status: 204, headers: map[string]string{"Content-Length": ""}}},
		{"type sniffed when the handler sets none", "GET /sniff HTTP/1.1\r\nHost: h\r\n\r\n",
			h1Answer{status: 200, body: "<html><body>x</body></html>", headers: map[string]string{"Content-Type": "text/html; charset=utf-8"}}},
		{"handler's Connection: close", "GET /close HTTP/1.1\r\nHost: h\r\n\r\n",
			h1Answer{status: 200, body: "bye", closed: true, headers: map[string]string{"Connection": "close"}}},
		{"client's Connection: close", "GET /hello HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
			h1Answer{status: 200, body: "hello ", closed: true}},
		{"HTTP/1.0 closes", "GET /hello HTTP/1.0\r\n\r\n",
			h1Answer{status: 200, body: "hello ", closed: true}},
		{"HTTP/1.0 keep-alive", "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			h1Answer{status: 200, body: "hello ", headers: map[string]string{"Connection": "keep-alive"}}},
		{"headers in any case reach the handler", "GET /headers HTTP/1.1\r\nhost: h:1\r\nx-thing:  v  \r\nRANGE: bytes=0-1\r\n\r\n",
			h1Answer{status: 200, body: "h:1|v|bytes=0-1|GET|127.0.0.1:"}},
		{"a body is not read: closed after", "GET /hello HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
			h1Answer{status: 200, body: "hello ", closed: true}},
		{"404 from http.Error", "GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n",
			h1Answer{status: 404, body: "no such thing\n", headers: map[string]string{"X-Content-Type-Options": "nosniff"}}},
		{"no Host in HTTP/1.1", "GET /hello HTTP/1.1\r\n\r\n", h1Answer{status: 400, closed: true}},
		{"two Host headers", "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", h1Answer{status: 400, closed: true}},
		{"malformed request line", "GET/hello HTTP/1.1\r\nHost: h\r\n\r\n", h1Answer{status: 400, closed: true}},
		{"target not a path", "GET hello HTTP/1.1\r\nHost: h\r\n\r\n", h1Answer{status: 400, closed: true}},
		{"bad header line", "GET /hello HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n", h1Answer{status: 400, closed: true}},
		{"folded header", "GET /hello HTTP/1.1\r\nHost: h\r\n x\r\n\r\n", h1Answer{status: 400, closed: true}},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", h1Answer{status: 505, closed: true}},
		{"head too large", "GET /hello HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n", h1Answer{status: 431, closed: true}},
		{"long line under the limit", "GET /headers HTTP/1.1\r\nHost: h\r\nX-Thing: " + strings.Repeat("a", 6000) + "\r\n\r\n",
			h1Answer{status: 200, body: "h|" + strings.Repeat("a", 6000) + "||GET|127.0.0.1:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			br := bufio.NewReader(c)
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			method := strings.SplitN(tc.req, " ", 2)[0]
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.want.short && errors.Is(err, io.ErrUnexpectedEOF) {
				err = nil
			}
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if resp.StatusCode != tc.want.status {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tc.want.status, body)
			}
			if tc.want.status < 400 && !strings.HasPrefix(string(body), tc.want.body) || tc.want.status < 400 && tc.want.body != "" && len(body) < len(tc.want.body) {
				t.Errorf("body %.60q (%d bytes), want %.60q", body, len(body), tc.want.body)
			}
			if tc.want.status >= 400 && tc.want.body != "" && string(body) != tc.want.body {
				t.Errorf("body %q, want %q", body, tc.want.body)
			}
			for k, v := range tc.want.headers {
				got := resp.Header.Get(k)
				if k == "Transfer-Encoding" && len(resp.TransferEncoding) > 0 {
					got = resp.TransferEncoding[0]
				}
				if k == "Connection" && v == "close" && resp.Close {
					got = "close"
				}
				if got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
			if resp.Header.Get("Date") == "" {
				t.Error("no Date header")
			}
			// A second request tells whether the connection went on.
			_, werr := io.WriteString(c, "GET /hello?q=again HTTP/1.1\r\nHost: h\r\n\r\n")
			resp2, err := http.ReadResponse(br, nil)
			if tc.want.closed {
				if werr == nil && err == nil {
					t.Errorf("connection went on after an answer that should close it (status %d)", resp2.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("second request on the connection: %v", err)
			}
			b2, _ := io.ReadAll(resp2.Body)
			resp2.Body.Close()
			if string(b2) != "hello again" {
				t.Errorf("second answer %q", b2)
			}
		})
	}
}

// Pipelined requests are answered in order.
func TestHTTP1Pipelined(t *testing.T) {
	addr, _ := h1Serve(t, testHandler())
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET /hello?q=1 HTTP/1.1\r\nHost: h\r\n\r\nGET /hello?q=2 HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, want := range []string{"hello 1", "hello 2"} {
		_, b := readAnswer(t, br, "pipelined request")
		if b != want {
			t.Errorf("answer %q, want %q", b, want)
		}
	}
}

// A panic in the handler ends that connection only.
func TestHTTP1PanicEndsOneConnection(t *testing.T) {
	addr, _ := h1Serve(t, testHandler())
	other := dial(t, addr)

	c := dial(t, addr)
	_, _ = io.WriteString(c, "GET /panic HTTP/1.1\r\nHost: h\r\n\r\n")
	if n, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("panicking request: read %d, %v; want EOF", n, err)
	}

	_, _ = io.WriteString(other, "GET /hello?q=ok HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, b := readAnswer(t, bufio.NewReader(other), "other connection after the panic"); b != "hello ok" {
		t.Errorf("other connection: %q", b)
	}
}

// A hijacked connection is the handler's: the server neither answers on
// it nor closes it.
func TestHTTP1Hijack(t *testing.T) {
	addr, _ := h1Serve(t, testHandler())
	c := dial(t, addr)
	_, _ = io.WriteString(c, "GET /hijack HTTP/1.1\r\nHost: h\r\n\r\n")
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nraw" {
		t.Errorf("hijacked connection carried %q", b)
	}
}

// Shutdown answers a request read after it began, with Connection: close;
// closes idle connections; refuses new ones; and returns when all are gone.
func TestHTTP1ShutdownAnswersLateRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewHTTP1(testHandler(), HTTP1Config{Log: zerolog.Nop()})
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()

	idle := dial(t, addr)
	idleR := bufio.NewReader(idle)
	_, _ = io.WriteString(idle, "GET /hello HTTP/1.1\r\nHost: h\r\n\r\n")
	readAnswer(t, idleR, "first request")

	fresh := dial(t, addr)
	waitUntil(t, "both connections tracked", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 2
	})

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve after Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("a connection was accepted after Shutdown began")
	}
	if n, err := idleR.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection: read %d, %v; want EOF", n, err)
	}

	_, _ = io.WriteString(fresh, "GET /hello?q=late HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, b := readAnswer(t, bufio.NewReader(fresh), "request read after Shutdown began (want an answer)")
	if b != "hello late" || !resp.Close {
		t.Errorf("late answer %q, Connection: close %v", b, resp.Close)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return once every connection ended")
	}
}

// A connection that never sends its request holds Shutdown only until
// its context ends.
func TestHTTP1ShutdownDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewHTTP1(testHandler(), HTTP1Config{Log: zerolog.Nop()})
	go s.Serve(ln)
	c := dial(t, ln.Addr().String())
	_, _ = io.WriteString(c, "GET /hel") // half a request
	waitUntil(t, "the connection tracked", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the deadline", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the connection is still open after Shutdown's deadline")
	}
}

// dial connects to addr with every read and write bounded by 5 s; the
// connection closes when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// readAnswer reads one answer to a GET and its whole body; what names the
// request in a failure.
func readAnswer(t *testing.T, br *bufio.Reader, what string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: body: %v", what, err)
	}
	return resp, string(b)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// FuzzHTTP1Request feeds the request parser arbitrary bytes: it must
// return a request or an error, never panic, and a request it returns
// has a method token, a URL and a path.
func FuzzHTTP1Request(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /live/test/index.m3u8?_HLS_msn=3&_HLS_part=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: x\r\n\r\n",
		"HEAD /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n",
		"GET / HTTP/1.1\nHost: h\n\n",
	} {
		f.Add([]byte(seed))
	}
	s := NewHTTP1(http.NotFoundHandler(), HTTP1Config{Log: zerolog.Nop()})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &h1conn{s: s, br: bufio.NewReaderSize(bytes.NewReader(data), 4<<10)}
		for range 4 {
			r, status, err := c.readRequest()
			if err != nil {
				if status != 0 && (status < 400 || status > 599) {
					t.Fatalf("refusal status %d", status)
				}
				return
			}
			if r.Method == "" || !isToken([]byte(r.Method)) || r.URL == nil || r.Header == nil {
				t.Fatalf("request %+v", r)
			}
		}
	})
}

// BenchmarkHTTP1Request: one keep-alive request and its answer over
// loopback, through the media handler's route for a playlist that is not
// there (the path a viewer's request takes up to the muxer). The client
// reads raw bytes and allocates nothing, so allocs/op are the server's.
func BenchmarkHTTP1Request(b *testing.B) {
	is := ingest.NewServer(ingest.Config{Logger: zerolog.Nop()})
	defer is.Close()
	ms := New(Config{Log: zerolog.Nop()}, is)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := ms.HTTPServer()
	go hs.Serve(ln)
	defer hs.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /live/x/index.m3u8?_HLS_msn=5&_HLS_part=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: hlsload\r\n\r\n")
	buf := make([]byte, 4096)
	// The first answer gives the length of every answer (the Date header
	// is of constant length).
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		b.Fatal(err)
	}
	if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 404")) {
		b.Fatalf("answer %q", buf[:n])
	}
	size := n
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:size]); err != nil {
			b.Fatal(err)
		}
	}
}
