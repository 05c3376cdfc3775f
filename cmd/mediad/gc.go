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

// warmProbe is how much of the block warmHeap faults in small pages
// first, timed, before it chooses how to fault the rest.
const warmProbe = 8 << 20

// hugeFaultFrom is the cost of a small-page fault from which the rest of
// the block is asked for in transparent huge pages. Machines differ by
// ten times here, and so does the better choice: on one VM a fault cost
// 15 µs (2 GiB took 7.8 s a page at a time, 134 ms in huge pages); on
// another it cost 1.7 µs (182 MiB in 80 ms, steadily), while the same
// block in huge pages took 22 to 493 ms, and 0.9 to 1.2 s before the
// hello of a takeover at 10,000 streams.
const hugeFaultFrom = 5 * time.Microsecond

// warmInHugePages reports whether the rest of the block goes to huge
// pages, given what a small-page fault cost in the probe.
func warmInHugePages(perFault time.Duration) bool { return perFault >= hugeFaultFrom }

// warmed is what warmHeap did, for its log line.
type warmed struct {
	Bytes    int64
	PerFault time.Duration // a small-page fault in the probe, in CPU time
	Huge     bool          // the rest was asked for in huge pages
}

// warmHeap faults in n bytes of heap (at most warmHeapMax) and frees
// them, so that what a new process allocates while it restores the
// sessions lands on memory already mapped: the allocator reuses the freed
// pages, lowest addresses first, and with the collector held nothing
// returns them to the kernel before then. The restore of 1,000 streams
// took some 7,000 faults while every session waited. It runs before the
// Hello, while the old process still serves.
//
// The first warmProbe bytes are faulted a page at a time and timed on
// this thread's CPU clock (so that a busy machine's waits do not count);
// the rest goes to huge pages only where a small fault proved costly
// (hugeFaultFrom), and only where the kernel lets a process choose (its
// "madvise" mode).
func warmHeap(n int64) warmed { return warmHeapWith(n, warmInHugePages) }

// warmHeapWith is warmHeap with the choice of huge pages given.
func warmHeapWith(n int64, inHuge func(perFault time.Duration) bool) warmed {
	n = min(n, warmHeapMax)
	const huge = 2 << 20
	if n < huge {
		return warmed{}
	}
	b := make([]byte, n)
	page := os.Getpagesize()
	probe := min(len(b), warmProbe)
	perFault := timeFaults(b[:probe], page)
	w := warmed{Bytes: n, PerFault: perFault, Huge: inHuge(perFault)}
	rest := b[probe:]
	if w.Huge && len(rest) > 0 {
		// Only whole huge pages inside the rest: madvise wants the range's
		// start aligned, and a page shared with other objects is not ours
		// to advise.
		start := (huge - int(uintptr(unsafe.Pointer(&rest[0])))%huge) % huge
		if end := start + (len(rest)-start)/huge*huge; end > start {
			_ = unix.Madvise(rest[start:end], unix.MADV_HUGEPAGE)
		}
	}
	touchPages(rest, page)
	runtime.KeepAlive(b)
	runtime.GC()
	return w
}

// timeFaults writes one byte of every page of b and returns the CPU time
// of this thread per page, or 0 when the clock cannot be read.
func timeFaults(b []byte, page int) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var t0, t1 unix.Timespec
	err0 := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t0)
	touchPages(b, page)
	err1 := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &t1)
	pages := (len(b) + page - 1) / page
	if err0 != nil || err1 != nil || pages == 0 {
		return 0
	}
	return time.Duration(t1.Nano()-t0.Nano()) / time.Duration(pages)
}

// touchPages writes one byte of every page of b, faulting it in.
func touchPages(b []byte, page int) {
	for i := 0; i < len(b); i += page {
		b[i] = 1
	}
}
