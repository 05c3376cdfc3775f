package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAdmin answers POST /api/drain with code and body and counts the
// drain requests it received; any other request is a test failure.
func fakeAdmin(t *testing.T, code int, body string) (addr string, drains *atomic.Int32) {
	t.Helper()
	drains = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/drain" {
			t.Errorf("admin got %s %s, want POST /api/drain", r.Method, r.URL.Path)
			http.NotFound(w, r)
			return
		}
		drains.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), drains
}

func TestDrainCommandDrains(t *testing.T) {
	addr, drains := fakeAdmin(t, http.StatusOK, `{"draining":true,"sessions":3}`)
	var stdout, stderr bytes.Buffer
	code := runDrainCommand([]string{"--http", addr, "--wait", "0"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr: %s", code, stderr.String())
	}
	if n := drains.Load(); n != 1 {
		t.Errorf("admin got %d drain requests, want 1", n)
	}
	out := stdout.String()
	if strings.Count(out, "\n") != 1 || !strings.Contains(out, "3 sessions still served") {
		t.Errorf("stdout %q: want one line naming the 3 sessions still served", out)
	}
}

func TestDrainCommandFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
		body string
		want string // in stderr
	}{
		{"server error", http.StatusInternalServerError, `{"error":"boom"}`, "500"},
		{"not found", http.StatusNotFound, "404 page not found", "404"},
		{"not draining", http.StatusOK, `{"draining":false,"sessions":0}`, "does not report draining"},
		{"not JSON", http.StatusOK, "ok", "unexpected body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, drains := fakeAdmin(t, tc.code, tc.body)
			var stdout, stderr bytes.Buffer
			// A failed drain must not wait: with --wait 1h a wait would
			// hang the test until its deadline.
			code := runDrainCommand([]string{"--http", addr, "--wait", "1h"}, &stdout, &stderr)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stdout %q, stderr %q", code, stdout.String(), stderr.String())
			}
			if drains.Load() != 1 {
				t.Errorf("admin got %d drain requests, want 1", drains.Load())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestDrainCommandUnreachable(t *testing.T) {
	// An address that was just free: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	code := runDrainCommand([]string{"--http", addr, "--wait", "1h"}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "cannot reach the admin endpoint") || !strings.Contains(stderr.String(), addr) {
		t.Errorf("stderr %q: want it to say the admin endpoint at %s cannot be reached", stderr.String(), addr)
	}
}

func TestDrainCommandWaits(t *testing.T) {
	addr, _ := fakeAdmin(t, http.StatusOK, `{"draining":true,"sessions":0}`)
	const wait = 300 * time.Millisecond
	start := time.Now()
	if code := runDrainCommand([]string{"--http", addr, "--wait", wait.String()}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	if took := time.Since(start); took < wait {
		t.Errorf("returned after %s, before the --wait of %s", took, wait)
	}

	// --wait 0 means no wait at all, not the default of 10 s. The bound is
	// loose on purpose: it only has to tell "no wait" from "10 s".
	start = time.Now()
	if code := runDrainCommand([]string{"--http", addr, "--wait", "0"}, io.Discard, io.Discard); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("--wait 0 returned after %s", took)
	}
}

func TestDrainCommandBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{"--wait", "-1s"},
		{"--wait", "soon"},
		{"--bogus"},
		{"extra"},
	} {
		var stderr bytes.Buffer
		// No server: bad arguments must be refused before any request.
		if code := runDrainCommand(append([]string{"--http", "127.0.0.1:1"}, args...), io.Discard, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}
