package webhook

import (
	"bytes"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mediad/mediad/state"
	"github.com/vmihailenco/msgpack/v5"
)

// blocking answers 200, but holds the request whose seq is "block" until
// release is closed, after saying so on entered.
func blocking(entered chan<- struct{}, release <-chan struct{}) func(call, *http.Request) int {
	return func(c call, r *http.Request) int {
		if c.seq() == "block" {
			entered <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		return http.StatusOK
	}
}

// handOver sends the outbox through msgpack, as it crosses an upgrade.
func handOver(t *testing.T, o state.Outbox) state.Outbox {
	t.Helper()
	b, err := msgpack.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.CheckMsgpack(b); err != nil {
		t.Fatal(err)
	}
	var got state.Outbox
	if err := msgpack.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	return got
}

// The old process pauses with an attempt in flight, which then succeeds:
// Export, after it, holds the rest only. The new process, configured with
// another URL, restores it and sends every notification once, with the
// Idempotency-Key and body the old one made, before what it queued itself;
// the old process sends nothing more.
func TestUpgradeHandsOverOnce(t *testing.T) {
	var rec recorder
	entered, release := make(chan struct{}, 1), make(chan struct{})
	oldURL := rec.receiver(t, "old", blocking(entered, release)).URL
	newURL := rec.receiver(t, "new", nil).URL
	urls := func(u string) map[Event]string {
		return map[Event]string{EventPublishDone: u, EventRecordDone: u, EventUpgrade: u}
	}

	old, oldLogs := newHooks(t, Config{URLs: urls(oldURL), ServerID: "old"})
	old.Start()
	old.Notify(EventPublishDone, Subject{App: "live", Key: "a"}, map[string]any{"seq": "block"})
	<-entered
	old.Pause()
	notifyLanes(old, EventRecordDone, []string{"live/a", "live/b"}, 0, 3)
	if s := old.Stats(); s.InFlight != 1 || s.Pending != 7 {
		t.Fatalf("paused: %+v", s)
	}

	start := time.Now()
	if o := old.Export(); len(o.Pending) != 7 {
		t.Errorf("Export with an attempt in flight: %d pending", len(o.Pending))
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Export with an attempt in flight took %v", d)
	}

	close(release)
	if err := old.WaitIdle(t.Context()); err != nil {
		t.Fatal(err)
	}
	exported := old.Export()
	if len(exported.Pending) != 6 || exported.Counts.Delivered != 1 {
		t.Fatalf("Export after the attempt succeeded: %d pending, counts %+v", len(exported.Pending), exported.Counts)
	}

	nw, _ := newHooks(t, Config{URLs: urls(newURL), ServerID: "new"})
	nw.Notify(EventRecordDone, Subject{App: "live", Key: "a"}, map[string]any{"seq": "live/a#3"})
	nw.Restore(handOver(t, exported))
	nw.Start()
	waitFor(t, "the new process's deliveries", 5*time.Second, func() bool { return nw.Stats().Pending == 0 })
	old.Close()

	calls := rec.accepted()
	var fromNew []call
	for _, c := range calls {
		if c.Server == "new" {
			fromNew = append(fromNew, c)
		} else if c.seq() != "block" {
			t.Errorf("old process sent %s after Pause", c.seq())
		}
	}
	got := byLane(fromNew)
	if want := seqs("live/a", 0, 4); !slices.Equal(got["live/a"], want) {
		t.Errorf("live/a: %v, want %v", got["live/a"], want)
	}
	if want := seqs("live/b", 0, 3); !slices.Equal(got["live/b"], want) {
		t.Errorf("live/b: %v, want %v", got["live/b"], want)
	}
	bySeq := make(map[string]call)
	for _, c := range fromNew {
		bySeq[c.seq()] = c
	}
	for _, n := range exported.Pending {
		c := bySeq[seqOf(t, n.Body)]
		if c.Header.Get("Idempotency-Key") != n.ID || !bytes.Equal(c.Body, n.Body) {
			t.Errorf("%s: sent with key %q and body %s; exported %q, %s", n.Lane, c.Header.Get("Idempotency-Key"), c.Body, n.ID, n.Body)
		}
		if c.Fields["server_id"] != "old" {
			t.Errorf("body rebuilt by the new process: %s", c.Body)
		}
	}
	if s := nw.Stats(); s.Delivered != 1+7 {
		t.Errorf("new stats (counters continue): %+v", s)
	}
	if len(oldLogs.lines("left to the next process")) != 1 {
		t.Errorf("no line about the notifications left to the next process")
	}
}

// An attempt in flight at Export that then succeeds is sent again by the
// new process, with the same Idempotency-Key and body; an upgrade rolled
// back resumes the old process's deliveries.
func TestUpgradeDuplicateAndRollback(t *testing.T) {
	var rec recorder
	entered, release := make(chan struct{}, 1), make(chan struct{})
	srv := rec.receiver(t, "r", blocking(entered, release))
	cfg := Config{URLs: map[Event]string{EventPlayDone: srv.URL}}

	old, oldLogs := newHooks(t, cfg)
	old.Start()
	old.Notify(EventPlayDone, subject, map[string]any{"seq": "block"})
	<-entered
	old.Pause()
	old.Notify(EventPlayDone, subject, map[string]any{"seq": "next"})
	exported := old.Export()
	close(release)
	waitFor(t, "the attempt in flight", 5*time.Second, func() bool { return old.Stats().Delivered == 1 })

	nw, _ := newHooks(t, cfg)
	nw.Restore(handOver(t, exported))
	nw.Start()
	waitFor(t, "the new process's deliveries", 5*time.Second, func() bool { return nw.Stats().Pending == 0 })
	calls := rec.accepted()
	if len(calls) != 3 || calls[0].seq() != "block" || calls[1].seq() != "block" || calls[2].seq() != "next" {
		t.Fatalf("calls %v", byLane(calls))
	}
	if calls[0].Header.Get("Idempotency-Key") != calls[1].Header.Get("Idempotency-Key") || !bytes.Equal(calls[0].Body, calls[1].Body) {
		t.Errorf("duplicate differs:\n%v %s\n%v %s", calls[0].Header, calls[0].Body, calls[1].Header, calls[1].Body)
	}

	// Rollback: the old process was paused with "next" pending.
	if s := old.Stats(); s.Pending != 1 {
		t.Fatalf("old: %+v", s)
	}
	old.Close()
	if len(oldLogs.lines("left to the next process")) != 1 {
		t.Errorf("no line about the notification left to the next process")
	}

	again, _ := newHooks(t, cfg)
	again.Start()
	again.Pause()
	again.Notify(EventPlayDone, subject, map[string]any{"seq": "after rollback"})
	_ = again.Export()
	again.Resume()
	waitFor(t, "delivery after Resume", 5*time.Second, func() bool { return again.Stats().Delivered == 1 })
}

// Restore drops what the new configuration no longer calls, and what is
// past its retry bound, with a line each, and sends the rest to today's
// URL.
func TestRestoreDrops(t *testing.T) {
	var rec recorder
	srv := rec.receiver(t, "r", nil)
	now := time.Now().UnixNano()
	o := state.Outbox{Pending: []state.Notification{
		{ID: "1", Event: string(EventPlayDone), Lane: "live/a", Body: []byte(`{"seq":"1"}`), Created: now},
		{ID: "2", Event: string(EventPublishDone), Lane: "live/a", Body: []byte(`{"seq":"2"}`), Created: now - int64(2*time.Hour)},
		{ID: "3", Event: string(EventPublishDone), Lane: "live/a", Body: []byte(`{"seq":"3"}`), Created: now, Attempts: 4},
		{ID: "4", Event: string(EventPublish), Lane: "live/a", Body: []byte(`{"seq":"4"}`), Created: now},
	}}
	h, logs := newHooks(t, Config{URLs: map[Event]string{EventPublishDone: srv.URL}})
	h.Restore(o)
	h.Restore(o) // once is enough: nothing is doubled
	if s := h.Stats(); s.Pending != 1 || s.Dropped != 6 {
		t.Errorf("stats %+v", s)
	}
	for _, s := range []string{"no longer configured", "past the retry bound", "invalid"} {
		if len(logs.lines(s)) != 2 {
			t.Errorf("want a line %q per Restore:\n%s", s, logs.lines(""))
		}
	}
	h.Start()
	waitFor(t, "delivery", 5*time.Second, func() bool { return h.Stats().Delivered == 1 })
	if c := rec.accepted(); len(c) != 1 || c[0].seq() != "3" || c[0].Header.Get("Idempotency-Key") != "3" {
		t.Errorf("calls %+v", c)
	}
}
