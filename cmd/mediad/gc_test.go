package main

import (
	"math"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// TestGCDefaults: the defaults apply where the environment sets nothing,
// and a GOGC or GOMEMLIMIT there is left to the runtime.
func TestGCDefaults(t *testing.T) {
	keepGCSettings(t)

	none := func(string) (string, bool) { return "", false }
	got := applyGCDefaults(none)
	if p := debug.SetGCPercent(-1); p != defaultGOGC {
		t.Errorf("GOGC unset: percent %d, want %d", p, defaultGOGC)
	}
	wantLimit := int64(math.MaxInt64)
	if defaultMemoryLimit > 0 {
		wantLimit = defaultMemoryLimit
	}
	if l := debug.SetMemoryLimit(-1); l != wantLimit {
		t.Errorf("GOMEMLIMIT unset: limit %d, want %d", l, wantLimit)
	}
	if !strings.HasSuffix(got.GOGC, "(default)") || !strings.HasSuffix(got.MemoryLimit, "(default)") {
		t.Errorf("settings %+v, want both from the defaults", got)
	}

	debug.SetGCPercent(77)
	debug.SetMemoryLimit(1 << 40)
	env := map[string]string{"GOGC": "77", "GOMEMLIMIT": "1TiB"}
	got = applyGCDefaults(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if p := debug.SetGCPercent(-1); p != 77 {
		t.Errorf("GOGC=77 in the environment: percent %d, want it left at 77", p)
	}
	if l := debug.SetMemoryLimit(-1); l != 1<<40 {
		t.Errorf("GOMEMLIMIT in the environment: limit %d, want it left", l)
	}
	if got.GOGC != "77 (GOGC)" || got.MemoryLimit != "1TiB (GOMEMLIMIT)" {
		t.Errorf("settings %+v, want both named as from the environment", got)
	}
}

// TestHoldGC: a new process collects nothing below the old one's size
// until release, which restores the collector's settings exactly; an
// operator's lower memory limit still binds, and no floor holds nothing.
func TestHoldGC(t *testing.T) {
	keepGCSettings(t)
	const mib = 1 << 20
	tests := []struct {
		name         string
		percent      int
		limit, floor int64
		heldPct      int
		heldLimit    int64
	}{
		{"defaults", defaultGOGC, math.MaxInt64, 80 * mib, -1, 80 * mib},
		{"operator's lower limit binds", defaultGOGC, 60 * mib, 80 * mib, -1, 60 * mib},
		{"operator's higher limit gives way", 200, 1 << 30, 80 * mib, -1, 80 * mib},
		{"no floor", defaultGOGC, math.MaxInt64, 0, defaultGOGC, math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(tc.percent)
			debug.SetMemoryLimit(tc.limit)
			release := holdGC(tc.floor)
			if p := debug.SetGCPercent(tc.heldPct); p != tc.heldPct {
				t.Errorf("held: GC percent %d, want %d", p, tc.heldPct)
			}
			if l := debug.SetMemoryLimit(-1); l != tc.heldLimit {
				t.Errorf("held: memory limit %d, want %d", l, tc.heldLimit)
			}
			release()
			release()
			if p := debug.SetGCPercent(tc.percent); p != tc.percent {
				t.Errorf("released: GC percent %d, want %d", p, tc.percent)
			}
			if l := debug.SetMemoryLimit(-1); l != tc.limit {
				t.Errorf("released: memory limit %d, want %d", l, tc.limit)
			}
		})
	}
}

// TestResidentBytes reads this process's size, and 0 for a process that
// is not there.
func TestResidentBytes(t *testing.T) {
	if n := residentBytes(os.Getpid()); n < 1<<20 || n > 1<<40 {
		t.Errorf("this process: %d bytes resident, want a plausible size", n)
	}
	if n := residentBytes(-1); n != 0 {
		t.Errorf("no such process: %d bytes, want 0", n)
	}
}

// keepGCSettings starts t from GOGC=100 and no memory limit, and gives
// the process its collector's settings back when t ends.
func keepGCSettings(t *testing.T) {
	t.Helper()
	prevGC := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(prevGC)
		debug.SetMemoryLimit(prevLimit)
	})
}
