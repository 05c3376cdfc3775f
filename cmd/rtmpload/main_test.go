package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseBitrate(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"2M", 2_000_000, true},
		{"500k", 500_000, true},
		{"1.5M", 1_500_000, true},
		{"800000", 800_000, true},
		{"1G", 1_000_000_000, true},
		{"0", 0, true},
		{"", 0, false},
		{"M", 0, false},
		{"-1M", 0, false},
		{"2Mbps", 0, false},
		{"20G", 0, false},
		{"NaN", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBitrate(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseBitrate(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in               string
		addr, app, tcURL string
		wantErr          string
	}{
		{in: "rtmp://127.0.0.1:1935/live", addr: "127.0.0.1:1935", app: "live", tcURL: "rtmp://127.0.0.1:1935/live"},
		{in: "rtmp://example.com/live/", addr: "example.com:1935", app: "live", tcURL: "rtmp://example.com/live"},
		{in: "rtmp://[::1]:1936/app/inst", addr: "[::1]:1936", app: "app/inst", tcURL: "rtmp://[::1]:1936/app/inst"},
		{in: "rtmp://h/live?token=x", addr: "h:1935", app: "live?token=x", tcURL: "rtmp://h/live?token=x"},
		{in: "http://h/live", wantErr: "only rtmp://"},
		{in: "rtmp://h", wantErr: "no application"},
		{in: "rtmp:///live", wantErr: "no host"},
		{in: "rtmp://h:x/live", wantErr: "-url"},
	}
	for _, tt := range tests {
		addr, app, tcURL, err := parseURL(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseURL(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || addr != tt.addr || app != tt.app || tcURL != tt.tcURL {
			t.Errorf("parseURL(%q) = %q, %q, %q, %v; want %q, %q, %q", tt.in, addr, app, tcURL, err, tt.addr, tt.app, tt.tcURL)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{args: []string{"-synthetic"}},
		{args: []string{"-file", "x.flv", "-n", "1000", "-players", "2", "-duration", "1m"}},
		{args: []string{}, wantErr: "-file is required"},
		{args: []string{"-synthetic", "-file", "x.flv"}, wantErr: "exclude"},
		{args: []string{"-synthetic", "-n", "0"}, wantErr: "-n 0"},
		{args: []string{"-synthetic", "-players", "-1"}, wantErr: "-players"},
		{args: []string{"-synthetic", "-duration", "0s"}, wantErr: "-duration"},
		{args: []string{"-synthetic", "-chunk-size", "64"}, wantErr: "-chunk-size"},
		{args: []string{"-synthetic", "extra"}, wantErr: "unexpected argument"},
		{args: []string{"-checksum"}, wantErr: "needs FLV files"},
		{args: []string{"-nosuchflag"}, wantErr: "not defined"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		_, _, err := parseFlags(tt.args, &stderr)
		if tt.wantErr == "" && err != nil {
			t.Errorf("%q: %v", tt.args, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q: error %v, want %q", tt.args, err, tt.wantErr)
		}
	}
	o, _, err := parseFlags([]string{"-synthetic"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.url != "rtmp://127.0.0.1:1935/live" || o.keyPrefix != "load" || o.n != 100 || o.players != 0 ||
		o.bitrate != "2M" || o.fps != 30 || o.gop != 60 || o.duration != 30*time.Second || o.ramp != 5*time.Second ||
		o.chunkSize != 4096 || o.json {
		t.Errorf("defaults %+v", o)
	}
}

func TestRunMainUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runMain(t.Context(), []string{"-n", "0", "-synthetic"}, &stdout, &stderr); code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "-n 0") {
		t.Errorf("stderr %q", stderr.String())
	}
}
