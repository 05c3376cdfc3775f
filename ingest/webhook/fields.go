package webhook

import (
	"time"

	"github.com/mediad/mediad/state"
)

// timeLayout is RFC 3339 with milliseconds, for UTC times.
const timeLayout = "2006-01-02T15:04:05.000Z"

// Timestamp formats t as the times in bodies are: RFC 3339, UTC, ms.
func Timestamp(t time.Time) string { return t.UTC().Format(timeLayout) }

// RecordFields are the fields of EventRecordDone: the segment's path, its
// start and its duration in seconds.
func RecordFields(path string, start time.Time, d time.Duration) map[string]any {
	return map[string]any{"path": path, "start": Timestamp(start), "duration_s": d.Seconds()}
}

// UpgradeFields are the fields of EventUpgrade: the verdict, under names of
// its own so that none is taken for a common field.
func UpgradeFields(u state.Upgrade) map[string]any {
	return map[string]any{
		"outcome":        u.Outcome,
		"error":          u.Error,
		"started":        Timestamp(time.Unix(0, u.Started)),
		"duration_ms":    u.DurationMS,
		"old_pid":        u.OldPID,
		"new_pid":        u.NewPID,
		"old_version":    u.OldVersion,
		"new_version":    u.NewVersion,
		"state_version":  u.StateVersion,
		"sessions_moved": u.SessionsMoved,
		"stall_p50_ms":   u.StallP50MS,
		"stall_p99_ms":   u.StallP99MS,
		"worst_stall_ms": u.WorstStallMS,
	}
}
