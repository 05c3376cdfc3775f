package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/ingest"
	"github.com/mediad/mediad/ingest/webhook"
	"github.com/mediad/mediad/migrate"
	"github.com/mediad/mediad/state"
)

// Verdict is the outcome of one upgrade, as logged, kept in the history and
// returned to `mediad upgrade`.
type Verdict struct {
	Outcome       string    `json:"outcome"` // "success", "failed" or "refused"
	Error         string    `json:"error,omitempty"`
	Started       time.Time `json:"started"`
	DurationMS    float64   `json:"duration_ms"`
	OldPID        int       `json:"old_pid"`
	NewPID        int       `json:"new_pid,omitempty"`
	OldVersion    string    `json:"old_version"`
	NewVersion    string    `json:"new_version,omitempty"`
	StateVersion  uint32    `json:"state_version,omitempty"`
	SessionsMoved int       `json:"sessions_moved"`
	// Stall figures: for each moved session that was reading, the time from
	// the old process's last read to the new process's first.
	StallP50MS   float64 `json:"stall_p50_ms"`
	StallP99MS   float64 `json:"stall_p99_ms"`
	WorstStallMS float64 `json:"worst_stall_ms"`
	Stalls       int     `json:"stalls_measured"`
	// committed: past the point of no return, the sessions are the new
	// process's whatever happens next.
	committed bool
}

// upgrader runs live upgrades of this process, one at a time.
type upgrader struct {
	upg      *tableflip.Upgrader
	srv      *ingest.Server
	ledger   *ledger
	log      zerolog.Logger
	timeout  time.Duration
	busy     atomic.Bool
	inflight sync.WaitGroup
	// hooks: its outbox goes with the sessions, and it hears every
	// verdict but a success, which the new process reports.
	hooks *webhook.Hooks
}

func newUpgrader(upg *tableflip.Upgrader, srv *ingest.Server, l *ledger, log zerolog.Logger, timeout time.Duration) *upgrader {
	return &upgrader{upg: upg, srv: srv, ledger: l, log: log, timeout: timeout}
}

// Wait returns once no upgrade is in flight, or when ctx ends.
func (u *upgrader) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		u.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (u *upgrader) record(v Verdict) Verdict {
	u.ledger.record(v)
	logUpgrade(u.log, v)
	if v.Outcome != "success" && u.hooks != nil {
		u.hooks.Notify(webhook.EventUpgrade, webhook.Subject{}, verdictFields(v))
	}
	return v
}

// verdictFields is a verdict as the on_upgrade webhook's fields.
func verdictFields(v Verdict) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func logUpgrade(log zerolog.Logger, v Verdict) {
	ev := log.Info()
	if v.Outcome != "success" {
		ev = log.Error()
	}
	ev.Str("outcome", v.Outcome).Str("error", v.Error).
		Float64("duration_ms", v.DurationMS).Int("sessions_moved", v.SessionsMoved).
		Float64("worst_stall_ms", v.WorstStallMS).Float64("stall_p99_ms", v.StallP99MS).
		Int("old_pid", v.OldPID).Int("new_pid", v.NewPID).
		Str("old_version", v.OldVersion).Str("new_version", v.NewVersion).
		Msg("upgrade")
}

// Upgrade replaces this process with the binary now at its path, moving
// every session (DESIGN.md §4). On success the caller exits once the
// verdict is delivered; on failure every session carries on here.
func (u *upgrader) Upgrade(fault string) Verdict {
	v := Verdict{Started: time.Now().UTC(), OldPID: os.Getpid(), OldVersion: buildVersion()}
	if !u.busy.CompareAndSwap(false, true) {
		v.Outcome, v.Error = "refused", "an upgrade is already in progress"
		return u.record(v)
	}
	u.inflight.Add(1)
	defer u.inflight.Done()
	err := u.run(&v, fault)
	if v.DurationMS == 0 {
		v.DurationMS = ms(time.Since(v.Started))
	}
	if err != nil {
		// tableflip leaves the pipes of a failed child and our placeholder
		// for its handoff socket to finalizers: collect them now, so that
		// failed attempts leak no descriptor.
		runtime.GC()
		v.Outcome, v.Error = "failed", err.Error()
		if errors.As(err, new(*refusedError)) {
			v.Outcome = "refused"
		}
		u.busy.Store(false)
		return u.record(v)
	}
	v.Outcome = "success"
	// busy stays set: this process is finished and must not start another.
	return u.record(v)
}

func (u *upgrader) run(v *Verdict, fault string) (err error) {
	deadline := time.Now().Add(u.timeout)
	exe, err := newBinary()
	if err != nil {
		return err
	}
	// Right after an upgrade this process may still be waiting for its own
	// parent to exit, which tableflip requires before another.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := u.upg.WaitForParent(ctx); err != nil {
		return fmt.Errorf("previous process has not exited: %w", err)
	}
	// The child's end of a fresh socketpair rides with the listeners;
	// nothing else can reach it.
	conn, err := handoff.Offer(u.upg.Fds)
	if err != nil {
		return fmt.Errorf("handoff socket: %w", err)
	}
	defer conn.Close()

	// The child reads its environment when spawned; it is taken back once
	// this attempt ends, so the next upgrade starts clean.
	defer setFaultEnv(fault)()
	upDone := make(chan error, 1)
	go func() { upDone <- upgradeOnceParentGone(ctx, u.upg) }()

	// The child dying or timing out must unblock whatever we wait for on
	// the socket: before Hello, tableflip still holds a copy of the child's
	// end, so its death alone does not end our reads. Dropping that copy
	// (not closing our end) keeps a Reject the child sent before dying
	// readable: closing raced the read and lost the reason (CI saw a bad
	// config reported as a bare "exit status 2"). After Hello the parent
	// holds no copy and the child's death ends our reads by itself.
	var helloSeen atomic.Bool
	// childDone is closed once childErr holds tableflip's verdict on the
	// child, so that every step may read it, in any order, any number of
	// times.
	var childErr error
	childDone := make(chan struct{})
	go func() {
		e := <-upDone
		if e != nil && !helloSeen.Load() {
			if err := conn.ChildGone(); err != nil {
				u.log.Warn().Err(err).Msg("upgrade: dropping the failed child's socket")
				conn.Close()
			}
		}
		childErr = e
		close(childDone)
	}()
	childFailure := func(stage string, err error) error {
		if re := (*handoff.RejectError)(nil); errors.As(err, &re) {
			if stage == "before hello" {
				return fmt.Errorf("new process %s refused to take over: %s", exe, re.Reason)
			}
			return fmt.Errorf("new process rejected the sessions: %s", re.Reason)
		}
		// A child that closed its end is exiting, and its exit status says
		// why: wait for tableflip to report it. Any other socket error may
		// come from a live child.
		wait := 100 * time.Millisecond
		if errors.Is(err, handoff.ErrPeerClosed) {
			wait = max(wait, time.Until(deadline))
		}
		select {
		case <-childDone:
			if childErr != nil {
				return fmt.Errorf("new process %s failed %s: %w", exe, stage, childErr)
			}
		case <-time.After(wait):
		}
		return fmt.Errorf("%s: %w", stage, err)
	}
	// waitChild waits for tableflip's verdict on a child that was told to
	// give up, so that the next upgrade starts clean.
	waitChild := func() {
		if <-childDone; childErr == nil {
			u.log.Error().Msg("new process became ready after abort")
		}
	}

	hello, err := conn.ReadHello(deadline)
	helloSeen.Store(err == nil)
	if err != nil {
		err = childFailure("before hello", err)
		waitChild()
		return err
	}
	v.NewPID, v.NewVersion = hello.PID, hello.Build
	helloAt := time.Now()
	// A child that stops reading must not block our sends past the
	// upgrade's deadline.
	if err := conn.SetWriteDeadline(deadline); err != nil {
		err = childFailure("after hello", err)
		waitChild()
		return err
	}
	sendMin, sendMax := stateRange()
	ver, err := handoff.ChooseVersion(sendMin, sendMax, hello.ReadsMin, hello.ReadsMax)
	if err != nil {
		_ = conn.SendRefuse(err.Error())
		waitChild()
		return &refusedError{fmt.Errorf("new binary %s refused at hello, nothing parked: %w", hello.Build, err)}
	}
	v.StateVersion = ver

	// The outbox goes with the sessions: no new delivery starts from here,
	// and one in flight gets a moment to finish, while nothing is parked
	// yet, so that the new process does not send it again.
	if u.hooks != nil {
		u.hooks.Pause()
		idleCtx, idleCancel := context.WithTimeout(ctx, time.Second)
		_ = u.hooks.WaitIdle(idleCtx)
		idleCancel()
		defer func() {
			if err != nil && !v.committed {
				u.hooks.Resume()
			}
		}()
	}

	parkStart := time.Now()
	parked, err := u.srv.ParkFor(ctx, ver)
	if err != nil {
		_ = conn.Abort(err.Error())
		waitChild()
		return err
	}
	parkDur := time.Since(parkStart)
	u.log.Info().Int("sessions", len(parked.Items)).Float64("park_ms", ms(parkDur)).Uint32("state_version", ver).Msg("sessions parked")
	abort := func(err error) error {
		parked.Resume()
		_ = conn.Abort(err.Error())
		waitChild()
		return err
	}
	items := make([]handoff.Item, len(parked.Items), len(parked.Items)+1)
	fds := 0
	for i, it := range parked.Items {
		env, err := migrate.Convert(it.Envelope, ver)
		if err != nil {
			return abort(fmt.Errorf("migrate %s to v%d: %w", it.Envelope.Kind, ver, err))
		}
		items[i] = handoff.Item{Envelope: env, Files: it.Files}
		fds += len(it.Files)
	}
	// From state v3 on the service's counters and history travel too; a
	// build that reads only older versions starts them afresh.
	if ver >= 3 {
		cur := *v
		cur.SessionsMoved = len(parked.Items)
		ps := u.ledger.export(u.srv.Totals(), cur)
		if u.hooks != nil {
			ob := u.hooks.Export()
			ps.Outbox = &ob
		}
		env, err := state.Encode(state.KindProcess, ps)
		if err == nil {
			env, err = migrate.Convert(env, ver)
		}
		if err != nil {
			return abort(fmt.Errorf("process state: %w", err))
		}
		items = append(items, handoff.Item{Envelope: env})
	}
	if err := handoff.CheckFDBudget(hello, fds); err != nil {
		_ = conn.SendRefuse(err.Error())
		parked.Resume()
		waitChild()
		return err
	}
	if err := conn.SendPlan(handoff.Plan{Version: ver, Items: len(items), FDs: fds}); err != nil {
		return abort(childFailure("sending plan", err))
	}
	if err := conn.SendItems(items); err != nil {
		return abort(childFailure("sending sessions", err))
	}
	if err := conn.SendEnd(); err != nil {
		return abort(childFailure("sending sessions", err))
	}
	sentAt := time.Now()
	n, err := conn.WaitPrepared(deadline)
	if err != nil {
		return abort(childFailure("preparing sessions", err))
	}
	if n != len(items) {
		return abort(fmt.Errorf("new process prepared %d of %d sessions", n, len(items)))
	}
	// Commit. The child acknowledges by becoming Ready (tableflip), and
	// touches no session before: until then every session is still ours to
	// resume. Ready is the point of no return.
	if err := handoff.Fault(handoff.FaultOldBeforeCommit); err != nil {
		return abort(err)
	}
	preparedAt := time.Now()
	if err := conn.Commit(); err != nil {
		parked.Resume()
		waitChild()
		return childFailure("sending commit", err)
	}
	if <-childDone; childErr != nil {
		parked.Resume()
		return fmt.Errorf("new process failed after commit, before ready: %w", childErr)
	}
	v.committed = true
	readyAt := time.Now()
	// Where an upgrade's time goes, for whoever tunes it: start to hello
	// (the new binary starting), park, migrate and send, the new process
	// preparing the sessions, and commit to ready.
	u.log.Info().Float64("hello_ms", ms(helloAt.Sub(v.Started))).Float64("park_ms", ms(parkDur)).
		Float64("send_ms", ms(sentAt.Sub(parkStart)-parkDur)).Float64("prepare_ms", ms(preparedAt.Sub(sentAt))).
		Float64("ready_ms", ms(readyAt.Sub(preparedAt))).Msg("upgrade phases")
	parked.Commit()
	v.SessionsMoved = len(parked.Items)
	v.DurationMS = ms(time.Since(v.Started))
	if rep, err := conn.ReadReport(time.Now().Add(3 * time.Second)); err == nil {
		v.Stalls = rep.Stalls
		v.StallP50MS, v.StallP99MS, v.WorstStallMS = rep.StallP50MS, rep.StallP99MS, rep.WorstStallMS
	} else {
		u.log.Warn().Err(err).Msg("no stall report from the new process")
	}
	return nil
}

// newBinary is the binary tableflip will start: the path this process was
// started from, now holding whatever was installed there.
func newBinary() (string, error) {
	exe := os.Args[0]
	if !strings.Contains(exe, "/") {
		p, err := exec.LookPath(exe)
		if err != nil {
			return "", fmt.Errorf("new binary %s: %w", exe, err)
		}
		exe = p
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return "", fmt.Errorf("new binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("new binary %s is not a regular file", exe)
	}
	if err := unix.Access(exe, unix.X_OK); err != nil {
		return "", fmt.Errorf("new binary %s is not executable: %w", exe, err)
	}
	return exe, nil
}

// refuseTakeOver tells the old process, when this one was started by an
// upgrade, that it cannot take over and why: the reason then reaches the
// verdict instead of a bare exit status, and the old process, having parked
// nothing, carries on. upg may be nil when setup failed before one existed.
func refuseTakeOver(upg *tableflip.Upgrader, reason error) {
	if upg == nil {
		var err error
		if upg, err = tableflip.New(tableflip.Options{}); err != nil {
			return
		}
		defer upg.Stop()
	}
	if !upg.HasParent() {
		return
	}
	conn, err := handoff.Accept(upg.Fds)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SendReject(reason.Error())
}

// refusedError marks an upgrade refused before anything parked.
type refusedError struct{ error }

func (e *refusedError) Unwrap() error { return e.error }

// stateReads overrides the state versions this build reads and writes,
// "MIN-MAX", for tests that need a binary speaking other versions; set
// with -ldflags "-X main.stateReads=3-3". Empty means what the build knows.
var stateReads = ""

func stateRange() (uint32, uint32) {
	var lo, hi uint32
	if _, err := fmt.Sscanf(stateReads, "%d-%d", &lo, &hi); err == nil && lo <= hi {
		return lo, hi
	}
	return migrate.Oldest, state.Version
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// takeOver is the new process's side: hello, receive, migrate, restore,
// prepared, then commit. It returns the restored sessions, not yet running:
// the caller becomes Ready first, which tells the old process to let go,
// and starts them after. It also returns the connection on which to send
// the stall report.
func takeOver(upg *tableflip.Upgrader, srv *ingest.Server, log zerolog.Logger, timeout time.Duration) (*ingest.Restored, *handoff.Conn, *state.Process, error) {
	conn, err := handoff.Accept(upg.Fds)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("handoff socket: %w", err)
	}
	deadline := time.Now().Add(timeout)
	var lim unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	open, _ := handoff.OpenFDCount()
	readsMin, readsMax := stateRange()
	hello := handoff.Hello{Build: buildVersion(), ReadsMin: readsMin, ReadsMax: readsMax, PID: os.Getpid(), NoFileLimit: lim.Cur, OpenFDs: open}
	if err := conn.SendHello(hello); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	plan, err := conn.ReadPlan(deadline)
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	items, err := conn.ReadItems(deadline)
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	parked := make([]ingest.ParkedSession, 0, len(items))
	var (
		convErr error
		proc    *state.Process
	)
	for _, it := range items {
		if convErr != nil {
			break
		}
		ps := ingest.ParkedSession{Envelope: it.Envelope, Files: it.Files}
		ps.Envelope, convErr = migrate.Convert(it.Envelope, state.Version)
		if convErr == nil && ps.Envelope.Kind == state.KindProcess {
			convErr = decodeProcess(ps, &proc)
			continue
		}
		parked = append(parked, ps)
	}
	if convErr == nil {
		convErr = handoff.Fault("restore")
	}
	if convErr != nil {
		for _, it := range items {
			for _, f := range it.Files {
				f.Close()
			}
		}
		_ = conn.SendReject(convErr.Error())
		conn.Close()
		return nil, nil, nil, fmt.Errorf("sessions of state v%d: %w", plan.Version, convErr)
	}
	restored, err := srv.Restore(parked)
	if err != nil {
		_ = conn.SendReject(err.Error())
		conn.Close()
		return nil, nil, nil, err
	}
	// Prepared counts every item taken, the process envelope included.
	prepared := restored.Len()
	if proc != nil {
		prepared++
	}
	if err := conn.SendPrepared(prepared); err != nil {
		restored.Discard()
		conn.Close()
		return nil, nil, nil, err
	}
	commit, err := conn.WaitCommit(deadline)
	if err != nil || !commit {
		restored.Discard()
		conn.Close()
		if err == nil {
			err = errors.New("old process aborted the upgrade")
		}
		return nil, nil, nil, err
	}
	if err := handoff.Fault(handoff.FaultAfterCommit); err != nil {
		restored.Discard()
		conn.Close()
		return nil, nil, nil, err
	}
	log.Info().Int("sessions", restored.Len()).Uint32("state_version", plan.Version).Msg("sessions prepared and committed")
	return restored, conn, proc, nil
}

// decodeProcess takes the one process envelope of a handoff.
func decodeProcess(ps ingest.ParkedSession, proc **state.Process) error {
	if *proc != nil {
		return errors.New("two process envelopes")
	}
	if len(ps.Files) > 0 {
		return fmt.Errorf("process envelope with %d descriptors", len(ps.Files))
	}
	var p state.Process
	if err := state.Decode(ps.Envelope, &p); err != nil {
		return err
	}
	*proc = &p
	return nil
}

// reportStalls waits until every restored session that was reading has
// read again (or a bound passes), sends the figures to the old process and
// records the upgrade that started this process, as the old process
// described it, in the ledger it handed over.
func reportStalls(srv *ingest.Server, restored *ingest.Restored, conn *handoff.Conn, l *ledger, hooks *webhook.Hooks, proc *state.Process, readyAt time.Time, log zerolog.Logger) {
	defer conn.Close()
	want := restored.Readers()
	end := time.Now().Add(2 * time.Second)
	for len(srv.Stalls()) < want && time.Now().Before(end) {
		time.Sleep(5 * time.Millisecond)
	}
	stalls := srv.Stalls()
	slices.Sort(stalls)
	rep := handoff.Report{Stalls: len(stalls)}
	if len(stalls) > 0 {
		rep.StallP50MS = ms(stalls[len(stalls)/2])
		rep.StallP99MS = ms(stalls[min(len(stalls)-1, len(stalls)*99/100)])
		rep.WorstStallMS = ms(stalls[len(stalls)-1])
	}
	_ = conn.SendReport(rep)
	if proc == nil {
		return
	}
	v := verdictFromState(proc.Current)
	v.Outcome, v.Error = "success", ""
	v.NewPID, v.NewVersion = os.Getpid(), buildVersion()
	v.DurationMS = ms(readyAt.Sub(v.Started))
	v.Stalls, v.StallP50MS, v.StallP99MS, v.WorstStallMS = rep.Stalls, rep.StallP50MS, rep.StallP99MS, rep.WorstStallMS
	l.record(v)
	l.observeStalls(stalls)
	hooks.Notify(webhook.EventUpgrade, webhook.Subject{}, verdictFields(v))
}

// upgradeOnceParentGone calls upg.Upgrade after WaitForParent has returned.
// tableflip's run loop learns of the parent's exit on its own, from the
// same event WaitForParent saw; an Upgrade request that reaches the loop
// first is answered "parent hasn't exited" (its select may pick either).
// That answer spawns nothing, so it is asked again until the loop has
// caught up or ctx ends.
func upgradeOnceParentGone(ctx context.Context, upg *tableflip.Upgrader) error {
	for {
		err := upg.Upgrade()
		if err == nil || err.Error() != "parent hasn't exited" || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}
