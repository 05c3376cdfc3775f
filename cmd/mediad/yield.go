package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// yieldNice is the CPU priority an old process takes once its upgrade is
// past the point of no return: the lowest. What it still does (closing
// its copies of every moved session, waiting for the new process's
// report, finishing HTTP requests in flight) can wait; the new process,
// catching every session up at once, cannot. Measured on 2 cores at
// 1,000 streams: see the README's upgrade benchmarks.
const yieldNice = 19

// lowerPriority sets every thread of this process to yieldNice. Linux
// keeps a nice value per thread and a new thread inherits its creator's,
// so the runtime's threads are each set, twice over to catch one started
// during the first pass, and any started later is born at yieldNice.
func lowerPriority() error {
	for range 2 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("lower priority: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// A thread that exited meanwhile needs nothing.
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, yieldNice); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("lower priority of thread %d: %w", tid, err)
			}
		}
	}
	return nil
}
