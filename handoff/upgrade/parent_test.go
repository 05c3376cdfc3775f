package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/state"
)

// testTimeout is the upgrade deadline of the rows: short, since the hangs
// wait for it, and far above what the other rows take.
const testTimeout = 300 * time.Millisecond

type harness struct {
	proc     *fakeProcess
	child    *fakeChild
	sessions *fakeSessions
	outbox   *fakeOutbox
	parent   *Parent
	recorded []Verdict
	procEnvs int
	mu       sync.Mutex
}

func newHarness(child *fakeChild, edit func(*Config)) *harness {
	h := &harness{child: child, sessions: &fakeSessions{items: sessionItems(), parkFDs: 3}, outbox: &fakeOutbox{}}
	h.proc = newFakeProcess(testTimeout, child)
	cfg := Config{
		Process: h.proc, Sessions: h.sessions, Convert: convert,
		WritesMin: 1, WritesMax: state.Version, Build: "this", Timeout: testTimeout,
		Outbox:       h.outbox,
		ProcessSince: 3,
		ProcessState: func(cur Verdict) (state.Envelope, error) {
			h.mu.Lock()
			h.procEnvs++
			h.mu.Unlock()
			return state.Encode(state.KindProcess, state.Process{Current: cur.State()})
		},
		Record: func(v Verdict) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.recorded = append(h.recorded, v)
		},
	}
	if edit != nil {
		edit(&cfg)
	}
	h.parent = NewParent(cfg)
	return h
}

// TestRollback fails an upgrade at every step, in one process: each row
// checks the verdict, what the sessions went through (parked and resumed
// exactly once, or never parked), what the new process was told, and that
// the outbox delivers again. Every row runs twice: for a new process that
// takes an open plan (each session sent as it parks), and for an older
// one (everything sent after the park).
func TestRollback(t *testing.T) {
	const exe = "/usr/local/bin/mediad"
	rows := []struct {
		name    string
		failAt  string // the fake child's step
		how     string
		setup   func(*harness)
		outcome string
		errHas  []string
		parked  bool   // the sessions parked (then resumed once)
		told    string // the first thing the child was told, by prefix; "" none
		// toldOpen, if set, is told's prefix when the plan is open: the
		// plan then goes before the park.
		toldOpen string
		// openOnly: the step exists only with an open plan.
		openOnly bool
	}{
		{
			name: "binary missing", setup: func(h *harness) {
				h.proc.binaryErr = errors.New("new binary: stat /usr/local/bin/mediad: no such file or directory")
			},
			outcome: Failed, errHas: []string{"no such file or directory"},
		},
		{
			name: "child crashes before hello", failAt: "hello", how: "crash",
			outcome: Failed, errHas: []string{"new process " + exe + " failed before hello", "exit status 3"},
		},
		{
			name: "child refuses before hello", failAt: "hello", how: "reject",
			outcome: Failed, errHas: []string{"new process " + exe + " refused to take over: injected fault at restore"},
		},
		{
			name: "child hangs before hello", failAt: "hello", how: "hang",
			outcome: Failed, errHas: []string{"failed before hello", "timed out"},
		},
		{
			name: "no common state version", setup: func(h *harness) { h.child.hello.ReadsMin, h.child.hello.ReadsMax = 90, 99 },
			outcome: Refused, errHas: []string{"new binary next refused at hello, nothing parked", "no common state version", "v90..v99"},
			told: "refuse: handoff: no common state version",
		},
		{
			name: "descriptor budget refused before the park", setup: func(h *harness) {
				h.child.hello.NoFileLimit, h.child.hello.OpenFDs = 100, 30
				h.sessions.parkFDs = 10
			},
			outcome: Refused, errHas: []string{"refused at hello, nothing parked", "cannot take 10 descriptors", "limit of 100"},
			told: "refuse: handoff: new process (pid 4242) cannot take 10 descriptors",
		},
		{
			name: "descriptor budget exceeded by the park itself", setup: func(h *harness) {
				// A session arrived between the bound and the park.
				h.child.hello.NoFileLimit, h.child.hello.OpenFDs = 100, 34
				h.sessions.parkFDs = 0
			},
			outcome: Failed, errHas: []string{"cannot take 3 descriptors"}, parked: true,
			told:     "refuse: handoff: new process (pid 4242) cannot take 3 descriptors",
			toldOpen: "plan v",
		},
		{
			name: "park fails", setup: func(h *harness) { h.sessions.parkErr = errors.New("park: context deadline exceeded") },
			outcome: Failed, errHas: []string{"park: context deadline exceeded"},
			told: "abort: park: context deadline exceeded", toldOpen: "plan v",
		},
		{
			name: "migration fails", setup: func(h *harness) {
				h.sessions.items = append(h.sessions.items, handoff.Item{Envelope: state.Envelope{Kind: "unmigratable", Version: state.Version}})
			},
			outcome: Failed, errHas: []string{"migrate unmigratable to v", "no step"}, parked: true,
			told: "abort: migrate unmigratable", toldOpen: "plan v",
		},
		{
			// The process envelope goes after the sessions, in either plan:
			// its migration fails the same way and parks nothing for good.
			name: "process envelope migration fails", setup: func(h *harness) {
				h.parent.cfg.ProcessState = func(Verdict) (state.Envelope, error) {
					return state.Envelope{Kind: "unmigratable", Version: state.Version}, nil
				}
			},
			outcome: Failed, errHas: []string{"migrate unmigratable to v", "no step"}, parked: true,
			told: "abort: migrate unmigratable", toldOpen: "plan v",
		},
		{
			name: "child crashes while the static parts go ahead", failAt: "items", how: "crash", setup: sendAhead, openOnly: true,
			outcome: Failed, errHas: []string{"new process " + exe + " failed sending sessions", "exit status 3"},
			told: "plan v",
		},
		{
			name: "child crashes while building what went ahead", failAt: "sync", how: "crash", setup: sendAhead, openOnly: true,
			outcome: Failed, errHas: []string{"new process " + exe + " failed building the sessions sent ahead", "exit status 3"},
			told: "plan v",
		},
		{
			name: "child rejects what went ahead", failAt: "sync", how: "reject", setup: sendAhead, openOnly: true,
			outcome: Failed, errHas: []string{"new process rejected the sessions: injected fault at restore"},
			told: "plan v",
		},
		{
			name: "deadline while the child builds what went ahead", failAt: "sync", how: "hang", setup: sendAhead, openOnly: true,
			outcome: Failed, errHas: []string{"failed building the sessions sent ahead", "timed out"},
			told: "plan v",
		},
		{
			name: "child crashes while the sessions are sent", failAt: "items", how: "crash",
			outcome: Failed, errHas: []string{"new process " + exe + " failed sending sessions", "exit status 3"}, parked: true,
			told: "plan v",
		},
		{
			name: "child rejects while the sessions are sent", failAt: "items", how: "reject",
			outcome: Failed, errHas: []string{"new process rejected the sessions: injected fault at restore"}, parked: true,
			told: "plan v",
		},
		{
			name: "child crashes while preparing", failAt: "prepare", how: "crash",
			outcome: Failed, errHas: []string{"new process " + exe + " failed preparing sessions", "exit status 3"}, parked: true,
			told: "plan v",
		},
		{
			name: "child rejects the sessions", failAt: "prepare", how: "reject",
			outcome: Failed, errHas: []string{"new process rejected the sessions: injected fault at restore"}, parked: true,
			told: "plan v",
		},
		{
			name: "deadline while the child prepares", failAt: "prepare", how: "hang",
			outcome: Failed, errHas: []string{"failed preparing sessions", "timed out"}, parked: true,
			told: "plan v",
		},
		{
			// What FaultOldBeforeCommit=pause makes happen end to end.
			name: "child dies before commit", failAt: "commit", how: "crash",
			outcome: Failed, errHas: []string{"new process " + exe + " failed sending commit", "exit status 3"}, parked: true,
			told: "plan v",
		},
		{
			name: "child dies after commit, before ready", failAt: "ready", how: "crash",
			outcome: Failed, errHas: []string{"new process failed after commit, before ready", "exit status 3"}, parked: true,
			told: "plan v",
		},
	}
	for _, r := range rows {
		for _, open := range []bool{true, false} {
			if r.openOnly && !open {
				continue
			}
			name := r.name + "/closed plan"
			if open {
				name = r.name + "/open plan"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h := newHarness(newFakeChild(r.failAt, r.how), nil)
				h.child.hello.OpenPlan = open
				if r.setup != nil {
					r.setup(h)
				}
				told := r.told
				if open && r.toldOpen != "" {
					told = r.toldOpen
				}
				v := h.parent.Upgrade("")
				t.Logf("%s after %.1f ms: %s; the child was told %q", v.Outcome, v.DurationMS, v.Error, h.child.told())
				if v.Outcome != r.outcome {
					t.Errorf("outcome %q (%s), want %q", v.Outcome, v.Error, r.outcome)
				}
				for _, want := range r.errHas {
					if !strings.Contains(v.Error, want) {
						t.Errorf("error %q does not say %q", v.Error, want)
					}
				}
				checkSessions(t, h, r.parked, false)
				got := h.child.told()
				switch {
				case told == "" && len(got) > 0:
					t.Errorf("the child was told %q, want nothing", got)
				case told != "" && (len(got) == 0 || !strings.HasPrefix(got[0], told)):
					t.Errorf("the child was told %q, want first %q...", got, told)
				}
				if slices.Contains(got, "commit") && r.failAt != "ready" {
					t.Errorf("the child was sent Commit: %q", got)
				}
				if o := h.outbox; o.paused != o.resumed {
					t.Errorf("outbox paused %d times, resumed %d", o.paused, o.resumed)
				}
				// A missing binary fails within the microsecond the duration counts.
				if v.OldPID == 0 || v.OldVersion != "this" || v.DurationMS < 0 || v.SessionsMoved != 0 || v.Started.IsZero() {
					t.Errorf("verdict %+v", v)
				}
				if len(h.recorded) != 1 || h.recorded[0] != v {
					t.Errorf("recorded %+v, want the verdict once", h.recorded)
				}
				// A failed attempt leaves the engine free for the next one.
				if h.parent.busy.Load() {
					t.Error("still busy after a failed upgrade")
				}
				// Nothing more is sent once a send failed or was refused.
				if r.failAt == "items" && h.child.batches != 0 {
					t.Errorf("%d batches went after the first send failed", h.child.batches)
				}
			})
		}
	}
}

// checkSessions checks what the engine did to the sessions: parked once and
// then resumed once or committed once, or never parked.
func checkSessions(t *testing.T, h *harness, parked, committed bool) {
	t.Helper()
	parks, resumes, commits := h.sessions.counts()
	switch {
	case !parked && parks != 0:
		t.Errorf("sessions parked %d times, want never", parks)
	case parked && parks != 1:
		t.Errorf("sessions parked %d times, want once", parks)
	case committed && (commits != 1 || resumes != 0):
		t.Errorf("sessions committed %d times and resumed %d, want committed once", commits, resumes)
	case !committed && (commits != 0 || resumes != parks):
		t.Errorf("sessions parked %d times, resumed %d, committed %d: want resumed once per park", parks, resumes, commits)
	}
}

func TestUpgradeSucceeds(t *testing.T) {
	h := newHarness(newFakeChild("", ""), nil)
	v := h.parent.Upgrade("")
	if v.Outcome != Success || v.Error != "" {
		t.Fatalf("verdict %+v", v)
	}
	checkSessions(t, h, true, true)
	// The stalls are the new process's to give (it never reports here):
	// the verdict says so instead of waiting for them.
	if v.NewPID != 4242 || v.NewVersion != "next" || v.StateVersion != state.Version || v.SessionsMoved != 2 ||
		!v.StallsPending || v.Stalls != 0 || v.WorstStallMS != 0 || v.DurationMS <= 0 {
		t.Errorf("verdict %+v", v)
	}
	// Both sessions and the process envelope, with their descriptors.
	if h.child.items != 3 || h.child.fds != 3 || h.procEnvs != 1 {
		t.Errorf("sent %d items and %d descriptors, %d process envelopes; want 3, 3 and 1", h.child.items, h.child.fds, h.procEnvs)
	}
	// Each session went as it parked, the process envelope after them.
	if h.child.batches != 3 {
		t.Errorf("sent in %d batches, want 3: one per session as it parked, then the process", h.child.batches)
	}
	if o := h.outbox; o.paused != 1 || o.resumed != 0 {
		t.Errorf("outbox paused %d times, resumed %d; want paused once, for good", o.paused, o.resumed)
	}
	// This process is finished: no second upgrade.
	if again := h.parent.Upgrade(""); again.Outcome != Refused || !strings.Contains(again.Error, "already in progress") {
		t.Errorf("an upgrade after a success: %+v", again)
	}
}

func sendAhead(h *harness) { h.sessions.ahead = aheadItems() }

// The static parts go ahead, the new process builds them before anything
// parks, and only then do the sessions park; the bases count as items
// sent, not as sessions moved.
func TestUpgradeSendsAhead(t *testing.T) {
	h := newHarness(newFakeChild("", ""), nil)
	sendAhead(h)
	v := h.parent.Upgrade("")
	if v.Outcome != Success || v.SessionsMoved != 2 {
		t.Fatalf("verdict %+v", v)
	}
	checkSessions(t, h, true, true)
	told := h.child.told()
	if len(told) < 3 || !strings.HasPrefix(told[0], "plan v") || told[1] != "sync after 2 items" || told[2] != "commit" {
		t.Errorf("the child was told %q, want the plan, a sync after the 2 bases, the commit", told)
	}
	if h.child.items != 5 || h.child.fds != 5 || h.sessions.presends != 1 {
		t.Errorf("sent %d items and %d descriptors after %d presends; want 5, 5 and 1", h.child.items, h.child.fds, h.sessions.presends)
	}
	// To a build that reads no bases, nothing goes ahead.
	old := newFakeChild("", "")
	old.hello.ReadsMax = state.BaseSince - 1
	h = newHarness(old, nil)
	sendAhead(h)
	if v := h.parent.Upgrade(""); v.Outcome != Success || h.sessions.presends != 0 || h.child.items != 3 {
		t.Errorf("to v%d: %+v after %d presends, %d items", state.BaseSince-1, v, h.sessions.presends, h.child.items)
	}
}

// A new process that needs the totals first (a build before open plans)
// is sent everything once the sessions have parked, in one batch.
func TestUpgradeSucceedsWithClosedPlan(t *testing.T) {
	child := newFakeChild("", "")
	child.hello.OpenPlan = false
	h := newHarness(child, nil)
	v := h.parent.Upgrade("")
	if v.Outcome != Success || v.SessionsMoved != 2 {
		t.Fatalf("verdict %+v", v)
	}
	checkSessions(t, h, true, true)
	if told := h.child.told(); len(told) == 0 || told[0] != fmt.Sprintf("plan v%d: 3 items, 3 fds", state.Version) {
		t.Errorf("the child was told %q, want first the exact plan", told)
	}
	if h.child.items != 3 || h.child.fds != 3 || h.child.batches != 1 {
		t.Errorf("sent %d items and %d descriptors in %d batches; want 3 and 3 in 1", h.child.items, h.child.fds, h.child.batches)
	}
}

// A build that reads only versions before the process envelope's gets the
// sessions alone.
func TestUpgradeWithoutProcessEnvelope(t *testing.T) {
	child := newFakeChild("", "")
	child.hello.ReadsMin, child.hello.ReadsMax = 1, 2
	h := newHarness(child, nil)
	if v := h.parent.Upgrade(""); v.Outcome != Success || v.StateVersion != 2 {
		t.Fatalf("verdict %+v", v)
	}
	// The sessions export in a form version 2 reads.
	if h.sessions.parkedFor != 2 {
		t.Errorf("parked for v%d, want v2", h.sessions.parkedFor)
	}
	if h.child.items != 2 || h.procEnvs != 0 {
		t.Errorf("sent %d items, %d process envelopes; want 2 and none", h.child.items, h.procEnvs)
	}
}

// A second trigger during an upgrade is refused and leaves the first alone.
func TestUpgradeOneAtATime(t *testing.T) {
	h := newHarness(newFakeChild("prepare", "block"), nil)
	first := make(chan Verdict, 1)
	go func() { first <- h.parent.Upgrade("") }()
	<-h.child.waiting
	if v := h.parent.Upgrade(""); v.Outcome != Refused || v.Error != "an upgrade is already in progress" {
		t.Errorf("second upgrade: %+v", v)
	}
	h.child.Close() // the first one's child goes away
	if v := <-first; v.Outcome != Failed {
		t.Errorf("first upgrade: %+v", v)
	}
	checkSessions(t, h, true, false)
}

// A stop during an upgrade cancels it, waits for it, and refuses any later
// one; every session carries on here.
func TestStopCancelsUpgrade(t *testing.T) {
	h := newHarness(newFakeChild("prepare", "block"), nil)
	got := make(chan Verdict, 1)
	go func() { got <- h.parent.Upgrade("") }()
	<-h.child.waiting
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.parent.Stop(ctx)
	if ctx.Err() != nil {
		t.Fatal("Stop returned only when its context ended")
	}
	// The verdict is recorded before the attempt counts as ended, so it
	// is there when Stop returns; the goroutine hands it over just after.
	h.mu.Lock()
	n := len(h.recorded)
	h.mu.Unlock()
	if n != 1 {
		t.Fatalf("Stop returned with %d verdicts recorded, want the upgrade's one: it did not wait for the upgrade", n)
	}
	select {
	case v := <-got:
		if v.Outcome != Failed || !strings.HasPrefix(v.Error, "upgrade cancelled: this process is stopping: ") {
			t.Errorf("verdict %+v", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Upgrade did not return after Stop")
	}
	checkSessions(t, h, true, false)
	if v := h.parent.Upgrade(""); v.Outcome != Refused || !strings.Contains(v.Error, "stopping") {
		t.Errorf("an upgrade after Stop: %+v", v)
	}
	if h.proc.upgrades != 1 {
		t.Errorf("the process was asked for %d children, want 1", h.proc.upgrades)
	}
}

// A stop with no upgrade in flight returns at once.
func TestStopIdle(t *testing.T) {
	h := newHarness(newFakeChild("", ""), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.parent.Stop(ctx)
	if ctx.Err() != nil {
		t.Fatal("Stop of an idle Parent waited for its context")
	}
}
