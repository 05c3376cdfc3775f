package main

import (
	"math"
	"runtime/debug"
	"strings"
	"testing"
)

// TestGCDefaults: the defaults apply where the environment sets nothing,
// and a GOGC or GOMEMLIMIT there is left to the runtime.
func TestGCDefaults(t *testing.T) {
	prevGC := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(prevGC)
		debug.SetMemoryLimit(prevLimit)
	})

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
