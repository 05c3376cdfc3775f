package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// call is one request a receiver got.
type call struct {
	Server string // the receiver's name
	Status int    // what it answered
	Header http.Header
	Body   []byte
	Fields map[string]any
}

func (c call) seq() string { s, _ := c.Fields["seq"].(string); return s }

// recorder keeps the calls of one or several receivers, in arrival order.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

// receiver starts an HTTP server on 127.0.0.1 that records every request
// in rec and answers with answer's status (200 if answer is nil).
func (rec *recorder) receiver(t *testing.T, name string, answer func(c call, r *http.Request) int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(rec.handler(t, name, answer))
	t.Cleanup(srv.Close)
	return srv
}

func (rec *recorder) handler(t *testing.T, name string, answer func(c call, r *http.Request) int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("%s: reading body: %v", name, err)
			return
		}
		c := call{Server: name, Status: http.StatusOK, Header: r.Header.Clone(), Body: body}
		if err := json.Unmarshal(body, &c.Fields); err != nil {
			t.Errorf("%s: body is not a JSON object: %v: %q", name, err, body)
		}
		if answer != nil {
			c.Status = answer(c, r)
		}
		rec.mu.Lock()
		rec.calls = append(rec.calls, c)
		rec.mu.Unlock()
		w.WriteHeader(c.Status)
	}
}

// accepted returns the calls answered 2xx.
func (rec *recorder) accepted() []call {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []call
	for _, c := range rec.calls {
		if ok(c.Status) {
			out = append(out, c)
		}
	}
	return out
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.calls)
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines that contain s.
func (l *lockedBuffer) lines(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.b.String()) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// newHooks makes a Hooks with short backoffs (10 ms doubling to 80 ms), a
// captured log, and Close at the end of the test. It does not Start it.
func newHooks(t *testing.T, cfg Config) (*Hooks, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	cfg.Log = zerolog.New(logs)
	h := New(cfg)
	h.backoffUnit, h.backoffMax = 10*time.Millisecond, 80*time.Millisecond
	t.Cleanup(h.Close)
	return h, logs
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// byLane groups accepted calls by lane ("app/key" of the body), keeping
// their order, as their "seq" fields.
func byLane(calls []call) map[string][]string {
	out := make(map[string][]string)
	for _, c := range calls {
		lane := c.Fields["app"].(string) + "/" + c.Fields["key"].(string)
		out[lane] = append(out[lane], c.seq())
	}
	return out
}

func seqOf(t *testing.T, body []byte) string {
	t.Helper()
	var f struct {
		Seq string `json:"seq"`
	}
	if err := json.Unmarshal(body, &f); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return f.Seq
}
