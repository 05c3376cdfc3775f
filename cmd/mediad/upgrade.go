package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/handoff/upgrade"
	"github.com/mediad/mediad/ingest"
	mediapkg "github.com/mediad/mediad/ingest/media"
	"github.com/mediad/mediad/ingest/webhook"
	"github.com/mediad/mediad/migrate"
	"github.com/mediad/mediad/state"
)

// Verdict is the outcome of one upgrade, as logged, kept in the history and
// returned to `mediad upgrade`.
type Verdict = upgrade.Verdict

// processSince is the first state version that carries the process
// envelope (the ledger, then the webhook outbox).
const processSince = 3

// upgrader is the upgrade engine's old-process side wired to this
// process: tableflip, the ingest server, migrate, the ledger and the
// webhooks.
type upgrader struct {
	*upgrade.Parent
	srv      *ingest.Server
	ledger   *ledger
	sessions *ingestSessions
	// hooks: its outbox goes with the sessions, and it hears every
	// verdict but a success, which the new process reports. Set before the
	// first upgrade; nil calls none.
	hooks *webhook.Hooks
}

func newUpgrader(upg *tableflip.Upgrader, srv *ingest.Server, l *ledger, log zerolog.Logger, timeout time.Duration) *upgrader {
	u := &upgrader{srv: srv, ledger: l, sessions: &ingestSessions{srv: srv}}
	writesMin, writesMax := stateRange()
	u.Parent = upgrade.NewParent(upgrade.Config{
		Process:      tableflipProcess{upg},
		Sessions:     u.sessions,
		Convert:      migrate.Convert,
		WritesMin:    writesMin,
		WritesMax:    writesMax,
		Build:        buildVersion(),
		Timeout:      timeout,
		Outbox:       outbox{u},
		ProcessState: u.processState,
		ProcessSince: processSince,
		Record:       u.record,
		Log:          log,
	})
	return u
}

func (u *upgrader) record(v Verdict) {
	u.ledger.record(v)
	if v.Outcome != upgrade.Success && u.hooks != nil {
		u.hooks.Notify(webhook.EventUpgrade, webhook.Subject{}, v.Fields())
	}
}

// processState is the process envelope: the service's counters and
// history, and the webhook outbox.
func (u *upgrader) processState(cur Verdict) (state.Envelope, error) {
	ps := u.ledger.export(u.srv.Totals(), cur)
	if u.hooks != nil {
		ob := u.hooks.Export()
		ps.Outbox = &ob
	}
	return state.Encode(state.KindProcess, ps)
}

// outbox hands the webhooks to the engine, which holds their deliveries
// back while the sessions move; with no hooks there is nothing to hold.
type outbox struct{ u *upgrader }

func (o outbox) Pause() {
	if o.u.hooks != nil {
		o.u.hooks.Pause()
	}
}

func (o outbox) WaitIdle(ctx context.Context) error {
	if o.u.hooks == nil {
		return nil
	}
	return o.u.hooks.WaitIdle(ctx)
}

func (o outbox) Resume() {
	if o.u.hooks != nil {
		o.u.hooks.Resume()
	}
}

// tableflipProcess starts the new binary through tableflip, with the
// handoff socket among the descriptors it inherits.
type tableflipProcess struct{ upg *tableflip.Upgrader }

func (p tableflipProcess) Binary() (string, error) { return newBinary() }

func (p tableflipProcess) WaitForParent(ctx context.Context) error {
	return p.upg.WaitForParent(ctx)
}

func (p tableflipProcess) Offer() (upgrade.ParentConn, error) {
	c, err := handoff.Offer(p.upg.Fds)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (p tableflipProcess) Upgrade(ctx context.Context) error {
	return upgradeOnceParentGone(ctx, p.upg)
}

func (p tableflipProcess) Stop() {
	if p.upg != nil {
		p.upg.Stop()
	}
}

// ingestSessions are what the engine moves: the ingest server's sessions
// and the media listener's connections.
type ingestSessions struct {
	srv   *ingest.Server
	media atomic.Pointer[mediapkg.HTTP1] // set once the listener is up
}

func (s *ingestSessions) ParkFDs() int {
	n := s.srv.ParkFDs()
	if m := s.media.Load(); m != nil {
		n += m.ParkFDs()
	}
	return n
}

// Presend sends the RTMP sessions' static parts ahead (ingest's Presend).
func (s *ingestSessions) Presend(version uint32, each func([]handoff.Item) error) (upgrade.Presented, error) {
	pre, err := s.srv.Presend(version, func(ps []ingest.ParkedSession) error { return each(handoffItems(ps)) })
	if err != nil || pre == nil {
		return nil, err
	}
	return pre, nil
}

func handoffItems(ps []ingest.ParkedSession) []handoff.Item {
	items := make([]handoff.Item, len(ps))
	for i, it := range ps {
		items[i] = handoff.Item{Envelope: it.Envelope, Borrowed: it.Borrowed, Files: it.Files}
	}
	return items
}

// Park stops the sessions and the viewers' connections at once: a viewer
// waits for the new process either way, so neither need wait for the
// other. With each, the sessions go as they park, and the viewers'
// connections once they all have; sessions whose static part went ahead
// (pre) export their tails.
func (s *ingestSessions) Park(ctx context.Context, version uint32, pre upgrade.Presented, each func([]handoff.Item) error) (upgrade.Parked, error) {
	// No collection from the park to the verdict: one that came due while
	// the sessions exported (what they allocate is the state that moves)
	// ran its marking on the same cores, and its assists in the sessions,
	// while every session waited. A rollback collects again; a committed
	// process exits.
	gcBack := pauseGC()
	m := s.media.Load()
	type parkedConns struct {
		p   *mediapkg.ParkedConns
		err error
	}
	conns := make(chan parkedConns, 1)
	if m != nil {
		go func() {
			p, err := m.Park(ctx, version, mediapkg.ParkBound)
			if err == nil && each != nil && len(p.Items) > 0 {
				items := make([]handoff.Item, len(p.Items))
				for i, it := range p.Items {
					items[i] = handoff.Item{Envelope: it.Envelope, Borrowed: it.Borrowed}
				}
				if err = each(items); err != nil {
					p.Resume()
					p = nil
				}
			}
			conns <- parkedConns{p, err}
		}()
	} else {
		conns <- parkedConns{}
	}
	var eachSession func([]ingest.ParkedSession) error
	if each != nil {
		eachSession = func(ps []ingest.ParkedSession) error { return each(handoffItems(ps)) }
	}
	presented, _ := pre.(*ingest.Presented)
	p, err := s.srv.ParkAfter(ctx, version, presented, eachSession)
	mc := <-conns
	switch {
	case err != nil:
		if mc.p != nil {
			mc.p.Resume()
		}
		gcBack()
		return nil, err
	case mc.err != nil:
		p.Resume()
		gcBack()
		return nil, mc.err
	}
	return ingestParked{p, mc.p, gcBack}, nil
}

type ingestParked struct {
	p      *ingest.Parked
	conns  *mediapkg.ParkedConns // nil without a media listener
	gcBack func()
}

func (p ingestParked) Items() []handoff.Item {
	items := make([]handoff.Item, 0, len(p.p.Items)+p.numConns())
	for _, it := range p.p.Items {
		items = append(items, handoff.Item{Envelope: it.Envelope, Borrowed: it.Borrowed, Files: it.Files})
	}
	if p.conns != nil {
		for _, it := range p.conns.Items {
			items = append(items, handoff.Item{Envelope: it.Envelope, Borrowed: it.Borrowed})
		}
	}
	return items
}

func (p ingestParked) numConns() int {
	if p.conns == nil {
		return 0
	}
	return len(p.conns.Items)
}

func (p ingestParked) Resume() {
	p.p.Resume()
	if p.conns != nil {
		p.conns.Resume()
	}
	p.gcBack()
}

func (p ingestParked) Commit() {
	p.p.Commit()
	if p.conns != nil {
		p.conns.Commit()
	}
	// This process is finishing: what it still serves (HTTP requests
	// until the drain bound) may collect again.
	p.gcBack()
}

// ingestRestorer rebuilds the sessions and connections in the new process.
type ingestRestorer struct {
	srv   *ingest.Server
	media *mediapkg.HTTP1 // nil without a media listener
}

func (r ingestRestorer) Begin() upgrade.Restoring {
	rs := &ingestRestoring{rs: r.srv.BeginRestore(), media: r.media}
	if r.media != nil {
		rs.conns = r.media.NewRestoredConns()
	}
	return rs
}

// ingestRestoring rebuilds the sessions as they arrive.
type ingestRestoring struct {
	rs    *ingest.Restoring
	media *mediapkg.HTTP1
	conns *mediapkg.RestoredConns
	err   error // the first connection that could not be rebuilt
}

func (r *ingestRestoring) Add(items []handoff.Item) {
	ps := make([]ingest.ParkedSession, 0, len(items))
	for _, it := range items {
		if it.Envelope.Kind != state.KindHTTPConn {
			ps = append(ps, ingest.ParkedSession{Envelope: it.Envelope, Files: it.Files})
			continue
		}
		var err error
		switch {
		case r.conns == nil:
			err = errors.New("an HTTP connection came, and this process has no media listener")
		case len(it.Files) != 1:
			err = fmt.Errorf("an HTTP connection came with %d descriptors", len(it.Files))
		case r.err == nil:
			err = r.media.Restore(r.conns, it.Envelope, it.Files[0])
			it.Files = nil
		}
		handoff.CloseItems([]handoff.Item{it})
		if err != nil && r.err == nil {
			r.err = err
		}
	}
	r.rs.Add(ps)
}

// Built waits for the sessions added so far; the HTTP connections are
// rebuilt as they are added.
func (r *ingestRestoring) Built() { r.rs.Built() }

func (r *ingestRestoring) Finish() (upgrade.Restored, error) {
	if r.err != nil {
		r.Abandon()
		return nil, r.err
	}
	restored, err := r.rs.Finish()
	if err != nil {
		if r.conns != nil {
			r.conns.Discard()
		}
		return nil, err
	}
	return &takenOver{in: restored, conns: r.conns}, nil
}

func (r *ingestRestoring) Abandon() {
	r.rs.Abandon()
	if r.conns != nil {
		r.conns.Discard()
	}
}

// takenOver is what a new process took over: sessions, and the viewers'
// connections (nil without a media listener).
type takenOver struct {
	in    *ingest.Restored
	conns *mediapkg.RestoredConns
}

func (t *takenOver) Len() int {
	n := t.in.Len()
	if t.conns != nil {
		n += t.conns.Len()
	}
	return n
}

func (t *takenOver) Discard() {
	t.in.Discard()
	if t.conns != nil {
		t.conns.Discard()
	}
}

// Start lets the sessions run and serves the connections.
func (t *takenOver) Start() {
	t.in.Start()
	if t.conns != nil {
		t.conns.Start()
	}
}

// takeOver is the new process's side: it returns the sessions committed
// to it, not yet running: the caller becomes Ready first, which tells the
// old process to let go, and starts them after. primed returns once the
// heap is warm; the park waits for it (ChildConfig.Prime).
func takeOver(upg *tableflip.Upgrader, srv *ingest.Server, media *mediapkg.HTTP1, log zerolog.Logger, timeout time.Duration, primed func()) (*upgrade.Child, *takenOver, error) {
	conn, err := handoff.Accept(upg.Fds)
	if err != nil {
		return nil, nil, fmt.Errorf("handoff socket: %w", err)
	}
	readsMin, readsMax := stateRange()
	c, err := upgrade.TakeOver(upgrade.ChildConfig{
		Conn: conn, Sessions: ingestRestorer{srv: srv, media: media}, Convert: migrate.Convert,
		ReadsMin: readsMin, ReadsMax: readsMax, Build: buildVersion(), Timeout: timeout, Log: log, Prime: primed,
	})
	if err != nil {
		return nil, nil, err
	}
	return c, c.Sessions.(*takenOver), nil
}

// reportUpgrade, in a new process whose sessions run, measures the stalls
// once every restored publisher has read again (or a bound passes, or ctx
// ends) and sends them to the old process (a build before the old process
// stopped waiting for them still reads them), then records the upgrade
// that started this process, as the old process described it and
// completed with the stalls, in the ledger it handed over, and logs it:
// the one line of a successful upgrade that gives its stalls, and what
// `mediad upgrade` fetches from /api/status.
func reportUpgrade(ctx context.Context, c *upgrade.Child, srv *ingest.Server, restored *takenOver, l *ledger, hooks *webhook.Hooks, readyAt time.Time, log zerolog.Logger) {
	stalls, rep := c.Report(ctx, srv.Stalls, restored.in.Readers())
	v, ok := c.Verdict(buildVersion(), rep, readyAt)
	if !ok {
		return
	}
	l.record(v)
	l.observeStalls(stalls)
	v.Log(log)
	hooks.Notify(webhook.EventUpgrade, webhook.Subject{}, v.Fields())
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
