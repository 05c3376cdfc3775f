//go:build faultinject

package handoff

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestFaultRules(t *testing.T) {
	tests := []struct {
		spec, point string
		want        string // "" for no error
	}{
		{"", FaultMidItems, ""},
		{"after-plan=reject", FaultMidItems, ""},
		{"after-plan=reject", FaultAfterPlan, "injected fault at after-plan"},
		{"before-hello=hang, after-plan=reject", FaultAfterPlan, "injected fault at after-plan"},
		{"after-plan", FaultAfterPlan, "not point=action"},
		{"after-plan=explode", FaultAfterPlan, `unknown action "explode"`},
		{"old-before-commit=pause", FaultOldBeforeCommit, ""},
	}
	for _, tc := range tests {
		t.Setenv(FaultEnv, tc.spec)
		err := Fault(tc.point)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%q at %s: %v", tc.spec, tc.point, err)
			}
			continue
		}
		if !errorContains(err, tc.want) {
			t.Errorf("%q at %s: %v, want %q", tc.spec, tc.point, err, tc.want)
		}
	}
	t.Setenv(FaultEnv, "restore=reject")
	if err := Fault(FaultRestore); !errors.Is(err, ErrFault) {
		t.Errorf("reject does not wrap ErrFault: %v", err)
	}
}

// The new process crashes, fails or hangs at each point of its side of the
// protocol; the old process always ends with a clear outcome and no
// descriptor left behind.
func TestFaultPoints(t *testing.T) {
	const hangDeadline = time.Second // how long the parent waits before it calls a child hung
	for _, point := range FaultPoints {
		if point == FaultRestore || point == FaultAfterCommit {
			continue // called by the session code, not by this package
		}
		for _, action := range []string{"crash", "reject", "hang"} {
			t.Run(point+"="+action, func(t *testing.T) {
				items := make([]Item, 3)
				for i := range items {
					r, w, err := os.Pipe()
					if err != nil {
						t.Fatal(err)
					}
					defer r.Close()
					defer w.Close()
					items[i] = inodeItem(t, kindPipe, w)
				}
				wait := deadline()
				if action == "hang" {
					wait = time.Now().Add(hangDeadline)
				}
				before := openFDs(t)
				c := startChild(t, "ok", FaultEnv+"="+point+"="+action)
				err := sendAllUntil(c, items, wait)
				if err == nil {
					err = c.conn.Commit()
				}
				t.Logf("parent: %v", err)
				late := point == FaultAfterPrepared // the parent has nothing left to read
				switch action {
				case "crash":
					if !(late && err == nil) && !errors.Is(err, ErrPeerClosed) {
						t.Errorf("error %v, want ErrPeerClosed", err)
					}
					c.expectExit(t, exitCrash)
				case "reject":
					var re *RejectError
					if late {
						// The child gives up without reading the Commit,
						// and may have closed its end before we send it.
						if err != nil && !errors.Is(err, ErrPeerClosed) {
							t.Errorf("error %v after Prepared, want none or ErrPeerClosed", err)
						}
					} else if !errors.As(err, &re) || !strings.Contains(re.Reason, "injected fault at "+point) {
						t.Errorf("error %v, want a *RejectError naming %s", err, point)
					}
					c.expectExit(t, exitFailed)
				case "hang":
					if late {
						if err != nil {
							t.Errorf("error %v after Prepared", err)
						}
					} else if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Errorf("error %v, want a deadline", err)
					}
					_ = c.cmd.Process.Kill()
					c.wait(t)
				}
				c.conn.Close()
				if after := openFDs(t); after != before {
					t.Errorf("parent holds %d descriptors, %d before", after, before)
				}
			})
		}
	}
}

// sendAllUntil is sendAll with one deadline for every wait.
func sendAllUntil(c *child, items []Item, d time.Time) error {
	if _, err := c.conn.ReadHello(d); err != nil {
		return err
	}
	if err := c.conn.SendPlan(Plan{Version: 3, Items: len(items), FDs: len(items)}); err != nil {
		return err
	}
	if err := c.conn.SendItems(items); err != nil {
		return err
	}
	if err := c.conn.SendEnd(); err != nil {
		return err
	}
	_, err := c.conn.WaitPrepared(d)
	return err
}

// ArmChild sets the fault for the process the next upgrade starts, and
// puts back what was there, set or not.
func TestArmChild(t *testing.T) {
	t.Setenv(FaultEnv, "before-hello=hang")
	disarm := ArmChild(FaultAfterHello + "=crash")
	if got := os.Getenv(FaultEnv); got != FaultAfterHello+"=crash" {
		t.Errorf("armed: %s=%q", FaultEnv, got)
	}
	disarm()
	if got := os.Getenv(FaultEnv); got != "before-hello=hang" {
		t.Errorf("disarmed: %s=%q, want the value before", FaultEnv, got)
	}
	os.Unsetenv(FaultEnv)
	ArmChild(FaultMidItems + "=reject")()
	if _, set := os.LookupEnv(FaultEnv); set {
		t.Errorf("disarmed: %s is set, was not before", FaultEnv)
	}
	ArmChild("")()
	if _, set := os.LookupEnv(FaultEnv); set {
		t.Errorf("an empty fault set %s", FaultEnv)
	}
}
