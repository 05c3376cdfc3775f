package upgrade

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/state"
)

// DefaultTimeout bounds an upgrade when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// Process is the old process's view of the machinery that starts the new
// one: *tableflip.Upgrader and the handoff socket it carries, behind an
// adapter, or a fake in a test.
type Process interface {
	// Binary names the binary the next Upgrade starts, and fails when
	// there is nothing there that could start.
	Binary() (string, error)
	// WaitForParent returns once this process's own predecessor has
	// exited, which must happen before it can start a successor, or when
	// ctx ends.
	WaitForParent(ctx context.Context) error
	// Offer makes the handoff socket for the next child (handoff.Offer).
	Offer() (ParentConn, error)
	// Upgrade starts the new binary and returns nil once it is Ready, or
	// why it is not: it exited, timed out or was stopped. ctx ends only
	// retries of a start that could not begin yet.
	Upgrade(ctx context.Context) error
	// Stop kills a child still starting and refuses every later Upgrade.
	Stop()
}

// ParentConn is the old process's end of the handoff socket; a
// *handoff.Conn implements it.
type ParentConn interface {
	ReadHello(deadline time.Time) (handoff.Hello, error)
	ChildGone() error
	SetWriteDeadline(t time.Time) error
	SendRefuse(reason string) error
	SendPlan(p handoff.Plan) error
	SendItems(items []handoff.Item) error
	Sync(deadline time.Time) error
	SendEnd() error
	WaitPrepared(deadline time.Time) (int, error)
	Commit() error
	Abort(reason string) error
	Close() error
}

// Sessions is what moves: an ingest server behind an adapter.
type Sessions interface {
	// ParkFDs is at least the number of descriptors a Park started now
	// would export; the new process's budget is checked against it before
	// anything parks.
	ParkFDs() int
	// Presend hands each, while every session still runs, what a new
	// process that reads state version version can take of them ahead of
	// the park: their static parts, each with its connection's
	// descriptor, lent for the call; it may call each from several
	// goroutines at once. It sends nothing for a version with no such
	// form. The Park that follows is given what it returns; an error from
	// each ends it, and nothing is parked either way.
	Presend(version uint32, each func([]handoff.Item) error) (Presented, error)
	// Park stops every session at a safe point, exporting it for a new
	// process that reads state version version (the sessions may choose a
	// form that version can read, as for LL-HLS's held-back frames). On
	// error nothing stays parked.
	//
	// each, if not nil, is given the sessions as they park, in small
	// groups, while the others are still parking; Park may call it from
	// several goroutines at once, waits for every call before it returns,
	// and resumes nothing it passed to a call still running. A publisher
	// goes before any player that could read from it. An error from each
	// fails the Park.
	//
	// pre is what Presend sent to the same new process, or nil: a
	// session whose static part went ahead and has not changed since
	// exports only the rest.
	Park(ctx context.Context, version uint32, pre Presented, each func([]handoff.Item) error) (Parked, error)
}

// Presented is what a Presend sent ahead of the park.
type Presented interface {
	// Len is the number of sessions whose static part went.
	Len() int
}

// Parked is every session stopped at a safe point. Exactly one of Resume
// or Commit follows, once.
type Parked interface {
	// Items are the sessions' envelopes, in this build's state version,
	// and their descriptors, which stay the Parked set's.
	Items() []handoff.Item
	// Resume rolls back: every session carries on here from its own state.
	Resume()
	// Commit lets go of every session: the new process owns them.
	Commit()
}

// Outbox is the queue of notifications that goes with the sessions
// (*webhook.Hooks).
type Outbox interface {
	// Pause starts no new delivery.
	Pause()
	// WaitIdle waits for the delivery in flight, or until ctx ends.
	WaitIdle(ctx context.Context) error
	// Resume delivers again, after a rollback.
	Resume()
}

// Config sets up the old process's side of upgrades.
type Config struct {
	// Process, Sessions and Convert are required.
	Process  Process
	Sessions Sessions
	// Convert migrates an envelope to the given state version (migrate's
	// Convert): the engine sends the version the new process reads.
	Convert func(env state.Envelope, to uint32) (state.Envelope, error)
	// WritesMin and WritesMax are the state versions Convert can produce.
	WritesMin, WritesMax uint32
	// Build is this binary's version, for the verdict.
	Build string
	// Timeout bounds an upgrade from its start to the new process's
	// Ready; it must match the Process's own. Zero means DefaultTimeout.
	Timeout time.Duration
	// Outbox, if not nil, is paused before the sessions park, resumed if
	// the upgrade rolls back, and exported by ProcessState.
	Outbox Outbox
	// ProcessState, if not nil, is the process envelope (in this build's
	// state version) that goes with the sessions when the version sent is
	// at least ProcessSince; cur is the verdict so far, with the sessions
	// it moves.
	ProcessState func(cur Verdict) (state.Envelope, error)
	ProcessSince uint32
	// Record, if not nil, hears every verdict, just before it is logged.
	Record func(Verdict)
	// Log receives the verdict line and the steps of an upgrade. The zero
	// Logger is silent.
	Log zerolog.Logger
}

// Parent runs live upgrades of this process, one at a time (DESIGN.md §4).
type Parent struct {
	cfg  Config
	busy atomic.Bool

	mu       sync.Mutex
	stopping bool
	// done is closed when the attempt in flight ends; nil before the
	// first. busy keeps a second attempt from replacing it meanwhile.
	done chan struct{}
	// ctx ends when Stop is called: the upgrade in flight rolls back.
	ctx    context.Context
	cancel context.CancelFunc
}

// NewParent returns the old process's side of upgrades.
func NewParent(cfg Config) *Parent {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Parent{cfg: cfg, ctx: ctx, cancel: cancel}
}

// errStopping cancels an upgrade that has not committed when Stop is
// called.
var errStopping = errors.New("upgrade cancelled: this process is stopping")

// Upgrade replaces this process with the binary the Process starts, moving
// every session, and returns the verdict once it is known. On success the
// caller exits once the verdict is delivered (the Process says when); on
// failure every session carries on here. fault arms a handoff fault point
// in the new process of a faultinject build (handoff.ArmChild).
func (p *Parent) Upgrade(fault string) Verdict {
	v := Verdict{Started: time.Now().UTC(), OldPID: os.Getpid(), OldVersion: p.cfg.Build}
	if !p.busy.CompareAndSwap(false, true) {
		v.Outcome, v.Error = Refused, "an upgrade is already in progress"
		return p.record(v)
	}
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		p.busy.Store(false)
		v.Outcome, v.Error = Refused, errStopping.Error()
		return p.record(v)
	}
	done := make(chan struct{})
	p.done = done
	p.mu.Unlock()
	defer close(done)

	a := &attempt{Parent: p, v: &v}
	err := a.run(fault)
	if v.DurationMS == 0 {
		v.DurationMS = MS(time.Since(v.Started))
	}
	if err != nil {
		// tableflip leaves the pipes of a failed child and the placeholder
		// for its handoff socket to finalizers: collect them now, so that
		// failed attempts leak no descriptor.
		runtime.GC()
		v.Outcome, v.Error = Failed, err.Error()
		if errors.As(err, new(*RefusedError)) {
			v.Outcome = Refused
		}
		p.busy.Store(false)
		return p.record(v)
	}
	v.Outcome = Success
	// busy stays set: this process is finished and must not start another.
	return p.record(v)
}

// Wait returns once no upgrade is in flight, or when ctx ends.
func (p *Parent) Wait(ctx context.Context) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Stop refuses every later upgrade, cancels the one in flight (it rolls
// back unless it has committed) and waits for it to end, or for ctx. It
// stops the Process too, which kills a child still starting.
func (p *Parent) Stop(ctx context.Context) {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.cancel()
	p.cfg.Process.Stop()
	p.Wait(ctx)
}

func (p *Parent) record(v Verdict) Verdict {
	// Recorded first: whoever sees the line finds the verdict in the
	// history.
	if p.cfg.Record != nil {
		p.cfg.Record(v)
	}
	v.Log(p.cfg.Log)
	return v
}
