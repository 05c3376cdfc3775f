package main

import (
	"fmt"
	"runtime/debug"
	"strconv"
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
