//go:build faultinject

package handoff

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// FaultPause is how long the pause action sleeps.
const FaultPause = time.Second

// Fault acts on point as MEDIAD_FAULT says. Actions: crash exits the
// process at once with status 3, without any cleanup; hang blocks the
// calling goroutine forever; reject returns an error wrapping ErrFault;
// pause sleeps for FaultPause, long enough for the other process to act
// first (crash, say) on a loaded machine. An unarmed point returns nil; a
// malformed MEDIAD_FAULT is an error at every point, so that a typo cannot
// pass for a fault that never fired.
func Fault(point string) error {
	spec := os.Getenv(FaultEnv)
	if spec == "" {
		return nil
	}
	for _, rule := range strings.Split(spec, ",") {
		p, action, ok := strings.Cut(strings.TrimSpace(rule), "=")
		if !ok {
			return fmt.Errorf("handoff: %s=%q: rule %q is not point=action", FaultEnv, spec, rule)
		}
		if p != point {
			continue
		}
		switch action {
		case "crash":
			os.Exit(3)
		case "hang":
			// A sleeping loop rather than select{}: the runtime would call
			// a process whose goroutines all block on channels deadlocked,
			// and crash it.
			for {
				time.Sleep(time.Hour)
			}
		case "pause":
			time.Sleep(FaultPause)
		case "reject":
			return fmt.Errorf("%w at %s", ErrFault, point)
		default:
			return fmt.Errorf("handoff: %s=%q: unknown action %q", FaultEnv, spec, action)
		}
	}
	return nil
}

// ArmChild arms spec (FaultEnv's syntax) in the new process that the next
// upgrade starts, which reads its environment when it is spawned, and
// returns the function that takes it back, so that the upgrade after it
// starts clean. An empty spec arms nothing.
func ArmChild(spec string) (disarm func()) {
	if spec == "" {
		return func() {}
	}
	old, had := os.LookupEnv(FaultEnv)
	os.Setenv(FaultEnv, spec)
	return func() {
		if had {
			os.Setenv(FaultEnv, old)
		} else {
			os.Unsetenv(FaultEnv)
		}
	}
}
