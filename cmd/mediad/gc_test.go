package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestPauseGCOverlapping: a new process's hold and an upgrade's park
// overlap in either order; collection comes back, at the setting from
// before the first, only when the last lets go.
func TestPauseGCOverlapping(t *testing.T) {
	keepGCSettings(t)
	for _, parkEndsFirst := range []bool{true, false} {
		debug.SetGCPercent(defaultGOGC)
		hold := holdGC(80 << 20)
		park := pauseGC()
		first, last := park, hold
		if !parkEndsFirst {
			first, last = hold, park
		}
		first()
		first()
		if p := debug.SetGCPercent(-1); p != -1 {
			t.Errorf("park ends first %v: GC percent %d with one holder left, want -1", parkEndsFirst, p)
		}
		last()
		if p := debug.SetGCPercent(defaultGOGC); p != defaultGOGC {
			t.Errorf("park ends first %v: GC percent %d after both, want %d", parkEndsFirst, p, defaultGOGC)
		}
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

// TestWarmHeapTakesThePageFaults: in a young process with the collector
// held, as a new one started by an upgrade is, what is allocated and
// written after warmHeap lands on memory already faulted in; without it,
// the same allocations fault a page at a time. Each case runs in a process
// of its own (warmHeapHelper), whose heap is as young as mediad's.
func TestWarmHeapTakesThePageFaults(t *testing.T) {
	const size = 32 << 20
	faults := func(mode string) int64 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), warmHelperEnv+"="+mode, fmt.Sprintf("%s_SIZE=%d", warmHelperEnv, size))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s helper: %v\n%s", mode, err, out)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil {
			t.Fatalf("%s helper said %q", mode, out)
		}
		return n
	}
	cold := faults("cold")
	pages := int64(size / os.Getpagesize())
	// Both ways of faulting the block past the probe, whichever this
	// machine's probe would choose.
	for _, mode := range []string{"warm-small", "warm-huge"} {
		warm := faults(mode)
		t.Logf("%d pages allocated: %d page faults on a cold heap, %d after warmHeap (%s)", pages, cold, warm, mode)
		if warm > pages/8 {
			t.Errorf("%s: %d page faults after warmHeap for %d pages, want at most %d", mode, warm, pages, pages/8)
		}
	}
	// Where the kernel gives every mapping huge pages, a cold heap is
	// cheap too.
	if thp, _ := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); !strings.Contains(string(thp), "[always]") && cold < pages/2 {
		t.Errorf("only %d page faults on a cold heap for %d pages: the comparison shows nothing", cold, pages)
	}
}

// TestWarmInHugePages: huge pages only where a small fault proved costly,
// with the figures of the two machines that set the threshold.
func TestWarmInHugePages(t *testing.T) {
	for _, tc := range []struct {
		perFault time.Duration
		want     bool
	}{
		{0, false}, // the clock could not be read: the plain way
		{1700 * time.Nanosecond, false},
		{hugeFaultFrom - 1, false},
		{hugeFaultFrom, true},
		{15 * time.Microsecond, true},
	} {
		if got := warmInHugePages(tc.perFault); got != tc.want {
			t.Errorf("warmInHugePages(%v) = %v, want %v", tc.perFault, got, tc.want)
		}
	}
}

// TestWarmHeapReports: the log line's figures are what happened.
func TestWarmHeapReports(t *testing.T) {
	keepGCSettings(t)
	if w := warmHeap(1 << 20); w != (warmed{}) {
		t.Errorf("warmHeap of less than a huge page did %+v, want nothing", w)
	}
	w := warmHeap(16 << 20)
	if w.Bytes != 16<<20 || w.PerFault <= 0 || w.Huge != warmInHugePages(w.PerFault) {
		t.Errorf("warmHeap(16 MiB) = %+v: want its size, a fault's cost above zero, and the choice that cost makes", w)
	}
	t.Logf("a small-page fault here: %v; huge pages: %v", w.PerFault, w.Huge)
}

// warmHelperEnv makes the test binary warmHeapHelper (TestMain).
const warmHelperEnv = "MEDIAD_TEST_WARM_HEAP"

// warmHeapHelper holds the collector as a new process does, warms the
// heap or not (mode "warm" or "cold"), allocates and writes size bytes of
// 4 KiB objects and prints the page faults that took.
func warmHeapHelper(mode string) int {
	size, err := strconv.Atoi(os.Getenv(warmHelperEnv + "_SIZE"))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer holdGC(8 * int64(size))()
	switch mode {
	case "warm-small":
		warmHeapWith(2*int64(size), func(time.Duration) bool { return false })
	case "warm-huge":
		warmHeapWith(2*int64(size), func(time.Duration) bool { return true })
	}
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		fmt.Println(err)
		return 1
	}
	keep := make([][]byte, 0, size/4096)
	for range size / 4096 {
		b := make([]byte, 4096)
		b[0] = 1
		keep = append(keep, b)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		fmt.Println(err)
		return 1
	}
	runtime.KeepAlive(keep)
	fmt.Println(after.Minflt - before.Minflt)
	return 0
}
