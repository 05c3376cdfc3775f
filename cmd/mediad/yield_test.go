package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// yieldHelperEnv makes the test binary yieldHelper (TestMain): the test
// process itself must keep its priority, since every mediad the e2e tests
// start would inherit it.
const yieldHelperEnv = "MEDIAD_TEST_YIELD"

// TestLowerPriorityEveryThread checks that, in a process with several
// threads busy, lowerPriority leaves every thread at yieldNice, and that a
// thread started afterwards is born there.
func TestLowerPriorityEveryThread(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), yieldHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	lines := strings.Fields(strings.TrimSpace(string(out)))
	if len(lines) < 2 {
		t.Fatalf("helper said %q, want its threads' nice values before and after", out)
	}
	before, after := lines[0], lines[len(lines)-1]
	t.Logf("threads' nice values: before %s, after %s", before, after)
	for _, n := range strings.Split(before, ",") {
		if n == strconv.Itoa(yieldNice) {
			t.Fatalf("a thread was at %d before lowerPriority (%s): the check shows nothing", yieldNice, before)
		}
	}
	vals := strings.Split(after, ",")
	if len(vals) < 5 {
		t.Errorf("only %d threads: %s", len(vals), after)
	}
	for _, n := range vals {
		if n != strconv.Itoa(yieldNice) {
			t.Errorf("a thread at nice %s after lowerPriority, want %d (all: %s)", n, yieldNice, after)
		}
	}
}

// yieldHelper starts threads, prints their nice values, lowers the
// process's priority, starts more threads and prints them all again.
func yieldHelper() int {
	var stop sync.WaitGroup
	release := make(chan struct{})
	threads := func(n int) {
		var started sync.WaitGroup
		for range n {
			started.Add(1)
			stop.Add(1)
			go func() {
				defer stop.Done()
				// A goroutine locked to its thread holds that thread: the
				// next one needs another.
				runtime.LockOSThread()
				started.Done()
				<-release
			}()
		}
		started.Wait()
	}
	threads(4)
	fmt.Println(niceValues())
	if err := lowerPriority(); err != nil {
		fmt.Println(err)
		return 1
	}
	threads(4)
	fmt.Println(niceValues())
	close(release)
	stop.Wait()
	return 0
}

// niceValues lists every thread's nice value (field 19 of its stat).
func niceValues() string {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err.Error()
	}
	var vals []string
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces; the fields after it do not.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		// f[0] is field 3 (state): nice, field 19, is f[16].
		if len(f) > 16 {
			vals = append(vals, f[16])
		}
	}
	return strings.Join(vals, ",")
}
