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
		fmt.Fprintf(stdout, "upgrade succeeded: pid %d -> %d, version %s -> %s, %d sessions moved in %.1f ms, worst stall %.1f ms (p99 %.1f ms over %d streams)\n",
			v.OldPID, v.NewPID, v.OldVersion, v.NewVersion, v.SessionsMoved, v.DurationMS, v.WorstStallMS, v.StallP99MS, v.Stalls)
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
