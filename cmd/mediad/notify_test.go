package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSDNotify(t *testing.T) {
	tests := []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify.sock") }},
		{"abstract", func(t *testing.T) string {
			return fmt.Sprintf("@mediad-notify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.addr(t)
			ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
			if err != nil {
				t.Fatalf("listen %s: %v", addr, err)
			}
			defer ln.Close()
			t.Setenv("NOTIFY_SOCKET", addr)
			if err := sdNotify("READY=1"); err != nil {
				t.Fatalf("sdNotify: %v", err)
			}
			// The datagram is queued by the time the send returns; the
			// deadline only guards against a hang if it is not.
			if err := ln.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			n, err := ln.Read(buf)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if got := string(buf[:n]); got != "READY=1" {
				t.Fatalf("got %q, want %q", got, "READY=1")
			}
		})
	}
}

func TestSDNotifyErrors(t *testing.T) {
	tests := []struct {
		name    string
		socket  string
		wantErr bool
	}{
		{"unset is a no-op", "", false},
		{"relative path", "notify.sock", true},
		{"no listener", filepath.Join(t.TempDir(), "missing.sock"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NOTIFY_SOCKET", tt.socket)
			err := sdNotify("READY=1")
			if (err != nil) != tt.wantErr {
				t.Fatalf("sdNotify with NOTIFY_SOCKET=%q: err %v, want error %v", tt.socket, err, tt.wantErr)
			}
		})
	}
}
