package main

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest"
)

func TestFireOnSignal(t *testing.T) {
	tr := newJoinTrigger()
	fireOnSignal(t.Context(), tr)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tr.fired:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGUSR1 did not fire the trigger")
	}
	if tr.at.IsZero() {
		t.Error("the trigger fired without its moment")
	}
	tr.fire() // a second time does nothing
}

// Players held back by a trigger: none plays before it fires, and each
// plays within -join-after + -join-within of it.
func TestLoadPlayersJoinOnTrigger(t *testing.T) {
	_, addr := startServer(t, ingest.Config{GOPCacheBytes: 4 << 20})
	var log bytes.Buffer
	cfg := testConfig(addr, "trigger", 3, 1, 3*time.Second)
	cfg.joinAfter, cfg.joinWithin = 100*time.Millisecond, 400*time.Millisecond
	cfg.trigger = newJoinTrigger()
	cfg.verbose = true
	fire := time.AfterFunc(1200*time.Millisecond, cfg.trigger.fire)
	defer fire.Stop()
	rep, err := run(t.Context(), cfg, testClip(t), &log)
	if err != nil {
		t.Fatal(err)
	}
	if pt := rep.Players; pt.OK != 3 || pt.SawKeyframe != 3 {
		t.Fatalf("players: %+v\n%s", pt, log.String())
	}
	for _, p := range rep.PlayerList {
		// The upper bound leaves room for a slow machine's scheduling.
		if p.PlayAfterTriggerMs < 100 || p.PlayAfterTriggerMs > 500+250 {
			t.Errorf("player of %s played %.0f ms after the trigger, want [100, 500)", p.Key, p.PlayAfterTriggerMs)
		}
	}
}

// Without a trigger a player's moment counts from its publisher, and the
// report says there was no trigger.
func TestNoTrigger(t *testing.T) {
	r := &runner{cfg: &runConfig{}}
	if got := r.msAfterTrigger(time.Now()); got != -1 {
		t.Errorf("msAfterTrigger without a trigger = %g, want -1", got)
	}
}
