package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/state"
)

// pairProcess runs the new process's side on a goroutine of this one, over
// a real socketpair: the frames, the descriptors and both sides of the
// engine are the real ones, only the exec is missing.
type pairProcess struct {
	parent, child *handoff.Conn
	restorer      *fakeRestorer
	taken         chan *Child
}

// newPair makes both ends with FromFile, which, unlike NewPair, leaves the
// parent end no child inode to neutralise: in one process that would be
// the child's own end.
func newPair(t *testing.T) (parent, child *handoff.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if parent, err = handoff.FromFile(os.NewFile(uintptr(fds[0]), "parent")); err != nil {
		t.Fatal(err)
	}
	if child, err = handoff.FromFile(os.NewFile(uintptr(fds[1]), "child")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { parent.Close(); child.Close() })
	return parent, child
}

func (p *pairProcess) Binary() (string, error)             { return "/usr/local/bin/mediad", nil }
func (p *pairProcess) WaitForParent(context.Context) error { return nil }
func (p *pairProcess) Offer() (ParentConn, error)          { return p.parent, nil }
func (p *pairProcess) Stop()                               {}

// Upgrade is the new process: it takes over, and is Ready when it has.
func (p *pairProcess) Upgrade(context.Context) error {
	c, err := TakeOver(ChildConfig{Conn: p.child, Sessions: p.restorer, Convert: convert, ReadsMin: 1, ReadsMax: state.Version, Build: "next", Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("child exited: %w", err)
	}
	p.taken <- c
	return nil
}

// openFiles are real descriptors for the sessions to send.
func openFiles(t *testing.T, items []handoff.Item) {
	t.Helper()
	for i := range items {
		for j := range items[i].Files {
			items[i].Files[j] = devNull(t)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	parent, child := newPair(t)
	proc := &pairProcess{parent: parent, child: child, restorer: &fakeRestorer{}, taken: make(chan *Child, 1)}
	sessions := &fakeSessions{items: sessionItems(), parkFDs: 3}
	openFiles(t, sessions.items)
	p := NewParent(Config{
		Process: proc, Sessions: sessions, Convert: convert, WritesMin: 1, WritesMax: state.Version,
		Build: "this", Timeout: 5 * time.Second, ProcessSince: 3,
		ProcessState: func(cur Verdict) (state.Envelope, error) {
			return state.Encode(state.KindProcess, state.Process{Generation: 4, Current: cur.State()})
		},
	})
	// The new process measures its stalls once it runs; the old one has
	// given its verdict by then, without them.
	type completed struct {
		rep handoff.Report
		v   Verdict
		ok  bool
	}
	reported := make(chan completed, 1)
	release := make(chan struct{})
	go func() {
		c := <-proc.taken
		<-release
		_, rep := c.Report(context.Background(), func() []time.Duration { return []time.Duration{3 * time.Millisecond} }, 1)
		v, ok := c.Verdict("next", rep, time.Now())
		reported <- completed{rep, v, ok}
	}()
	v := p.Upgrade("")
	close(release)
	if v.Outcome != Success || v.NewPID != os.Getpid() || v.NewVersion != "next" || v.SessionsMoved != 2 || !v.StallsPending || v.Stalls != 0 {
		t.Fatalf("verdict %+v", v)
	}
	// The new process's verdict is the same upgrade, by its start and
	// PID (what `mediad upgrade` matches), with the stalls.
	c := <-reported
	if !c.ok || !c.v.Started.Equal(v.Started) || c.v.NewPID != v.NewPID || c.v.StallsPending || c.v.Stalls != 1 || c.v.WorstStallMS != 3 || c.rep.Stalls != 1 {
		t.Errorf("new process's verdict %+v (ok %v), report %+v; the old one's %+v", c.v, c.ok, c.rep, v)
	}
	got := proc.restorer.got
	if len(got) != 2 || len(got[0].Files) != 2 || len(got[1].Files) != 1 || got[0].Envelope.Kind != state.KindPublisher {
		t.Fatalf("restored %+v", got)
	}
	for _, it := range got {
		for _, f := range it.Files {
			// The new process's own copies, close-on-exec.
			flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
			if err != nil || flags&unix.FD_CLOEXEC == 0 {
				t.Errorf("received %s: flags %#x, %v", f.Name(), flags, err)
			}
			f.Close()
		}
	}
	checkSessions(t, &harness{sessions: sessions}, true, true)
}

// A new process that cannot restore the sessions tells the old one why,
// and the old one carries on with them.
func TestRoundTripRejected(t *testing.T) {
	parent, child := newPair(t)
	proc := &pairProcess{parent: parent, child: child, restorer: &fakeRestorer{err: errors.New("restore player session: bad queue")}, taken: make(chan *Child, 1)}
	sessions := &fakeSessions{items: sessionItems(), parkFDs: 3}
	openFiles(t, sessions.items)
	p := NewParent(Config{Process: proc, Sessions: sessions, Convert: convert, WritesMin: 1, WritesMax: state.Version, Timeout: 5 * time.Second})
	v := p.Upgrade("")
	if v.Outcome != Failed || !strings.Contains(v.Error, "new process rejected the sessions: restore player session: bad queue") {
		t.Errorf("verdict %+v", v)
	}
	checkSessions(t, &harness{sessions: sessions}, true, false)
	for _, it := range proc.restorer.got {
		for _, f := range it.Files {
			f.Close()
		}
	}
}
