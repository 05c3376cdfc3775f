package webhook

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediad/mediad/state"
)

func seqs(lane string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s#%d", lane, i))
	}
	return out
}

// notifyLanes notifies ev for each lane, seq from to to, interleaved.
func notifyLanes(h *Hooks, ev Event, lanes []string, from, to int) {
	for i := from; i < to; i++ {
		for _, l := range lanes {
			app, key, _ := strings.Cut(l, "/")
			h.Notify(ev, Subject{App: app, Key: key}, map[string]any{"seq": fmt.Sprintf("%s#%d", l, i)})
		}
	}
}

// checkExactlyOnce checks that calls hold every lane's notifications once
// each, in order, and that an Idempotency-Key is the body's id and names
// one notification.
func checkExactlyOnce(t *testing.T, calls []call, lanes []string, n int) {
	t.Helper()
	got := byLane(calls)
	for _, l := range lanes {
		if want := seqs(l, 0, n); !slices.Equal(got[l], want) {
			t.Errorf("lane %s got\n%v\nwant\n%v", l, got[l], want)
		}
	}
	if len(calls) != len(lanes)*n {
		t.Errorf("%d calls accepted, want %d", len(calls), len(lanes)*n)
	}
	ids := make(map[string]bool)
	for _, c := range calls {
		id := c.Header.Get("Idempotency-Key")
		if id == "" || id != c.Fields["id"] || ids[id] {
			t.Errorf("call %s: Idempotency-Key %q, body id %v, seen before %t", c.seq(), id, c.Fields["id"], ids[id])
		}
		ids[id] = true
	}
}

// Several lanes interleaved, several senders, a receiver answering at
// uneven speed: each lane arrives in order, every notification once, the
// event's fields merged at top level without overriding the subject.
func TestNotifyOrderPerLane(t *testing.T) {
	var rec recorder
	srv := rec.receiver(t, "r", func(call, *http.Request) int {
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		return http.StatusNoContent
	})
	h, _ := newHooks(t, Config{URLs: map[Event]string{EventPublishDone: srv.URL}, Senders: 4, ServerID: "edge-1"})
	h.Start()
	lanes := []string{"live/a", "live/b", "live/c", "other/a", "other/b"}
	const n = 40
	notifyLanes(h, EventPublishDone, lanes, 0, n)
	h.Notify(EventPublishDone, Subject{App: "live", Key: "z"}, map[string]any{"seq": "live/z#0", "app": "evil", "event": "evil"})
	lanes = append(lanes, "live/z")
	waitFor(t, "every notification", 10*time.Second, func() bool { return h.Stats().Pending == 0 })
	calls := rec.accepted()
	i := slices.IndexFunc(calls, func(c call) bool { return c.seq() == "live/z#0" })
	if i < 0 {
		t.Fatal("live/z#0 not delivered")
	}
	if z := calls[i]; z.Fields["app"] != "live" || z.Fields["event"] != "on_publish_done" || z.Fields["server_id"] != "edge-1" {
		t.Errorf("merged body %s", z.Body)
	}
	checkExactlyOnce(t, slices.Delete(calls, i, i+1), lanes[:len(lanes)-1], n)
	if s := h.Stats(); s.Delivered != uint64(len(calls)) || s.Retries != 0 || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

// A receiver that is down (connection refused), then up but answering 503
// for a while, then well, gets everything afterwards, in order and once.
func TestReceiverDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	var rec recorder
	var unavailable atomic.Int64
	unavailable.Store(15)
	srv := httptest.NewUnstartedServer(rec.handler(t, "r", func(call, *http.Request) int {
		if unavailable.Add(-1) >= 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}))
	t.Cleanup(srv.Close)

	h, logs := newHooks(t, Config{URLs: map[Event]string{EventPlayDone: "http://" + addr + "/hook", EventRecordDone: "http://" + addr + "/hook"}})
	h.Start()
	// live/a and live/b get on_play_done while the receiver is down, then
	// on_record_done with live/c: lanes mix events to one URL.
	notifyLanes(h, EventPlayDone, []string{"live/a", "live/b"}, 0, 5)
	waitFor(t, "failed attempts", 5*time.Second, func() bool { return h.Stats().Retries >= 6 })
	notifyLanes(h, EventRecordDone, []string{"live/a", "live/b", "live/c"}, 5, 10)

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	srv.Listener = ln
	srv.Start()
	waitFor(t, "delivery after the receiver came back", 10*time.Second, func() bool { return h.Stats().Pending == 0 })
	calls := rec.accepted()
	got := byLane(calls)
	for l, want := range map[string][]string{"live/a": seqs("live/a", 0, 10), "live/b": seqs("live/b", 0, 10), "live/c": seqs("live/c", 5, 10)} {
		if !slices.Equal(got[l], want) {
			t.Errorf("lane %s got %v, want %v", l, got[l], want)
		}
	}
	ids := make(map[string]bool)
	for _, c := range calls {
		if ids[c.Header.Get("Idempotency-Key")] {
			t.Errorf("%s delivered twice", c.seq())
		}
		ids[c.Header.Get("Idempotency-Key")] = true
	}
	if s := h.Stats(); s.Delivered != uint64(len(calls)) || s.Dropped != 0 || s.Retries < 6+15 {
		t.Errorf("stats %+v", s)
	}
	// A line when the receiver fails and one when it is back, not one per
	// failed attempt; answers of concurrent senders can cross, so a few.
	failing, back := len(logs.lines("retrying")), len(logs.lines("accepting notifications again"))
	if failing < 1 || failing > 4 || back != failing {
		t.Errorf("%d lines for a failing receiver, %d for it being back; log:\n%s", failing, back, logs.lines(""))
	}
}

// A notification not delivered within RetryFor of its creation is dropped,
// counted and logged once, and does not hold its lane any longer.
func TestRetryForDrops(t *testing.T) {
	var rec recorder
	var fail atomic.Bool
	fail.Store(true)
	srv := rec.receiver(t, "r", func(call, *http.Request) int {
		if fail.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	const retryFor = 300 * time.Millisecond
	h, logs := newHooks(t, Config{URLs: map[Event]string{EventUpgrade: srv.URL, EventPublishDone: srv.URL}, RetryFor: retryFor})
	h.Start()
	start := time.Now()
	h.Notify(EventUpgrade, Subject{}, map[string]any{"seq": "u1", "outcome": "success"})
	h.Notify(EventPublishDone, subject, map[string]any{"seq": "p1"})
	h.Notify(EventPublishDone, subject, map[string]any{"seq": "p2"})
	waitFor(t, "the drops", 5*time.Second, func() bool { return h.Stats().Dropped == 3 })
	if elapsed := time.Since(start); elapsed < retryFor {
		t.Errorf("dropped after %v, before RetryFor %v", elapsed, retryFor)
	}
	if s := h.Stats(); s.Pending != 0 || s.Retries == 0 || s.Delivered != 0 {
		t.Errorf("stats %+v", s)
	}
	if lines := logs.lines("not delivered within the retry bound"); len(lines) != 3 || !strings.Contains(lines[0], `"level":"error"`) {
		t.Errorf("drop log lines:\n%v", lines)
	}
	fail.Store(false)
	h.Notify(EventPublishDone, subject, map[string]any{"seq": "p3"})
	waitFor(t, "a later notification", 5*time.Second, func() bool { return h.Stats().Delivered == 1 })
}

// Past MaxPending the oldest notification goes, counted, with one log line
// for the burst; the rest is delivered once a sender starts.
func TestMaxPending(t *testing.T) {
	var rec recorder
	srv := rec.receiver(t, "r", nil)
	h, logs := newHooks(t, Config{URLs: map[Event]string{EventPlayDone: srv.URL, EventRecordDone: srv.URL}, MaxPending: 3})
	h.Notify(EventPlayDone, subject, map[string]any{"seq": "0"})
	h.Notify(EventRecordDone, Subject{App: "live", Key: "other"}, map[string]any{"seq": "1"})
	for i := 2; i < 6; i++ {
		h.Notify(EventPlayDone, subject, map[string]any{"seq": fmt.Sprint(i)})
	}
	if s := h.Stats(); s.Pending != 3 || s.Dropped != 3 {
		t.Errorf("stats %+v", s)
	}
	var left []string
	for _, n := range h.Export().Pending {
		left = append(left, n.Lane+" "+seqOf(t, n.Body))
	}
	if want := []string{"live/cam1 3", "live/cam1 4", "live/cam1 5"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	if lines := logs.lines("outbox full"); len(lines) != 1 {
		t.Errorf("overflow log lines:\n%v", lines)
	}
	h.Start()
	waitFor(t, "delivery", 5*time.Second, func() bool { return h.Stats().Delivered == 3 })
	if got := byLane(rec.accepted())["live/cam1"]; !slices.Equal(got, []string{"3", "4", "5"}) {
		t.Errorf("delivered %v", got)
	}
}

// Close interrupts an attempt in flight at once, keeps the notification for
// Export, and says so in the log.
func TestCloseInterrupts(t *testing.T) {
	entered := make(chan struct{}, 1)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices the client going only once the body is read.
		if _, err := io.ReadAll(r.Body); err != nil {
			t.Errorf("reading body: %v", err)
		}
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	h, logs := newHooks(t, Config{URLs: map[Event]string{EventPublishDone: hang.URL}, Timeout: 10 * time.Second})
	h.Start()
	h.Notify(EventPublishDone, subject, nil)
	<-entered
	start := time.Now()
	h.Close()
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Close took %v", elapsed)
	}
	o := h.Export()
	if len(o.Pending) != 1 || o.Pending[0].Attempts != 0 || o.Counts.Retries != 0 {
		t.Errorf("after Close: %+v", o)
	}
	if len(logs.lines("not delivered")) != 1 {
		t.Errorf("no line about the pending notification")
	}
	h.Start() // after Close: nothing
	h.Close()
}

// on_record_done carries the segment, on_upgrade the verdict in a lane of
// its own, in order.
func TestEventFields(t *testing.T) {
	var rec recorder
	srv := rec.receiver(t, "r", nil)
	h, _ := newHooks(t, Config{URLs: map[Event]string{EventRecordDone: srv.URL, EventUpgrade: srv.URL}})
	h.Start()
	start := time.Date(2026, 7, 1, 13, 50, 0, 0, time.FixedZone("CEST", 2*3600))
	h.Notify(EventRecordDone, subject, RecordFields("/rec/live/cam1/0001.flv", start, 600500*time.Millisecond))
	h.Notify(EventUpgrade, Subject{}, UpgradeFields(state.Upgrade{Outcome: "failed", Error: "new process exited", NewVersion: "v2"}))
	h.Notify(EventUpgrade, Subject{}, UpgradeFields(state.Upgrade{Outcome: "success", SessionsMoved: 12}))
	waitFor(t, "delivery", 5*time.Second, func() bool { return h.Stats().Delivered == 3 })
	var outcomes []any
	for _, c := range rec.accepted() {
		switch c.Fields["event"] {
		case string(EventRecordDone):
			if c.Fields["path"] != "/rec/live/cam1/0001.flv" || c.Fields["start"] != "2026-07-01T11:50:00.000Z" || c.Fields["duration_s"] != 600.5 {
				t.Errorf("record body %s", c.Body)
			}
		case string(EventUpgrade):
			outcomes = append(outcomes, c.Fields["outcome"])
		}
	}
	if !slices.Equal(outcomes, []any{"failed", "success"}) {
		t.Errorf("verdicts %v", outcomes)
	}
}
