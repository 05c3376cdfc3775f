package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// runUpgradeCommand is `mediad upgrade`: it asks the running mediad to
// upgrade itself through the admin endpoint and waits for the verdict. It
// exits 0 only when the new process serves every moved session.
func runUpgradeCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mediad upgrade", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "127.0.0.1:8080", "admin address of the running mediad")
	pidfile := fs.String("pidfile", "", "PID file of the running mediad: checked to name the new process afterwards")
	timeout := fs.Duration("timeout", 90*time.Second, "give up waiting for the verdict after this long")
	jsonOut := fs.Bool("json", false, "print the verdict as JSON")
	fault := fs.String("fault", "", "fault to inject into the new process (test builds only)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	oldPID := 0
	if *pidfile != "" {
		pid, err := readPID(*pidfile)
		if err != nil {
			fmt.Fprintln(stderr, "mediad upgrade:", err)
			return 1
		}
		oldPID = pid
	}
	u := url.URL{Scheme: "http", Host: *addr, Path: "/api/upgrade"}
	if *fault != "" {
		u.RawQuery = url.Values{"fault": {*fault}}.Encode()
	}
	client := &http.Client{Timeout: *timeout}
	deadline := time.Now().Add(*timeout)
	resp, err := client.Post(u.String(), "application/json", nil)
	if err != nil {
		fmt.Fprintln(stderr, "mediad upgrade:", err)
		return 1
	}
	defer resp.Body.Close()
	var v Verdict
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		fmt.Fprintf(stderr, "mediad upgrade: reading verdict (HTTP %d): %v\n", resp.StatusCode, err)
		return 1
	}
	if v.Outcome == "success" && v.StallsPending {
		// The old process answered as it let go of the sessions; the
		// stalls come from the new one, on the same address.
		wait := max(0, min(stallWait, time.Until(deadline)))
		if !completeStalls(&http.Client{Timeout: time.Second}, *addr, &v, wait) {
			fmt.Fprintf(stderr, "mediad upgrade: the new process (pid %d) gave no stall figures within %s\n", v.NewPID, wait.Round(time.Millisecond))
		}
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	}
	if v.Outcome != "success" {
		if !*jsonOut {
			fmt.Fprintf(stdout, "upgrade %s after %.0f ms: %s\n", v.Outcome, v.DurationMS, v.Error)
		}
		return 1
	}
	if *pidfile != "" {
		// The new process writes the PID file when it becomes ready, before
		// the verdict is sent; it must name the new process now.
		pid, err := readPID(*pidfile)
		if err != nil || pid != v.NewPID || pid == oldPID {
			fmt.Fprintf(stderr, "mediad upgrade: PID file %s names %d, want the new process %d (%v)\n", *pidfile, pid, v.NewPID, err)
			return 1
		}
	}
	if !*jsonOut {
		stalls := fmt.Sprintf("worst stall %.1f ms (p99 %.1f ms over %d streams)", v.WorstStallMS, v.StallP99MS, v.Stalls)
		if v.StallsPending {
			stalls = "stalls not reported"
		}
		fmt.Fprintf(stdout, "upgrade succeeded: pid %d -> %d, version %s -> %s, %d sessions moved in %.1f ms, %s\n",
			v.OldPID, v.NewPID, v.OldVersion, v.NewVersion, v.SessionsMoved, v.DurationMS, stalls)
	}
	return 0
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", path, err)
	}
	return pid, nil
}

// stallWait bounds how long `mediad upgrade` waits, after a successful
// verdict, for the new process's stall figures: it measures them within
// its report's bound (2 s) of its Ready.
const stallWait = 5 * time.Second

// completeStalls fills in a successful verdict's stall figures from the
// new process, which records the upgrade, completed with them, in its
// history. It asks every 50 ms until it finds that entry or wait passes,
// and reports whether it found it. A build without GET /api/upgrades
// (older than this one) is asked for its whole status instead.
func completeStalls(client *http.Client, addr string, v *Verdict, wait time.Duration) bool {
	until := time.Now().Add(wait)
	path := "/api/upgrades"
	for {
		got, found, missing := newProcessVerdict(client, addr, path, *v)
		if found {
			v.StallP50MS, v.StallP99MS, v.WorstStallMS, v.Stalls = got.StallP50MS, got.StallP99MS, got.WorstStallMS, got.Stalls
			v.StallsPending = false
			return true
		}
		if missing {
			path = "/api/status"
		}
		if time.Now().After(until) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newProcessVerdict asks addr's path for the upgrade history and returns
// the entry of v's upgrade, complete, if the new process answered and has
// it. missing: the path is unknown there.
func newProcessVerdict(client *http.Client, addr, path string, v Verdict) (got Verdict, found, missing bool) {
	resp, err := client.Get("http://" + addr + path)
	if err != nil {
		return Verdict{}, false, false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return Verdict{}, false, true
	}
	// Both replies carry the pid and the history under these names.
	var h upgradesReply
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil || h.PID != v.NewPID {
		// Not yet the new process: the old one may still accept on the
		// shared listener for a moment.
		return Verdict{}, false, false
	}
	for i := len(h.Upgrades) - 1; i >= 0; i-- {
		if u := h.Upgrades[i]; u.NewPID == v.NewPID && u.Started.Equal(v.Started) && !u.StallsPending {
			return u, true, false
		}
	}
	return Verdict{}, false, false
}
