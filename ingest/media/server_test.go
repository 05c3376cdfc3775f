package media

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest"
)

// serve runs the media handler on a real listener on 127.0.0.1, over an
// ingest server with no streams.
func serve(t *testing.T, cfg Config) (string, *Server) {
	t.Helper()
	cfg.Log = zerolog.Nop()
	is := ingest.NewServer(ingest.Config{Logger: zerolog.Nop()})
	t.Cleanup(func() { is.Close() })
	s := New(cfg, is)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := s.HTTPServer()
	go hs.Serve(s.Listener(ln))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String(), s
}

// rawGet sends a request line as given, unnormalised, so that traversal
// attempts reach the router as a client would send them.
func rawGet(t *testing.T, addr, method, target string) (int, http.Header, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, method+" "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestRoutesAndBadInput(t *testing.T) {
	addr, _ := serve(t, Config{})
	for _, tc := range []struct {
		method, target string
		status         int
		body           string
	}{
		{"GET", "/", 200, ""},
		{"GET", "/live/test/", 200, "index.m3u8"},
		{"GET", "/live/test/index.m3u8", 404, "no live stream live/test"},
		{"GET", "/live/test/s1.0.m4s", 404, "no live stream"},
		{"GET", "/live/test.flv", 404, ""},
		{"GET", "/live/test/index.m3u8?_HLS_msn=abc", 400, "_HLS_msn"},
		{"GET", "/live/test/index.m3u8?_HLS_part=2", 400, "_HLS_part"},
		{"GET", "/live/test/index.m3u8?_HLS_msn=-1", 400, ""},
		{"GET", "/live/test/index.m3u8?_HLS_msn=1&_HLS_part=99999999999", 400, ""},
		{"GET", "/../etc/passwd", 400, "bad path"},
		{"GET", "/live/../../etc/passwd", 400, "bad path"},
		{"GET", "/live/%2e%2e/index.m3u8", 400, "bad path"},
		{"GET", "/./test/index.m3u8", 400, "bad path"},
		{"GET", "/live/test/../../x", 400, "bad path"},
		{"GET", "/live/test/pending", 404, "no such file"},
		{"GET", "/live/test/s1.m4s.tmp", 404, "no such file"},
		{"GET", "/live/a%00b/index.m3u8", 400, "bad stream name"},
		{"GET", "/a/b/c/d", 404, ""},
		{"POST", "/live/test/index.m3u8", 405, ""},
		{"GET", "/assets/x.js", 404, "web-deps.sh"},
	} {
		status, h, body := rawGet(t, addr, tc.method, tc.target)
		if status != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.target, status, body, tc.status, tc.body)
		}
		if h.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s %s: no CORS header", tc.method, tc.target)
		}
	}
	status, h, _ := rawGet(t, addr, "OPTIONS", "/live/test/index.m3u8")
	if status != 204 || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") {
		t.Errorf("preflight: %d %v", status, h)
	}
}

func TestPerClientLimit(t *testing.T) {
	addr, _ := serve(t, Config{MaxConnsPerClient: 2})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// Both held connections are accepted (a request on each answers), so
	// the third is over the limit.
	for _, c := range held {
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection: %v", err)
		}
		resp.Body.Close()
	}
	status, _, body := rawGet(t, addr, "GET", "/")
	if status != http.StatusTooManyRequests || !strings.Contains(body, "too many connections") {
		t.Fatalf("third connection: %d %q", status, body)
	}
	// A slot comes back when a connection closes.
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, _, _ = rawGet(t, addr, "GET", "/")
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never came back: %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBlockingLimit(t *testing.T) {
	addr, s := serve(t, Config{MaxBlocking: 1})
	s.blocking.Add(1) // one request already waits
	status, h, body := rawGet(t, addr, "GET", "/live/test/index.m3u8")
	if status != http.StatusNotFound {
		// Unknown streams are refused before taking a slot.
		t.Fatalf("unknown stream: %d", status)
	}
	rec := &recorder{h: http.Header{}}
	if s.wait(rec) || rec.status != http.StatusServiceUnavailable || rec.h.Get("Retry-After") == "" {
		t.Fatalf("over the limit: %d %v", rec.status, rec.h)
	}
	_, _ = h, body
}

type recorder struct {
	h      http.Header
	status int
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(s int)           { r.status = s }
