package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// upgradeAdmin stands for the admin address across an upgrade: the old
// process answers POST /api/upgrade with a success whose stalls are the
// new process's, and the new process answers the history from its
// (answers+1)th request on (the earlier ones come before its report).
// upgrades false: it is a build without GET /api/upgrades, which gives its
// history in /api/status only. A history request answered by the old
// process (oldFirst) names the old PID.
type upgradeAdmin struct {
	verdict   Verdict
	complete  Verdict
	answers   int32
	upgrades  bool
	oldFirst  bool
	asked     atomic.Int32
	statusHit atomic.Int32
}

func (a *upgradeAdmin) serve(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/api/upgrade":
			writeJSON(w, http.StatusOK, a.verdict)
		case r.Method == http.MethodGet && (r.URL.Path == "/api/upgrades" && a.upgrades || r.URL.Path == "/api/status"):
			if r.URL.Path == "/api/status" {
				a.statusHit.Add(1)
			}
			n := a.asked.Add(1)
			reply := upgradesReply{PID: a.verdict.NewPID, Upgrades: []Verdict{{Outcome: "success", NewPID: 1}}}
			if a.oldFirst && n == 1 {
				reply = upgradesReply{PID: a.verdict.OldPID, Upgrades: []Verdict{a.verdict}}
			} else if n > a.answers {
				reply.Upgrades = append(reply.Upgrades, a.complete)
			}
			writeJSON(w, http.StatusOK, reply)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func pendingVerdict() (Verdict, Verdict) {
	started := time.Date(2026, 12, 7, 15, 0, 0, 123456789, time.UTC)
	v := Verdict{Outcome: "success", Started: started, DurationMS: 250, OldPID: 100, NewPID: 200,
		OldVersion: "a", NewVersion: "b", SessionsMoved: 3, StallsPending: true}
	c := v
	c.StallsPending = false
	c.Stalls, c.StallP50MS, c.StallP99MS, c.WorstStallMS = 2, 11.5, 19.25, 19.25
	return v, c
}

// TestUpgradeCommandFetchesStalls: the old process's verdict leaves the
// stalls to the new process; mediad upgrade asks it until its history
// holds the upgrade, by start and PID, and prints them. A build that only
// has /api/status is asked there; an answer from the old process, still on
// the shared listener, is not taken for the new one's.
func TestUpgradeCommandFetchesStalls(t *testing.T) {
	for _, tc := range []struct {
		name     string
		upgrades bool
		oldFirst bool
	}{
		{"this build", true, false},
		{"a build with /api/status only", false, false},
		{"the old process answers first", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, complete := pendingVerdict()
			a := &upgradeAdmin{verdict: v, complete: complete, answers: 2, upgrades: tc.upgrades, oldFirst: tc.oldFirst}
			addr := a.serve(t)
			var stdout, stderr bytes.Buffer
			if code := runUpgradeCommand([]string{"--http", addr, "--json", "--timeout", "10s"}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d; stderr: %s", code, stderr.String())
			}
			var got Verdict
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
				t.Fatalf("printed %q: %v", stdout.String(), err)
			}
			if got.StallsPending || got.Stalls != 2 || got.StallP50MS != 11.5 || got.StallP99MS != 19.25 || got.WorstStallMS != 19.25 ||
				got.DurationMS != 250 || got.OldPID != 100 || got.NewPID != 200 {
				t.Errorf("printed %+v, want the old process's verdict with the new one's stalls", got)
			}
			if !tc.upgrades && a.statusHit.Load() == 0 {
				t.Error("a build without /api/upgrades was never asked for /api/status")
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr: %s", stderr.String())
			}
		})
	}
}

// TestUpgradeCommandWithoutStalls: a new process that never completes
// the verdict leaves it as the old process gave it, marked pending, and
// says so; the upgrade itself succeeded.
func TestUpgradeCommandWithoutStalls(t *testing.T) {
	v, complete := pendingVerdict()
	a := &upgradeAdmin{verdict: v, complete: complete, answers: 1 << 30, upgrades: true}
	addr := a.serve(t)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	if code := runUpgradeCommand([]string{"--http", addr, "--timeout", "1s"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, stderr.String())
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v past a 1 s timeout", took)
	}
	if !strings.Contains(stderr.String(), "gave no stall figures") || !strings.Contains(stdout.String(), "upgrade succeeded: pid 100 -> 200") ||
		!strings.Contains(stdout.String(), "stalls not reported") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}
