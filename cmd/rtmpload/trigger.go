package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Players that join on a trigger (-join-on-signal): a benchmark that wants
// viewers to join at a moment of its choosing, such as right after a live
// upgrade of the server, sends rtmpload SIGUSR1 then. Until the trigger
// fires, every player waits, even once its publisher is live; from the
// trigger each joins after -join-after plus a uniformly random part of
// -join-within, as it would from its publisher going live without one. The
// report gives each player's moment (PlayerReport.PlayAfterTriggerMs).

// joinTrigger fires once; players wait on it.
type joinTrigger struct {
	once  sync.Once
	fired chan struct{}
	at    time.Time // written before fired is closed
}

func newJoinTrigger() *joinTrigger { return &joinTrigger{fired: make(chan struct{})} }

// fire records the moment and releases every waiting player; later calls do
// nothing.
func (t *joinTrigger) fire() {
	t.once.Do(func() {
		t.at = time.Now()
		close(t.fired)
	})
}

// fireOnSignal fires t when the process receives SIGUSR1, until ctx is done.
// The handler is installed before it returns, so a SIGUSR1 sent from then
// on never takes the default action of ending the process.
func fireOnSignal(ctx context.Context, t *joinTrigger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(ch)
		select {
		case <-ch:
			t.fire()
		case <-ctx.Done():
		}
	}()
}

// joinFrom waits for the moment a player's join delay counts from: the
// trigger when there is one, now otherwise. It reports false if the run
// stopped first.
func (r *runner) joinFrom() (time.Time, bool) {
	t := r.cfg.trigger
	if t == nil {
		return time.Now(), r.stop.Err() == nil
	}
	select {
	case <-t.fired:
		return t.at, true
	case <-r.stop.Done():
		return time.Time{}, false
	}
}

// msAfterTrigger is how long after the trigger fired at was, or -1 without
// a trigger.
func (r *runner) msAfterTrigger(at time.Time) float64 {
	t := r.cfg.trigger
	if t == nil {
		return -1
	}
	select {
	case <-t.fired:
		return float64(at.Sub(t.at)) / 1e6
	default:
		return -1
	}
}
