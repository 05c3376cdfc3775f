package upgrade

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/state"
)

// Exit statuses as tableflip reports them.
var (
	errExit3    = errors.New("child pid 4242 exited: exit status 3")
	errExit1    = errors.New("child pid 4242 exited: exit status 1")
	errTimedOut = errors.New("new child pid 4242 timed out")
)

// fakeProcess stands for tableflip: the child's fate is what the fake
// child makes of the conversation (exit), or a timeout, or Stop.
type fakeProcess struct {
	binaryErr error
	timeout   time.Duration
	conn      *fakeChild

	result   chan error
	exitOnce sync.Once
	stopOnce sync.Once
	stopped  chan struct{}
	upgrades int
}

func newFakeProcess(timeout time.Duration, child *fakeChild) *fakeProcess {
	p := &fakeProcess{timeout: timeout, conn: child, result: make(chan error, 1), stopped: make(chan struct{})}
	child.proc = p
	return p
}

func (p *fakeProcess) Binary() (string, error) {
	if p.binaryErr != nil {
		return "", p.binaryErr
	}
	return "/usr/local/bin/mediad", nil
}

func (p *fakeProcess) WaitForParent(context.Context) error { return nil }

func (p *fakeProcess) Offer() (ParentConn, error) { return p.conn, nil }

func (p *fakeProcess) Upgrade(context.Context) error {
	p.upgrades++
	t := time.NewTimer(p.timeout)
	defer t.Stop()
	select {
	case err := <-p.result:
		return err
	case <-p.stopped:
		return errors.New("terminating")
	case <-t.C:
		return errTimedOut
	}
}

func (p *fakeProcess) Stop() { p.stopOnce.Do(func() { close(p.stopped) }) }

// exit is the child's end: nil is Ready.
func (p *fakeProcess) exit(err error) { p.exitOnce.Do(func() { p.result <- err }) }

// fakeChild is the old process's end of the socket, with the new process
// behind it played by a script: at step failAt it does how.
type fakeChild struct {
	proc   *fakeProcess
	hello  handoff.Hello
	failAt string // "hello", "items", "sync", "prepare", "commit", "ready"
	how    string // "crash", "hang", "reject", "block"

	mu       sync.Mutex
	said     []string // what the old process told it
	items    int
	fds      int
	batches  int
	gone     chan struct{}
	closed   chan struct{}
	goneOnce sync.Once
	closeOne sync.Once
	// waiting is closed when the child starts preparing.
	waiting chan struct{}
}

func newFakeChild(failAt, how string) *fakeChild {
	return &fakeChild{
		failAt: failAt, how: how,
		hello: handoff.Hello{Build: "next", ReadsMin: 1, ReadsMax: state.Version, PID: 4242, NoFileLimit: 1 << 20, OpenFDs: 20, OpenPlan: true},
		gone:  make(chan struct{}), closed: make(chan struct{}), waiting: make(chan struct{}),
	}
}

func (c *fakeChild) say(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.said = append(c.said, fmt.Sprintf(format, args...))
}

func (c *fakeChild) told() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.said...)
}

// fail plays the script's failure at step, if it has one there.
func (c *fakeChild) fail(step string, deadline time.Time) (bool, error) {
	if c.failAt != step {
		return false, nil
	}
	switch c.how {
	case "crash":
		c.proc.exit(errExit3)
		if step == "hello" {
			// Before Hello the parent sees the death only once it drops
			// its copy of the child's end.
			select {
			case <-c.gone:
			case <-c.closed:
				return true, net.ErrClosed
			}
		}
		return true, handoff.ErrPeerClosed
	case "hang":
		select {
		case <-time.After(time.Until(deadline)):
			return true, os.ErrDeadlineExceeded
		case <-c.closed:
			return true, net.ErrClosed
		}
	case "block":
		// Until the socket closes: a Stop.
		<-c.closed
		return true, net.ErrClosed
	case "reject":
		c.proc.exit(errExit1)
		return true, &handoff.RejectError{Reason: "injected fault at restore"}
	}
	panic("fakeChild: unknown failure " + c.how)
}

func (c *fakeChild) ReadHello(deadline time.Time) (handoff.Hello, error) {
	if ok, err := c.fail("hello", deadline); ok {
		return handoff.Hello{}, fmt.Errorf("handoff: read hello: %w", err)
	}
	return c.hello, nil
}

func (c *fakeChild) ChildGone() error {
	c.goneOnce.Do(func() { close(c.gone) })
	return nil
}

func (c *fakeChild) SetWriteDeadline(time.Time) error { return nil }

func (c *fakeChild) SendRefuse(reason string) error {
	c.say("refuse: %s", reason)
	c.proc.exit(errExit1)
	return nil
}

func (c *fakeChild) SendPlan(p handoff.Plan) error {
	if p.Open {
		if !c.hello.OpenPlan {
			return errors.New("fakeChild: an open plan for a child that did not ask for one")
		}
		c.say("plan v%d (open): up to %d fds", p.Version, p.FDs)
		return nil
	}
	c.say("plan v%d: %d items, %d fds", p.Version, p.Items, p.FDs)
	return nil
}

func (c *fakeChild) SendItems(items []handoff.Item) error {
	if ok, err := c.fail("items", time.Now().Add(testTimeout)); ok {
		return fmt.Errorf("handoff: send batch: %w", err)
	}
	c.mu.Lock()
	c.batches++
	defer c.mu.Unlock()
	c.items += len(items)
	for _, it := range items {
		c.fds += it.NumFDs()
	}
	return nil
}

func (c *fakeChild) SendEnd() error { return nil }

func (c *fakeChild) Sync(deadline time.Time) error {
	if ok, err := c.fail("sync", deadline); ok {
		return fmt.Errorf("handoff: wait for synced: %w", err)
	}
	c.mu.Lock()
	n := c.items
	c.mu.Unlock()
	c.say("sync after %d items", n)
	return nil
}

func (c *fakeChild) WaitPrepared(deadline time.Time) (int, error) {
	close(c.waiting)
	if ok, err := c.fail("prepare", deadline); ok {
		return 0, fmt.Errorf("handoff: wait for prepared: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items, nil
}

func (c *fakeChild) Commit() error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	if c.failAt == "commit" {
		// Died after Prepared, before the Commit reached it.
		c.proc.exit(errExit3)
		return fmt.Errorf("%w (broken pipe)", handoff.ErrPeerClosed)
	}
	c.say("commit")
	if c.failAt == "ready" {
		c.proc.exit(errExit3)
	} else {
		c.proc.exit(nil)
	}
	return nil
}

func (c *fakeChild) Abort(reason string) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	c.say("abort: %s", reason)
	c.proc.exit(errExit1)
	return nil
}

func (c *fakeChild) Close() error {
	c.closeOne.Do(func() { close(c.closed) })
	return nil
}

// fakeSessions stands for an ingest server: it counts what the engine
// does to its sessions.
type fakeSessions struct {
	items   []handoff.Item
	parkFDs int
	parkErr error
	// ahead are the bases Presend sends.
	ahead []handoff.Item

	mu                      sync.Mutex
	parks, resumes, commits int
	parkedFor               uint32 // the version the last Park was asked for
	presends                int
}

func (s *fakeSessions) ParkFDs() int { return s.parkFDs }

// Presend sends ahead, to a version that reads bases, the items of ahead,
// as a real one sends the static parts of its sessions.
func (s *fakeSessions) Presend(version uint32, each func([]handoff.Item) error) (Presented, error) {
	if version < state.BaseSince || len(s.ahead) == 0 {
		return nil, nil
	}
	if err := each(s.ahead); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.presends++
	s.mu.Unlock()
	return fakePresented(len(s.ahead)), nil
}

type fakePresented int

func (p fakePresented) Len() int { return int(p) }

// Park hands each the sessions one at a time, as a real one hands them
// over in groups while the rest park; a failure of each resumes them.
func (s *fakeSessions) Park(_ context.Context, version uint32, _ Presented, each func([]handoff.Item) error) (Parked, error) {
	if s.parkErr != nil {
		return nil, s.parkErr
	}
	s.mu.Lock()
	s.parks++
	s.parkedFor = version
	s.mu.Unlock()
	if each != nil {
		for i := range s.items {
			if err := each(s.items[i : i+1]); err != nil {
				fakeParked{s}.Resume()
				return nil, fmt.Errorf("park: %w", err)
			}
		}
	}
	return fakeParked{s}, nil
}

func (s *fakeSessions) counts() (parks, resumes, commits int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parks, s.resumes, s.commits
}

type fakeParked struct{ s *fakeSessions }

func (p fakeParked) Items() []handoff.Item { return p.s.items }

func (p fakeParked) Resume() {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	p.s.resumes++
}

func (p fakeParked) Commit() {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	p.s.commits++
}

// fakeOutbox counts pauses and resumes.
type fakeOutbox struct {
	mu              sync.Mutex
	paused, resumed int
}

func (o *fakeOutbox) Pause() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.paused++
}

func (o *fakeOutbox) WaitIdle(context.Context) error { return nil }

func (o *fakeOutbox) Resume() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.resumed++
}

// convert stands for migrate.Convert: it relabels, and fails on the kind
// "unmigratable".
func convert(env state.Envelope, to uint32) (state.Envelope, error) {
	if env.Kind == "unmigratable" {
		return state.Envelope{}, fmt.Errorf("migrate: no step for %s", env.Kind)
	}
	env.Version = to
	return env, nil
}

// aheadItems are two bases, each with its connection.
func aheadItems() []handoff.Item {
	return []handoff.Item{
		{Envelope: state.Envelope{Kind: state.KindBase, Version: state.Version, Payload: []byte{0x80}}, Files: make([]*os.File, 1)},
		{Envelope: state.Envelope{Kind: state.KindBase, Version: state.Version, Payload: []byte{0x80}}, Files: make([]*os.File, 1)},
	}
}

// sessionItems are a publisher with a connection and a recording, and a
// player with its connection. The files are never touched by the engine,
// only counted.
func sessionItems() []handoff.Item {
	return []handoff.Item{
		{Envelope: state.Envelope{Kind: state.KindPublisher, Version: state.Version, Payload: []byte{0x80}}, Files: make([]*os.File, 2)},
		{Envelope: state.Envelope{Kind: state.KindPlayer, Version: state.Version, Payload: []byte{0x80}}, Files: make([]*os.File, 1)},
	}
}
