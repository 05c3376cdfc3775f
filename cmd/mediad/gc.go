package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The garbage collector's defaults. What mediad allocates on its hot path
// is the payload of each message, kept for as long as a player's queue or
// the stream's GOP cache needs it: the live heap is the GOP caches, and
// the collector's pacing decides how far above it RSS may grow. README.md
// ("Garbage collector") gives the measurements behind these values.
//
// GOGC and GOMEMLIMIT in the environment override them: the runtime reads
// them itself, and mediad leaves whatever was set there alone.
const (
	// defaultGOGC is the percent of the live heap that may be allocated
	// before the next collection. 50 instead of Go's 100: at 1,000
	// publishers × 500 kbit/s the heap is the GOP caches' payloads, which
	// the collector need not scan (no pointers), so collecting twice as
	// often cost no CPU we could measure and took RSS from 196 to 150 KiB
	// per stream.
	defaultGOGC = 50
	// defaultMemoryLimit is the soft memory limit, 0 for none. A limit
	// that does not know the machine's memory either never binds or, set
	// below what is live (the GOP caches), makes the collector run
	// without pause; operators who know their container's memory set
	// GOMEMLIMIT to about nine tenths of it.
	defaultMemoryLimit = 0
)

// gcSettings says what the collector runs with and where each value came
// from, for the log.
type gcSettings struct {
	GOGC        string
	MemoryLimit string
}

// applyGCDefaults sets the collector's defaults where the environment does
// not set them.
func applyGCDefaults(lookup func(string) (string, bool)) gcSettings {
	var out gcSettings
	if v, ok := lookup("GOGC"); ok && v != "" {
		out.GOGC = v + " (GOGC)"
	} else {
		debug.SetGCPercent(defaultGOGC)
		out.GOGC = strconv.Itoa(defaultGOGC) + " (default)"
	}
	if v, ok := lookup("GOMEMLIMIT"); ok && v != "" {
		out.MemoryLimit = v + " (GOMEMLIMIT)"
	} else if defaultMemoryLimit > 0 {
		debug.SetMemoryLimit(defaultMemoryLimit)
		out.MemoryLimit = fmt.Sprintf("%d MiB (default)", defaultMemoryLimit>>20)
	} else {
		out.MemoryLimit = "none (default)"
	}
	return out
}

// catchUpHold is how long a new process started by an upgrade defers
// collections after it becomes Ready: its sessions catch up on what
// arrived while they were parked, and its heap grows back to where the
// old process's was (the GOP caches refill within a GOP).
const catchUpHold = 2 * time.Second

// holdGC defers garbage collection in a new process started by an
// upgrade until it uses as much memory as floor, the old process's
// resident size, or until release. A fresh heap starts from the
// collector's minimum goal (2 MiB at GOGC=50), so that while every
// stream caught up the collector ran ten times in the first 250 ms, one
// cycle every 10-20 ms, on the same cores (an execution trace of the new
// process at 100 streams and 1,000 LL-HLS viewers); the old process's
// size is where this heap settles. An operator's GOMEMLIMIT below floor
// still binds. Should what is live outgrow floor meanwhile, the collector
// runs as often as the limit asks, which the runtime caps at half the
// CPU, until release. It returns the function that restores the
// collector's settings, safe to call more than once; floor 0 holds
// nothing.
func holdGC(floor int64) (release func()) {
	if floor <= 0 {
		return func() {}
	}
	limit := debug.SetMemoryLimit(-1)
	gcBack := pauseGC()
	debug.SetMemoryLimit(min(limit, floor))
	var once sync.Once
	return func() {
		once.Do(func() {
			gcBack()
			debug.SetMemoryLimit(limit)
		})
	}
}

// gcPauses counts the holders of pauseGC; percent is the GOGC that the
// last to let go restores.
var gcPauses struct {
	sync.Mutex
	n       int
	percent int
}

// pauseGC turns collection off (GOGC=-1; a memory limit still binds) until
// every caller has called the function it returns, once or more: a new
// process's hold (holdGC) and an upgrade's park may overlap, and whichever
// ends last restores what was set before the first.
func pauseGC() (release func()) {
	gcPauses.Lock()
	if gcPauses.n == 0 {
		gcPauses.percent = debug.SetGCPercent(-1)
	}
	gcPauses.n++
	gcPauses.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			gcPauses.Lock()
			defer gcPauses.Unlock()
			if gcPauses.n--; gcPauses.n == 0 {
				debug.SetGCPercent(gcPauses.percent)
			}
		})
	}
}

// residentBytes is process pid's resident set size, 0 when it cannot be
// read (no /proc, a process gone).
func residentBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// warmHeapMax bounds warmHeap's block; warmHeapShare is the part of the
// old process's resident size that a new one warms: restoring 1,000
// streams touched 28 MiB, a quarter of the old process's 125.
const (
	warmHeapMax   = 1 << 30
	warmHeapShare = 4
)

// warmHeap faults in n bytes of heap (at most warmHeapMax) and frees
// them, so that what a new process allocates while it restores the
// sessions lands on memory already mapped: the allocator reuses the freed
// pages, lowest addresses first, and with the collector held nothing
// returns them to the kernel before then. A page fault costs 15 µs on the
// VMs this was measured on (2 GiB touched in 7.8 s), and the restore of
// 1,000 streams took some 7,000 of them while every session waited. The
// block is asked for in transparent huge pages where the kernel lets a
// process choose (its "madvise" mode): then the same 2 GiB take 134 ms.
// It runs before the Hello, while the old process still serves.
func warmHeap(n int64) {
	n = min(n, warmHeapMax)
	const huge = 2 << 20
	if n < huge {
		return
	}
	b := make([]byte, n)
	// Only whole huge pages inside the block: madvise wants the range's
	// start aligned, and a page shared with other objects is not ours to
	// advise.
	start := (huge - int(uintptr(unsafe.Pointer(&b[0])))%huge) % huge
	if end := start + (len(b)-start)/huge*huge; end > start {
		_ = unix.Madvise(b[start:end], unix.MADV_HUGEPAGE)
	}
	for i := 0; i < len(b); i += os.Getpagesize() {
		b[i] = 1
	}
	runtime.KeepAlive(b)
	runtime.GC()
}
