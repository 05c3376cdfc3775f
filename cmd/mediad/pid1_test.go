package main

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestInitWanted(t *testing.T) {
	tests := []struct {
		mode    string
		pid     int
		want    bool
		wantErr bool
	}{
		{"", 1, true, false},
		{"", 42, false, false},
		{"auto", 1, true, false},
		{"AUTO", 7, false, false},
		{"on", 42, true, false},
		{"1", 42, true, false},
		{"true", 42, true, false},
		{"off", 1, false, false},
		{"0", 1, false, false},
		{"false", 1, false, false},
		{"yes", 1, false, true},
	}
	for _, tt := range tests {
		got, err := initWanted(tt.mode, tt.pid)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("initWanted(%q, %d) = %v, %v; want %v, error %v", tt.mode, tt.pid, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestExitCode(t *testing.T) {
	// Raw wait statuses as the kernel encodes them: exit code in bits 8-15,
	// terminating signal in bits 0-6.
	tests := []struct {
		ws   unix.WaitStatus
		want int
	}{
		{0, 0},
		{1 << 8, 1},
		{2 << 8, 2},
		{unix.WaitStatus(unix.SIGTERM), 143},
		{unix.WaitStatus(unix.SIGKILL), 137},
	}
	for _, tt := range tests {
		if got := exitCode(tt.ws); got != tt.want {
			t.Errorf("exitCode(%#x) = %d, want %d", uint32(tt.ws), got, tt.want)
		}
	}
}

func TestWithoutEnv(t *testing.T) {
	env := []string{"A=1", "MEDIAD_INIT=on", "MEDIAD_INIT_X=2", "MEDIAD_INIT=", "B=2"}
	want := []string{"A=1", "MEDIAD_INIT_X=2", "B=2"}
	if got := withoutEnv(env, initEnv); !slices.Equal(got, want) {
		t.Errorf("withoutEnv = %q, want %q", got, want)
	}
}
