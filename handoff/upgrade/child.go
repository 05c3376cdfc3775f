package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/state"
)

// reportBound is how long the new process waits for its restored readers
// to read again before it reports the stalls it has.
const reportBound = 2 * time.Second

// ChildConn is the new process's end of the handoff socket; a
// *handoff.Conn implements it.
type ChildConn interface {
	SendHello(h handoff.Hello) error
	ReadPlan(deadline time.Time) (handoff.Plan, error)
	// ReadBatches hands each batch of items to each as it arrives, until
	// End, and at a Sync calls built (handoff.Conn.ReadBatches).
	ReadBatches(deadline time.Time, each func([]handoff.Item) error, built func() error) error
	SendReject(reason string) error
	SendPrepared(n int) error
	WaitCommit(deadline time.Time) (bool, error)
	SendReport(r handoff.Report) error
	Close() error
}

// Restorer rebuilds sessions in the new process: an ingest server behind an
// adapter.
type Restorer interface {
	// Begin starts a restore that rebuilds sessions as they arrive.
	Begin() Restoring
}

// Restoring is a restore in progress. Exactly one of Finish or Abandon
// ends it; all three methods are called from one goroutine.
type Restoring interface {
	// Add hands over sessions, envelopes of the current state version and
	// their files, which the Restoring owns from the call on, success or
	// not; it may rebuild them while more arrive.
	Add(items []handoff.Item)
	// Built returns once every session added so far is built (or has
	// failed, which Finish reports).
	Built()
	// Finish waits until every session added is rebuilt and returns them;
	// nothing runs until the caller starts them. On error nothing added
	// stays open.
	Finish() (Restored, error)
	// Abandon drops every session added, untouched: the old process keeps
	// them.
	Abandon()
}

// Restored is a set of sessions rebuilt, not yet running.
type Restored interface {
	// Len is the number of sessions.
	Len() int
	// Discard drops them without a word to their peers: the old process
	// keeps them.
	Discard()
}

// ChildConfig sets up the new process's side of an upgrade.
type ChildConfig struct {
	// Conn, Sessions and Convert are required.
	Conn     ChildConn
	Sessions Restorer
	// Convert migrates an envelope to the given state version (migrate's
	// Convert).
	Convert func(env state.Envelope, to uint32) (state.Envelope, error)
	// ReadsMin and ReadsMax are the state versions Convert takes, as the
	// Hello announces them.
	ReadsMin, ReadsMax uint32
	// Current is the version the sessions are rebuilt from. Zero means
	// state.Version.
	Current uint32
	// Build is this binary's version, for the Hello.
	Build string
	// Timeout bounds the wait for each of the old process's answers. Zero
	// means DefaultTimeout.
	Timeout time.Duration
	// Log receives the line that says the sessions are committed.
	Log zerolog.Logger
	// Prime, if set, returns once whatever makes the park's restore
	// cheaper is done (mediad warms its heap). It runs alongside the
	// hello and the bases, while the old process still serves; TakeOver
	// waits for it, once, before it answers a Sync (so the park does not
	// start before it) or takes the first of the park's sessions (an
	// old process that sends no bases).
	Prime func()
}

// Child is a taken-over set of sessions, committed by the old process: the
// caller becomes Ready (tableflip), then starts Sessions and calls Report;
// if Ready fails, Discard.
type Child struct {
	conn ChildConn
	// Sessions are the restored sessions.
	Sessions Restored
	// Process is the old process's envelope of counters and history, nil
	// when the state version sent does not carry one.
	Process *state.Process
	// Version is the state version the old process sent.
	Version uint32
}

// TakeOver is the new process's side of the upgrade: hello, then receive,
// migrate and restore, each batch rebuilt while the next arrives, prepared,
// then the commit. The sessions it returns do
// not run: until the caller is Ready they are still the old process's. On
// error the old process has been told (or will see the socket close) and
// keeps every session; nothing received stays open.
func TakeOver(cfg ChildConfig) (*Child, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Current == 0 {
		cfg.Current = state.Version
	}
	conn := cfg.Conn
	deadline := time.Now().Add(cfg.Timeout)
	hello, err := handoff.LocalHello(cfg.Build, cfg.ReadsMin, cfg.ReadsMax)
	if err != nil {
		// The old process reads a Reject in place of the Hello, and names
		// the reason in its verdict.
		_ = conn.SendReject(err.Error())
		conn.Close()
		return nil, err
	}
	if err := conn.SendHello(hello); err != nil {
		conn.Close()
		return nil, err
	}
	plan, err := conn.ReadPlan(deadline)
	if err != nil {
		conn.Close()
		return nil, err
	}
	// Each batch is rebuilt while the next ones are on their way.
	restoring := cfg.Sessions.Begin()
	var proc *state.Process
	var rejectErr error
	// Prepared counts every item taken: the sessions, the process
	// envelope, and the bases a restore takes in, whether a tail then
	// used them or not.
	items := 0
	primed := cfg.Prime == nil
	prime := func() {
		if !primed {
			primed = true
			cfg.Prime()
		}
	}
	err = conn.ReadBatches(deadline, func(batch []handoff.Item) error {
		items += len(batch)
		if !handoff.AllBases(batch) {
			prime()
		}
		sessions, p, err := split(batch, cfg.Convert, cfg.Current)
		if err == nil && p != nil && proc != nil {
			err = errors.New("two process envelopes")
		}
		if err != nil {
			handoff.CloseItems(batch)
			rejectErr = err
			return err
		}
		if p != nil {
			proc = p
		}
		restoring.Add(sessions)
		return nil
	}, func() error {
		restoring.Built()
		prime()
		return nil
	})
	if err == nil {
		err = handoff.Fault(handoff.FaultRestore)
		rejectErr = err
	}
	if err != nil {
		restoring.Abandon()
		if rejectErr != nil {
			_ = conn.SendReject(rejectErr.Error())
			err = fmt.Errorf("sessions of state v%d: %w", plan.Version, err)
		}
		conn.Close()
		return nil, err
	}
	restored, err := restoring.Finish()
	if err != nil {
		_ = conn.SendReject(err.Error())
		conn.Close()
		return nil, err
	}
	c := &Child{conn: conn, Sessions: restored, Process: proc, Version: plan.Version}
	if err := conn.SendPrepared(items); err != nil {
		c.Discard()
		return nil, err
	}
	commit, err := conn.WaitCommit(deadline)
	if err == nil && !commit {
		err = errors.New("old process aborted the upgrade")
	}
	if err == nil {
		err = handoff.Fault(handoff.FaultAfterCommit)
	}
	if err != nil {
		c.Discard()
		return nil, err
	}
	cfg.Log.Info().Int("sessions", restored.Len()).Uint32("state_version", plan.Version).Msg("sessions prepared and committed")
	return c, nil
}

// split migrates every item to version cur and takes out the one process
// envelope.
func split(items []handoff.Item, convert func(state.Envelope, uint32) (state.Envelope, error), cur uint32) ([]handoff.Item, *state.Process, error) {
	sessions := make([]handoff.Item, 0, len(items))
	var proc *state.Process
	for _, it := range items {
		env, err := convert(it.Envelope, cur)
		if err != nil {
			return nil, nil, err
		}
		if env.Kind != state.KindProcess {
			sessions = append(sessions, handoff.Item{Envelope: env, Files: it.Files})
			continue
		}
		if proc != nil {
			return nil, nil, errors.New("two process envelopes")
		}
		if len(it.Files) > 0 {
			return nil, nil, fmt.Errorf("process envelope with %d descriptors", len(it.Files))
		}
		var p state.Process
		if err := state.Decode(env, &p); err != nil {
			return nil, nil, err
		}
		proc = &p
	}
	return sessions, proc, nil
}

// Discard gives the sessions back untouched, when this process could not
// become Ready: the old process resumes them.
func (c *Child) Discard() {
	c.Sessions.Discard()
	c.conn.Close()
}

// Report waits until want restored sessions have read again (stalls
// returns the stalls measured so far), for at most two seconds or until
// ctx ends, and sends the figures to the old process, whose verdict they
// complete. It closes the handoff socket and returns the stalls, sorted,
// and the report.
func (c *Child) Report(ctx context.Context, stalls func() []time.Duration, want int) ([]time.Duration, handoff.Report) {
	defer c.conn.Close()
	bound := time.NewTimer(reportBound)
	defer bound.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
wait:
	for len(stalls()) < want {
		select {
		case <-tick.C:
		case <-bound.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	got := stalls()
	rep := StallReport(got)
	_ = c.conn.SendReport(rep)
	return got, rep
}

// Verdict is the upgrade that started this process, as the old process
// described it in its envelope, completed with this process's figures:
// ready is when it became Ready. It reports false when no envelope came.
func (c *Child) Verdict(build string, rep handoff.Report, ready time.Time) (Verdict, bool) {
	if c.Process == nil {
		return Verdict{}, false
	}
	v := VerdictFromState(c.Process.Current)
	v.Outcome, v.Error = Success, ""
	v.NewPID, v.NewVersion = os.Getpid(), build
	v.DurationMS = MS(ready.Sub(v.Started))
	v.Stalls, v.StallP50MS, v.StallP99MS, v.WorstStallMS = rep.Stalls, rep.StallP50MS, rep.StallP99MS, rep.WorstStallMS
	return v, true
}
