package upgrade

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/state"
)

// fakeOld is the new process's end of the socket with the old process
// behind it: it sends plan and items, and answers Prepared with verdict.
type fakeOld struct {
	plan     handoff.Plan
	items    []handoff.Item
	planErr  error
	midErr   error // ReadBatches's error after the first item
	verdict  bool  // Commit, or Abort
	lost     error // WaitCommit's error: the old process went away
	hello    *handoff.Hello
	prepared int
	rejected string
	report   *handoff.Report
	closed   int
	// syncAfter, if not zero, is the number of items after which a Sync
	// comes; synced says it was answered.
	syncAfter int
	synced    bool
}

func (o *fakeOld) SendHello(h handoff.Hello) error { o.hello = &h; return nil }

func (o *fakeOld) ReadPlan(time.Time) (handoff.Plan, error) { return o.plan, o.planErr }

// ReadBatches hands the items over one at a time, so that each reaches the
// restore before the next is read; midErr, if set, ends the read after
// the first.
func (o *fakeOld) ReadBatches(_ time.Time, each func([]handoff.Item) error, built func() error) error {
	for i := range o.items {
		if i == 1 && o.midErr != nil {
			return o.midErr
		}
		if err := each(o.items[i : i+1 : i+1]); err != nil {
			return err
		}
		if i+1 == o.syncAfter && built != nil {
			if err := built(); err != nil {
				return err
			}
			o.synced = true
		}
	}
	return nil
}

func (o *fakeOld) SendReject(reason string) error { o.rejected = reason; return nil }

func (o *fakeOld) SendPrepared(n int) error { o.prepared = n; return nil }

func (o *fakeOld) WaitCommit(time.Time) (bool, error) {
	if o.lost != nil {
		return false, o.lost
	}
	if !o.verdict {
		return false, &handoff.AbortedError{Reason: "new process failed preparing sessions"}
	}
	return true, nil
}

func (o *fakeOld) SendReport(r handoff.Report) error { o.report = &r; return nil }

func (o *fakeOld) Close() error { o.closed++; return nil }

// fakeRestorer rebuilds nothing, and counts. Like ingest's, it owns what
// it was given: Abandon closes it; a failed Finish leaves it to the test.
type fakeRestorer struct {
	err       error
	got       []handoff.Item
	discarded int
	abandoned int
}

func (r *fakeRestorer) Begin() Restoring { return fakeRestoring{r} }

type fakeRestoring struct{ r *fakeRestorer }

func (f fakeRestoring) Add(items []handoff.Item) { f.r.got = append(f.r.got, items...) }

func (f fakeRestoring) Built() {}

func (f fakeRestoring) Finish() (Restored, error) {
	if f.r.err != nil {
		return nil, f.r.err
	}
	return fakeRestored(f), nil
}

func (f fakeRestoring) Abandon() {
	f.r.abandoned++
	handoff.CloseItems(f.r.got)
}

type fakeRestored struct{ r *fakeRestorer }

func (f fakeRestored) Len() int { return len(f.r.got) }
func (f fakeRestored) Discard() { f.r.discarded++ }

// devNull is an open file for an item to own; closed reports whether the
// engine closed it.
func devNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func isClosed(f *os.File) bool {
	_, err := f.Stat()
	return errors.Is(err, os.ErrClosed)
}

func oldWith(t *testing.T, extra ...handoff.Item) (*fakeOld, *os.File) {
	t.Helper()
	conn := devNull(t)
	proc, err := state.Encode(state.KindProcess, state.Process{Generation: 7, Current: Verdict{OldPID: 10, Started: time.Now().Add(-time.Second)}.State()})
	if err != nil {
		t.Fatal(err)
	}
	items := []handoff.Item{
		{Envelope: state.Envelope{Kind: state.KindPlayer, Version: 3}, Files: []*os.File{conn}},
		{Envelope: proc},
	}
	items = append(items, extra...)
	return &fakeOld{plan: handoff.Plan{Version: 3, Items: len(items), FDs: 1}, items: items, verdict: true}, conn
}

func TestTakeOver(t *testing.T) {
	old, _ := oldWith(t)
	sessions := &fakeRestorer{}
	c, err := TakeOver(ChildConfig{Conn: old, Sessions: sessions, Convert: convert, ReadsMin: 1, ReadsMax: 3, Build: "next"})
	if err != nil {
		t.Fatal(err)
	}
	// The Hello is LocalHello's: this process, its limit and descriptors.
	if h := old.hello; h == nil || h.PID != os.Getpid() || h.Build != "next" || h.ReadsMin != 1 || h.ReadsMax != 3 || h.NoFileLimit == 0 || h.OpenFDs == 0 {
		t.Errorf("hello %+v", old.hello)
	}
	// The process envelope is taken out, and counted as prepared.
	if len(sessions.got) != 1 || sessions.got[0].Envelope.Version != state.Version || old.prepared != 2 {
		t.Errorf("restored %+v, prepared %d", sessions.got, old.prepared)
	}
	if c.Process == nil || c.Process.Generation != 7 || c.Version != 3 || old.closed != 0 {
		t.Errorf("child %+v, socket closed %d times", c, old.closed)
	}

	stalls := []time.Duration{9 * time.Millisecond, time.Millisecond, 4 * time.Millisecond}
	got, rep := c.Report(context.Background(), func() []time.Duration { return stalls }, 3)
	if len(got) != 3 || rep.Stalls != 3 || rep.StallP50MS != 4 || rep.WorstStallMS != 9 || old.report == nil || *old.report != rep || old.closed != 1 {
		t.Errorf("report %+v from %v, sent %+v, socket closed %d times", rep, got, old.report, old.closed)
	}
	v, ok := c.Verdict("next", rep, time.Now())
	if !ok || v.Outcome != Success || v.OldPID != 10 || v.NewPID != os.Getpid() || v.NewVersion != "next" || v.DurationMS < 1000 || v.Stalls != 3 {
		t.Errorf("verdict %+v, %v", v, ok)
	}
}

// The heap warms alongside the hello and the bases: TakeOver waits for
// Prime once, after the bases and before it answers the Sync, so that the
// park starts only then; from an old process that sends no bases, before
// it takes the first session.
func TestTakeOverPrimesBeforeThePark(t *testing.T) {
	for _, tc := range []struct {
		name      string
		items     []handoff.Item
		syncAfter int
		primedAt  int // items taken when Prime ran
	}{
		{"bases ahead, then the park", append(aheadItems(), sessionItems()...), 2, 2},
		{"the park only", sessionItems(), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := &fakeOld{plan: handoff.Plan{Version: state.Version, Open: true}, items: tc.items, verdict: true, syncAfter: tc.syncAfter}
			sessions := &fakeRestorer{}
			primes, primedAt, syncedFirst := 0, -1, false
			prime := func() {
				primes++
				primedAt, syncedFirst = len(sessions.got), old.synced
			}
			if _, err := TakeOver(ChildConfig{Conn: old, Sessions: sessions, Convert: convert, ReadsMin: 1, ReadsMax: state.Version, Build: "next", Prime: prime}); err != nil {
				t.Fatal(err)
			}
			if primes != 1 || primedAt != tc.primedAt || syncedFirst {
				t.Errorf("primed %d times, with %d of %d items taken (want once, with %d), after the Sync: %v", primes, primedAt, len(tc.items), tc.primedAt, syncedFirst)
			}
			if len(sessions.got) != len(tc.items) || old.synced != (tc.syncAfter > 0) {
				t.Errorf("restored %d of %d items, synced %v", len(sessions.got), len(tc.items), old.synced)
			}
		})
	}
}

// Report does not wait past its context for readers that never read.
func TestReportStops(t *testing.T) {
	old, _ := oldWith(t)
	c, err := TakeOver(ChildConfig{Conn: old, Sessions: &fakeRestorer{}, Convert: convert, ReadsMin: 1, ReadsMax: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, rep := c.Report(ctx, func() []time.Duration { return nil }, 5); rep.Stalls != 0 || old.report == nil {
		t.Errorf("report %+v, sent %v", rep, old.report)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Report took %v after its context ended", d)
	}
}

// Every way the new process gives up before the commit: the old process is
// told why where it still listens, nothing received stays open, and
// nothing restored survives.
func TestTakeOverFails(t *testing.T) {
	rows := []struct {
		name      string
		edit      func(*fakeOld, *fakeRestorer)
		extra     []handoff.Item
		errHas    string
		rejected  string // by prefix; "" none
		discarded int
		abandoned int  // the restore, before Finish
		closed    bool // the received connection is closed
	}{
		{
			name: "refused at hello", edit: func(o *fakeOld, _ *fakeRestorer) {
				o.planErr = &handoff.RefusedError{Reason: "no common state version"}
			},
			errHas: "no common state version",
		},
		{
			name: "state that does not migrate", extra: []handoff.Item{{Envelope: state.Envelope{Kind: "unmigratable"}}},
			errHas: "sessions of state v3: migrate: no step for unmigratable", rejected: "migrate: no step", abandoned: 1, closed: true,
		},
		{
			name: "two process envelopes", edit: func(o *fakeOld, _ *fakeRestorer) { o.items = append(o.items, o.items[1]) },
			errHas: "two process envelopes", rejected: "two process envelopes", abandoned: 1, closed: true,
		},
		{
			// The session that arrived first was being rebuilt already.
			name: "aborted while the sessions arrive", edit: func(o *fakeOld, _ *fakeRestorer) {
				o.midErr = &handoff.AbortedError{Reason: "upgrade deadline passed"}
			},
			errHas: "upgrade deadline passed", abandoned: 1, closed: true,
		},
		{
			name: "old process gone while the sessions arrive", edit: func(o *fakeOld, _ *fakeRestorer) { o.midErr = handoff.ErrPeerClosed },
			errHas: "peer closed", abandoned: 1, closed: true,
		},
		{
			name: "restore fails", edit: func(_ *fakeOld, r *fakeRestorer) { r.err = errors.New("restore player session: bad queue") },
			errHas: "bad queue", rejected: "restore player session",
		},
		{
			name: "aborted", edit: func(o *fakeOld, _ *fakeRestorer) { o.verdict = false },
			errHas: "new process failed preparing sessions", discarded: 1,
		},
		{
			name: "old process gone", edit: func(o *fakeOld, _ *fakeRestorer) { o.lost = handoff.ErrPeerClosed },
			errHas: "peer closed", discarded: 1,
		},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			old, conn := oldWith(t, r.extra...)
			sessions := &fakeRestorer{}
			if r.edit != nil {
				r.edit(old, sessions)
			}
			c, err := TakeOver(ChildConfig{Conn: old, Sessions: sessions, Convert: convert, ReadsMin: 1, ReadsMax: 3})
			if c != nil || err == nil || !strings.Contains(err.Error(), r.errHas) {
				t.Fatalf("TakeOver: %v, %v; want an error saying %q", c, err, r.errHas)
			}
			if !strings.HasPrefix(old.rejected, r.rejected) || (r.rejected == "") != (old.rejected == "") {
				t.Errorf("rejected with %q, want %q", old.rejected, r.rejected)
			}
			if sessions.discarded != r.discarded || sessions.abandoned != r.abandoned || old.closed != 1 {
				t.Errorf("discarded %d times, abandoned %d, socket closed %d times; want %d, %d and once",
					sessions.discarded, sessions.abandoned, old.closed, r.discarded, r.abandoned)
			}
			if isClosed(conn) != r.closed {
				t.Errorf("received connection closed: %v, want %v", isClosed(conn), r.closed)
			}
		})
	}
}
