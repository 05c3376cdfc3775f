package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var subject = Subject{App: "live", Key: "cam1", Query: "token=abc", Addr: "10.0.0.7:51234", StreamID: 42}

// A 2xx allows, and the request carries the documented headers and body.
func TestDecideAllows(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusNoContent} {
		var rec recorder
		srv := rec.receiver(t, "r", func(call, *http.Request) int { return status })
		h, _ := newHooks(t, Config{URLs: map[Event]string{EventPublish: srv.URL, EventPlay: srv.URL}, ServerID: "edge-1"})
		before := time.Now()
		for _, ev := range []Event{EventPublish, EventPlay} {
			allowed, err := h.Decide(t.Context(), ev, subject)
			if !allowed || err != nil {
				t.Fatalf("%d: Decide(%s) = %v, %v; want allowed", status, ev, allowed, err)
			}
		}
		calls := rec.accepted()
		if len(calls) != 2 {
			t.Fatalf("%d: receiver got %d calls, want 2", status, len(calls))
		}
		for i, c := range calls {
			for k, want := range map[string]string{"Content-Type": "application/json", "User-Agent": "mediad"} {
				if got := c.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if c.Header.Get("X-Mediad-Signature") != "" {
				t.Errorf("signature header without a secret")
			}
			id := c.Header.Get("Idempotency-Key")
			if id == "" || c.Fields["id"] != id {
				t.Errorf("Idempotency-Key %q, body id %v", id, c.Fields["id"])
			}
			want := map[string]any{"event": string([]Event{EventPublish, EventPlay}[i]), "app": "live", "key": "cam1",
				"query": "token=abc", "addr": "10.0.0.7:51234", "stream_id": 42.0, "server_id": "edge-1"}
			for k, v := range want {
				if c.Fields[k] != v {
					t.Errorf("body %s = %v, want %v", k, c.Fields[k], v)
				}
			}
			ts, _ := c.Fields["time"].(string)
			at, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil || !strings.HasSuffix(ts, "Z") || len(ts) != len("2006-01-02T15:04:05.000Z") {
				t.Errorf("time %q: want RFC 3339 UTC with ms (%v)", ts, err)
			}
			if at.Before(before.Truncate(time.Millisecond)) || at.After(time.Now()) {
				t.Errorf("time %v is not when Decide ran", at)
			}
		}
		if calls[0].Header.Get("Idempotency-Key") == calls[1].Header.Get("Idempotency-Key") {
			t.Errorf("two decisions share an Idempotency-Key")
		}
		if s := h.Stats(); s.DecideAllowed != 2 || s.DecideRefused != 0 || s.DecideErrors != 0 {
			t.Errorf("stats %+v", s)
		}
	}
}

// Any answer other than 2xx refuses, FailOpen or not, and a redirect is not
// followed.
func TestDecideRefuses(t *testing.T) {
	var hits atomic.Int64
	loop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
	})
	redirect := httptest.NewServer(loop)
	t.Cleanup(redirect.Close)
	for _, status := range []int{http.StatusForbidden, http.StatusInternalServerError, http.StatusFound} {
		for _, failOpen := range []bool{false, true} {
			u := redirect.URL
			if status != http.StatusFound {
				var rec recorder
				u = rec.receiver(t, "r", func(call, *http.Request) int { return status }).URL
			}
			hits.Store(0)
			h, _ := newHooks(t, Config{URLs: map[Event]string{EventPublish: u}, FailOpen: failOpen})
			allowed, err := h.Decide(t.Context(), EventPublish, subject)
			var se *StatusError
			if allowed || !errors.As(err, &se) || se.Status != status {
				t.Fatalf("%d (fail open %t): Decide = %v, %v; want refused with the status", status, failOpen, allowed, err)
			}
			if status == http.StatusFound && hits.Load() != 1 {
				t.Errorf("redirect followed: %d requests", hits.Load())
			}
			if s := h.Stats(); s.DecideRefused != 1 || s.DecideAllowed != 0 {
				t.Errorf("stats %+v", s)
			}
		}
	}
}

// No answer within Timeout refuses, or allows with FailOpen, and Decide
// returns about when Timeout runs out; a receiver that is not there at all
// is treated the same; a caller that gives up is refused.
func TestDecideNoAnswer(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices the client going only once the body is read.
		if _, err := io.ReadAll(r.Body); err != nil {
			t.Errorf("reading body: %v", err)
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) }) // runs before hang.Close

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/hook"
	ln.Close()

	const timeout = 300 * time.Millisecond
	for _, failOpen := range []bool{false, true} {
		h, _ := newHooks(t, Config{URLs: map[Event]string{EventPlay: hang.URL}, Timeout: timeout, FailOpen: failOpen})
		start := time.Now()
		allowed, err := h.Decide(t.Context(), EventPlay, subject)
		elapsed := time.Since(start)
		if allowed != failOpen || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("hanging receiver, fail open %t: Decide = %v, %v", failOpen, allowed, err)
		}
		if elapsed < timeout || elapsed > timeout+time.Second {
			t.Errorf("Decide returned after %v with a %v timeout", elapsed, timeout)
		}

		h2, _ := newHooks(t, Config{URLs: map[Event]string{EventPlay: down}, Timeout: timeout, FailOpen: failOpen})
		allowed, err = h2.Decide(t.Context(), EventPlay, subject)
		if allowed != failOpen || err == nil {
			t.Errorf("receiver down, fail open %t: Decide = %v, %v", failOpen, allowed, err)
		}

		ctx, cancel := context.WithTimeout(t.Context(), timeout/3)
		allowed, err = h.Decide(ctx, EventPlay, subject)
		cancel()
		if allowed || err == nil {
			t.Errorf("caller gave up, fail open %t: Decide = %v, %v; want refused", failOpen, allowed, err)
		}
		if s := h.Stats(); s.DecideErrors != 2 || s.DecideAllowed != 0 || s.DecideRefused != 0 {
			t.Errorf("stats %+v", s)
		}
	}
}

// A receiver that answers with an endless body neither holds Decide nor
// makes it allocate the body: the connection is dropped after 64 KiB.
func TestDecideHugeAnswer(t *testing.T) {
	for _, status := range []int{http.StatusOK, http.StatusForbidden} {
		written := make(chan int64, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			chunk := make([]byte, 32<<10)
			var n int64
			for n < 4<<30 {
				k, err := w.Write(chunk)
				n += int64(k)
				if err != nil {
					break
				}
			}
			written <- n
		}))
		t.Cleanup(srv.Close)
		h, _ := newHooks(t, Config{URLs: map[Event]string{EventPublish: srv.URL}, Timeout: 10 * time.Second})

		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		start := time.Now()
		allowed, err := h.Decide(t.Context(), EventPublish, subject)
		elapsed := time.Since(start)
		runtime.ReadMemStats(&m1)
		if allowed != (status == http.StatusOK) {
			t.Errorf("%d: Decide = %v, %v", status, allowed, err)
		}
		if elapsed > 2*time.Second {
			t.Errorf("%d: Decide took %v", status, elapsed)
		}
		select {
		case n := <-written:
			if n >= 64<<20 {
				t.Errorf("%d: the receiver wrote %d bytes before the connection dropped", status, n)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d: the receiver is still writing: connection not dropped", status)
		}
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 16<<20 {
			t.Errorf("%d: Decide allocated %d bytes", status, alloc)
		}
	}
}

// With a secret, the signature header is the HMAC-SHA256 of the exact body,
// for decisions and notifications.
func TestSignature(t *testing.T) {
	const secret = "s3cret"
	var rec recorder
	srv := rec.receiver(t, "r", nil)
	h, _ := newHooks(t, Config{Secret: secret, URLs: map[Event]string{EventPublish: srv.URL, EventPublishDone: srv.URL}})
	h.Start()
	if allowed, err := h.Decide(t.Context(), EventPublish, subject); !allowed {
		t.Fatalf("Decide: %v", err)
	}
	h.Notify(EventPublishDone, subject, map[string]any{"seq": "1"})
	waitFor(t, "the notification", 5*time.Second, func() bool { return rec.count() == 2 })
	for _, c := range rec.accepted() {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(c.Body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		got := c.Header.Get("X-Mediad-Signature")
		if !hmac.Equal([]byte(got), []byte(want)) {
			t.Errorf("%v: signature %q, want %q", c.Fields["event"], got, want)
		}
	}
}

// Without URLs a Hooks allows every decision, queues nothing and starts no
// sender; a notification event is not a decision.
func TestNoURLs(t *testing.T) {
	h, _ := newHooks(t, Config{})
	h.Start()
	if allowed, err := h.Decide(t.Context(), EventPublish, subject); !allowed || err != nil {
		t.Errorf("Decide = %v, %v", allowed, err)
	}
	if allowed, err := h.Decide(t.Context(), EventPublishDone, subject); allowed || !errors.Is(err, ErrNotDecision) {
		t.Errorf("Decide(on_publish_done) = %v, %v", allowed, err)
	}
	h.Notify(EventPublishDone, subject, nil)
	if s := h.Stats(); s != (Stats{}) {
		t.Errorf("stats %+v", s)
	}
	if len(h.dests) != 0 {
		t.Errorf("%d destinations", len(h.dests))
	}
}

func TestValidateURL(t *testing.T) {
	for raw, good := range map[string]bool{
		"http://127.0.0.1:8080/hook": true,
		"https://hooks.example/x?y":  true,
		"ftp://example/x":            false,
		"/relative":                  false,
		"http://":                    false,
		"example.com/hook":           false,
		"http://[::1":                false,
	} {
		if err := ValidateURL(raw); (err == nil) != good {
			t.Errorf("ValidateURL(%q) = %v", raw, err)
		}
	}
}
