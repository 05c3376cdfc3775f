package upgrade

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mediad/mediad/handoff"
)

// attempt is one upgrade, from the new binary's start to the verdict. Its
// steps run in order on the caller's goroutine; the Process's verdict on the
// child arrives from watchChild's goroutine, which every way out of run
// joins. Every failure after the start leaves through rollback, the one
// place that undoes what the steps did.
type attempt struct {
	*Parent
	v        *Verdict
	exe      string
	deadline time.Time
	conn     ParentConn

	// helloSeen: the child holds its own end of the socket, so its death
	// shows on ours without help.
	helloSeen atomic.Bool
	// childDone is closed once childErr holds the Process's verdict on the
	// child, so that any step may read it, any number of times.
	childDone chan struct{}
	childErr  error

	// What rollback undoes. answer tells the child why it must give up
	// (nil: it is told nothing more: it is gone, was already told, or may
	// have been sent Commit).
	answer  func(reason string) error
	parked  Parked
	resumed bool
	paused  bool
}

func (a *attempt) run(fault string) (err error) {
	a.deadline = time.Now().Add(a.cfg.Timeout)
	if a.exe, err = a.cfg.Process.Binary(); err != nil {
		return err
	}
	ctx, cancel := context.WithDeadline(a.Parent.ctx, a.deadline)
	defer cancel()
	// Right after an upgrade this process may still be waiting for its own
	// predecessor to exit, which must come before another.
	if err := a.cfg.Process.WaitForParent(ctx); err != nil {
		return fmt.Errorf("previous process has not exited: %w", err)
	}
	// The child's end of a fresh socketpair rides with the listeners;
	// nothing else can reach it.
	if a.conn, err = a.cfg.Process.Offer(); err != nil {
		return fmt.Errorf("handoff socket: %w", err)
	}
	defer a.conn.Close()
	// The child reads its environment when it starts; the next attempt
	// starts clean.
	defer handoff.ArmChild(fault)()
	a.childDone = make(chan struct{})
	go a.watchChild(ctx)
	defer func() {
		if err != nil {
			err = a.rollback(err)
		}
	}()
	// A Stop ends whichever step waits on the socket by closing it; once
	// Commit may be on its way the decision is the child's Ready, and only
	// the Process's Stop (which kills a child not yet Ready) still counts.
	stopWatch := context.AfterFunc(a.Parent.ctx, func() { _ = a.conn.Close() })
	defer stopWatch()
	return a.steps(ctx, stopWatch)
}

// steps runs the upgrade from the child's Hello to the stall report.
func (a *attempt) steps(ctx context.Context, stopWatch func() bool) error {
	conn, v := a.conn, a.v
	hello, err := conn.ReadHello(a.deadline)
	a.helloSeen.Store(err == nil)
	if err != nil {
		return a.childFailure("before hello", err)
	}
	v.NewPID, v.NewVersion = hello.PID, hello.Build
	helloAt := time.Now()
	// A child that stops reading must not block our sends past the
	// upgrade's deadline.
	if err := conn.SetWriteDeadline(a.deadline); err != nil {
		return a.childFailure("after hello", err)
	}

	// Refusals come before anything parks, so that they cost no session a
	// stall.
	ver, err := handoff.ChooseVersion(a.cfg.WritesMin, a.cfg.WritesMax, hello.ReadsMin, hello.ReadsMax)
	if err != nil {
		return a.refuse(err, &RefusedError{fmt.Errorf("new binary %s refused at hello, nothing parked: %w", hello.Build, err)})
	}
	v.StateVersion = ver
	if err := handoff.CheckFDBudget(hello, a.cfg.Sessions.ParkFDs()); err != nil {
		return a.refuse(err, &RefusedError{fmt.Errorf("new binary %s refused at hello, nothing parked: %w", hello.Build, err)})
	}
	a.answer = conn.Abort

	// The outbox goes with the sessions: no new delivery starts from here,
	// and one in flight gets a moment to finish, while nothing is parked
	// yet, so that the new process does not send it again.
	if a.cfg.Outbox != nil {
		a.cfg.Outbox.Pause()
		a.paused = true
		idleCtx, idleCancel := context.WithTimeout(ctx, time.Second)
		_ = a.cfg.Outbox.WaitIdle(idleCtx)
		idleCancel()
	}

	// A new process that takes an open plan is sent each session's static
	// part while the sessions still run, if its state version has a form
	// for it, and each session as it parks; an older one, everything once
	// all have parked.
	var st *streamer
	var each func([]handoff.Item) error
	var pre Presented
	presendStart := time.Now()
	sentAhead := presendStart
	if hello.OpenPlan {
		if err := conn.SendPlan(handoff.OpenPlanFor(ver, hello)); err != nil {
			return a.childFailure("sending plan", err)
		}
		st = &streamer{conn: conn, convert: a.cfg.Convert, ver: ver, hello: hello}
		each = st.send
		if pre, err = a.cfg.Sessions.Presend(ver, each); err != nil {
			return a.sendFailure(err)
		}
		sentAhead = time.Now()
		// The new process builds what went ahead before anything parks:
		// on the same cores, while the sessions wait, it would cost them
		// what going ahead saved.
		if presentLen(pre) > 0 {
			if err := conn.Sync(a.deadline); err != nil {
				return a.childFailure("building the sessions sent ahead", err)
			}
		}
	}
	parkStart := time.Now()
	parked, err := a.cfg.Sessions.Park(ctx, ver, pre, each)
	if err != nil {
		if st != nil {
			if _, _, _, serr := st.sent(); serr != nil {
				// The send's own failure says more than the park's.
				return a.sendFailure(serr)
			}
		}
		return err
	}
	a.parked = parked
	parkDur := time.Since(parkStart)
	var moved, sent int
	if st != nil {
		moved, sent, err = a.endStream(st, presentLen(pre), parkDur)
	} else {
		moved, sent, err = a.sendParked(hello, ver, parked.Items(), parkDur)
	}
	if err != nil {
		return err
	}
	sentAt := time.Now()
	n, err := conn.WaitPrepared(a.deadline)
	if err != nil {
		return a.childFailure("preparing sessions", err)
	}
	if n != sent {
		return fmt.Errorf("new process prepared %d of %d items", n, sent)
	}

	// Commit. The child acknowledges by becoming Ready, and touches no
	// session before: until then every session is still ours to resume.
	// Ready is the point of no return.
	if err := handoff.Fault(handoff.FaultOldBeforeCommit); err != nil {
		return err
	}
	if !stopWatch() {
		return errStopping
	}
	preparedAt := time.Now()
	a.answer = nil
	if err := conn.Commit(); err != nil {
		// The sessions need not wait for the child's exit status.
		a.resume()
		return a.childFailure("sending commit", err)
	}
	if <-a.childDone; a.childErr != nil {
		return fmt.Errorf("new process failed after commit, before ready: %w", a.childErr)
	}
	readyAt := time.Now()
	parked.Commit()
	v.SessionsMoved = moved
	v.DurationMS = MS(time.Since(v.Started))
	// The stalls are the new process's to measure, once every moved
	// publisher has read there: up to its report's bound, 2 s, at 10,000
	// streams. Waiting for them here kept this process, and its memory,
	// alive that long after the sessions had gone; the new process records
	// and logs the completed verdict, and `mediad upgrade` fetches it.
	v.StallsPending = true
	// Where an upgrade's time goes, for whoever tunes it: start to hello
	// (the new binary starting), sending the static parts ahead and the
	// new process building them, park, migrate and send, the new process
	// preparing the sessions, commit to ready, and letting go of the
	// sessions here.
	a.cfg.Log.Info().Float64("hello_ms", MS(helloAt.Sub(v.Started))).Float64("presend_ms", MS(sentAhead.Sub(presendStart))).
		Int("presend", presentLen(pre)).Float64("built_ahead_ms", MS(parkStart.Sub(sentAhead))).Float64("park_ms", MS(parkDur)).
		Float64("send_ms", MS(sentAt.Sub(parkStart)-parkDur)).Float64("prepare_ms", MS(preparedAt.Sub(sentAt))).
		Float64("ready_ms", MS(readyAt.Sub(preparedAt))).Float64("let_go_ms", MS(time.Since(readyAt))).
		Msg("upgrade phases")
	return nil
}

func presentLen(pre Presented) int {
	if pre == nil {
		return 0
	}
	return pre.Len()
}

// processItem is the process envelope that goes after the sessions, in
// the version sent, or nothing when that version does not carry one.
func (a *attempt) processItem(ver uint32, moved int) ([]handoff.Item, error) {
	if a.cfg.ProcessState == nil || ver < a.cfg.ProcessSince {
		return nil, nil
	}
	cur := *a.v
	cur.SessionsMoved = moved
	env, err := a.cfg.ProcessState(cur)
	if err != nil {
		return nil, fmt.Errorf("process state: %w", err)
	}
	return []handoff.Item{{Envelope: env}}, nil
}

// endStream completes a send that went as the sessions parked: the
// process envelope, then End with the totals. It returns the number of
// sessions sent, which the bases sent ahead (presented) are not (their
// sessions went again as tails, or whole), and of items in all.
func (a *attempt) endStream(st *streamer, presented int, parkDur time.Duration) (moved, sent int, err error) {
	items, _, stateBytes, _ := st.sent()
	moved = items - presented
	a.logParked(moved, stateBytes, parkDur)
	// The service's counters and history travel too, from the version
	// that carries them; a build that reads only older ones starts afresh.
	proc, err := a.processItem(st.ver, moved)
	if err != nil {
		return 0, 0, err
	}
	if proc != nil {
		if err := st.send(proc); err != nil {
			return 0, 0, a.sendFailure(err)
		}
	}
	if err := a.conn.SendEnd(); err != nil {
		return 0, 0, a.childFailure("sending sessions", err)
	}
	return moved, items + len(proc), nil
}

// sendParked sends every parked session at once, for a new process that
// needs the exact totals first: the plan, the batches, End. It returns the
// number of sessions sent and of items in all.
func (a *attempt) sendParked(hello handoff.Hello, ver uint32, sessions []handoff.Item, parkDur time.Duration) (moved, sent int, err error) {
	conn := a.conn
	items, fds, stateBytes, err := migrateItems(a.cfg.Convert, sessions, ver)
	if err != nil {
		return 0, 0, err
	}
	a.logParked(len(sessions), stateBytes, parkDur)
	proc, err := a.processItem(ver, len(sessions))
	if err != nil {
		return 0, 0, err
	}
	// Migrated as the streamed path migrates it, with the same error.
	proc, _, _, err = migrateItems(a.cfg.Convert, proc, ver)
	if err != nil {
		return 0, 0, err
	}
	items = append(items, proc...)
	// The bound checked before the park covers what it exported, unless a
	// session arrived in between: the exact count is checked again.
	if err := handoff.CheckFDBudget(hello, fds); err != nil {
		return 0, 0, a.refuse(err, err)
	}
	if err := conn.SendPlan(handoff.Plan{Version: ver, Items: len(items), FDs: fds}); err != nil {
		return 0, 0, a.childFailure("sending plan", err)
	}
	if err := conn.SendItems(items); err != nil {
		return 0, 0, a.childFailure("sending sessions", err)
	}
	if err := conn.SendEnd(); err != nil {
		return 0, 0, a.childFailure("sending sessions", err)
	}
	return len(sessions), len(items), nil
}

func (a *attempt) logParked(sessions, stateBytes int, parkDur time.Duration) {
	a.cfg.Log.Info().Int("sessions", sessions).Int("state_bytes", stateBytes).Float64("park_ms", MS(parkDur)).
		Uint32("state_version", a.v.StateVersion).Msg("sessions parked")
}

// sendFailure names a failed streamed send: the socket's, with what is
// known of the child, or the migration's or budget's own.
func (a *attempt) sendFailure(err error) error {
	if se := (*sendError)(nil); errors.As(err, &se) {
		return a.childFailure("sending sessions", se.err)
	}
	return err
}

// watchChild runs the Process's Upgrade: the child's start, and its fate.
//
// The child dying or timing out must unblock whatever the steps wait for
// on the socket: before Hello, the Process still holds a copy of the
// child's end, so its death alone does not end our reads. Dropping that
// copy (not closing our end) keeps a Reject the child sent before dying
// readable: closing raced the read and lost the reason (CI saw a bad config
// reported as a bare "exit status 2"). After Hello the parent holds no copy
// and the child's death ends our reads by itself.
func (a *attempt) watchChild(ctx context.Context) {
	err := a.cfg.Process.Upgrade(ctx)
	if err != nil && !a.helloSeen.Load() {
		if gerr := a.conn.ChildGone(); gerr != nil {
			a.cfg.Log.Warn().Err(gerr).Msg("upgrade: dropping the failed child's socket")
			_ = a.conn.Close()
		}
	}
	a.childErr = err
	close(a.childDone)
}

// childFailure names what went wrong with the child at stage: its Reject,
// its exit status when it has gone, or the socket's error.
func (a *attempt) childFailure(stage string, err error) error {
	if re := (*handoff.RejectError)(nil); errors.As(err, &re) {
		if stage == "before hello" {
			return fmt.Errorf("new process %s refused to take over: %s", a.exe, re.Reason)
		}
		return fmt.Errorf("new process rejected the sessions: %s", re.Reason)
	}
	// A child that closed its end is exiting, and its exit status says
	// why: wait for the Process to report it. Any other socket error may
	// come from a live child.
	wait := 100 * time.Millisecond
	if errors.Is(err, handoff.ErrPeerClosed) {
		wait = max(wait, time.Until(a.deadline))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-a.childDone:
		if a.childErr != nil {
			return fmt.Errorf("new process %s failed %s: %w", a.exe, stage, a.childErr)
		}
	case <-t.C:
	}
	return fmt.Errorf("%s: %w", stage, err)
}

// refuse turns the child away with reason, before it was sent anything,
// and fails the attempt with err.
func (a *attempt) refuse(reason, err error) error {
	a.answer = nil
	_ = a.conn.SendRefuse(reason.Error())
	return err
}

func (a *attempt) resume() {
	if a.parked != nil && !a.resumed {
		a.resumed = true
		a.parked.Resume()
	}
}

// rollback undoes a failed attempt: every parked session carries on here,
// the child is told to give up, and the Process's verdict on it is awaited
// so that the next upgrade starts clean; then the outbox delivers again.
func (a *attempt) rollback(err error) error {
	a.resume()
	if a.answer != nil {
		_ = a.answer(err.Error())
	}
	if <-a.childDone; a.childErr == nil {
		a.cfg.Log.Error().Msg("new process became ready after abort")
	}
	if a.paused {
		a.cfg.Outbox.Resume()
	}
	if a.Parent.ctx.Err() != nil && !errors.Is(err, errStopping) {
		err = fmt.Errorf("%w: %w", errStopping, err)
	}
	return err
}
