package handoff

import (
	"fmt"
	"math"
	"os"

	"golang.org/x/sys/unix"
)

// ChooseVersion picks the state version to send: the highest version that
// the sender can produce (senderMin..senderMax, migrating down where
// needed) and the reader can read (readerMin..readerMax). With no common
// version the upgrade must be refused at hello, before anything parks; the
// error names both ranges.
func ChooseVersion(senderMin, senderMax, readerMin, readerMax uint32) (uint32, error) {
	if senderMin > senderMax {
		return 0, fmt.Errorf("handoff: sender's state range v%d..v%d is empty", senderMin, senderMax)
	}
	if readerMin > readerMax {
		return 0, fmt.Errorf("handoff: new process reads an empty state range v%d..v%d", readerMin, readerMax)
	}
	lo, hi := max(senderMin, readerMin), min(senderMax, readerMax)
	if lo > hi {
		return 0, fmt.Errorf("handoff: no common state version: this process writes v%d..v%d, the new one reads v%d..v%d",
			senderMin, senderMax, readerMin, readerMax)
	}
	return hi, nil
}

// FDReserve is the number of descriptors CheckFDBudget leaves free in the
// new process beyond those it is sent, for its own listeners, logs and the
// connections that arrive while it resumes.
const FDReserve = 64

// CheckFDBudget reports whether the new process described by h can take
// need more descriptors and still have FDReserve to spare. A refusal names
// the figures, so the operator knows which limit to raise.
func CheckFDBudget(h Hello, need int) error {
	if need < 0 {
		return fmt.Errorf("handoff: descriptor budget: negative need %d", need)
	}
	if h.NoFileLimit == unix.RLIM_INFINITY || h.NoFileLimit > math.MaxInt32 {
		return nil // the kernel's nr_open bounds it, far above any handoff
	}
	limit := int(h.NoFileLimit)
	free := max(limit-h.OpenFDs, 0)
	if need+FDReserve > free {
		return fmt.Errorf("handoff: new process (pid %d) cannot take %d descriptors: it has %d open of a limit of %d (RLIMIT_NOFILE), leaving %d, and %d must stay in reserve",
			h.PID, need, h.OpenFDs, limit, free, FDReserve)
	}
	return nil
}

// FDBudget is the most descriptors the new process described by h can
// take and still have FDReserve to spare: what CheckFDBudget accepts.
func FDBudget(h Hello) int {
	if h.NoFileLimit == unix.RLIM_INFINITY || h.NoFileLimit > math.MaxInt32 {
		return maxCount
	}
	return max(int(h.NoFileLimit)-h.OpenFDs-FDReserve, 0)
}

// OpenPlanFor is the open Plan for the new process that said h: no bound
// on the items but the protocol's, and as many descriptors as it can take.
// The sender must stop before it sends more (CheckFDBudget).
func OpenPlanFor(version uint32, h Hello) Plan {
	return Plan{Version: version, Open: true, Items: maxCount, FDs: min(FDBudget(h), maxCount)}
}

// LocalHello fills a Hello for this process: its pid, descriptor limit and
// open descriptor count, with the given build and readable state range.
// It fails rather than guess a figure: a Hello with a limit or a count of
// zero would pass or fail CheckFDBudget for no reason.
func LocalHello(build string, readsMin, readsMax uint32) (Hello, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return Hello{}, fmt.Errorf("handoff: hello: RLIMIT_NOFILE: %w", err)
	}
	n, err := OpenFDCount()
	if err != nil {
		return Hello{}, fmt.Errorf("handoff: hello: %w", err)
	}
	return Hello{
		Build:       build,
		ReadsMin:    readsMin,
		ReadsMax:    readsMax,
		PID:         os.Getpid(),
		NoFileLimit: rl.Cur,
		OpenFDs:     n,
		OpenPlan:    true,
	}, nil
}
