package upgrade

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/handoff"
	"github.com/mediad/mediad/state"
)

// Outcomes of an upgrade, as Verdict.Outcome spells them.
const (
	Success = "success" // the new process serves every moved session
	Failed  = "failed"  // rolled back: every session carries on here
	Refused = "refused" // turned down before anything parked
)

// Verdict is the outcome of one upgrade, as logged, kept in the history and
// returned to `mediad upgrade`. Its JSON form is what scripts read.
type Verdict struct {
	Outcome       string    `json:"outcome"` // Success, Failed or Refused
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
	// StallsPending marks the old process's verdict on a success: the
	// stall figures are the new process's, which measures them once every
	// moved publisher has read there, records the completed verdict in its
	// history (GET /api/upgrades, /api/status) and logs it. The old process
	// exits without waiting for them; `mediad upgrade` fetches them.
	StallsPending bool `json:"stalls_pending,omitempty"`
}

// Fields is the verdict as a generic map, in its JSON form: what the
// on_upgrade webhook carries.
func (v Verdict) Fields() map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// Log writes the one line every upgrade leaves ("upgrade"), at error level
// unless it succeeded: the old process's for a failure or a refusal, the
// new process's for a success, once it has the stalls. The old process's
// verdict on a success, whose stalls are pending, is logged as "upgrade
// handed over" instead, so that each upgrade still has one "upgrade" line,
// with every figure.
func (v Verdict) Log(log zerolog.Logger) {
	ev := log.Info()
	if v.Outcome != Success {
		ev = log.Error()
	}
	ev = ev.Str("outcome", v.Outcome).Str("error", v.Error).
		Float64("duration_ms", v.DurationMS).Int("sessions_moved", v.SessionsMoved)
	msg := "upgrade"
	if v.StallsPending {
		msg = "upgrade handed over"
		ev = ev.Str("stalls", "measured by the new process, whose upgrade line gives them")
	} else {
		ev = ev.Float64("worst_stall_ms", v.WorstStallMS).Float64("stall_p99_ms", v.StallP99MS)
	}
	ev.Int("old_pid", v.OldPID).Int("new_pid", v.NewPID).
		Str("old_version", v.OldVersion).Str("new_version", v.NewVersion).
		Msg(msg)
}

// State is the verdict as the process envelope carries it.
func (v Verdict) State() state.Upgrade {
	return state.Upgrade{
		Outcome: v.Outcome, Error: v.Error, Started: v.Started.UnixNano(), DurationMS: v.DurationMS,
		OldPID: v.OldPID, NewPID: v.NewPID, OldVersion: v.OldVersion, NewVersion: v.NewVersion,
		StateVersion: v.StateVersion, SessionsMoved: v.SessionsMoved,
		StallP50MS: v.StallP50MS, StallP99MS: v.StallP99MS, WorstStallMS: v.WorstStallMS, Stalls: v.Stalls,
	}
}

// VerdictFromState is the verdict that the process envelope carried.
func VerdictFromState(u state.Upgrade) Verdict {
	return Verdict{
		Outcome: u.Outcome, Error: u.Error, Started: time.Unix(0, u.Started).UTC(), DurationMS: u.DurationMS,
		OldPID: u.OldPID, NewPID: u.NewPID, OldVersion: u.OldVersion, NewVersion: u.NewVersion,
		StateVersion: u.StateVersion, SessionsMoved: u.SessionsMoved,
		StallP50MS: u.StallP50MS, StallP99MS: u.StallP99MS, WorstStallMS: u.WorstStallMS, Stalls: u.Stalls,
	}
}

// StallReport sums up the stalls the new process measured, sorting them
// in place.
func StallReport(stalls []time.Duration) handoff.Report {
	slices.Sort(stalls)
	rep := handoff.Report{Stalls: len(stalls)}
	if len(stalls) > 0 {
		rep.StallP50MS = MS(stalls[len(stalls)/2])
		rep.StallP99MS = MS(stalls[min(len(stalls)-1, len(stalls)*99/100)])
		rep.WorstStallMS = MS(stalls[len(stalls)-1])
	}
	return rep
}

// MS is d in milliseconds with microsecond precision, as every figure of a
// verdict and of the phases line is given.
func MS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// RefusedError marks an upgrade turned down before anything parked: its
// verdict is Refused rather than Failed.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }
