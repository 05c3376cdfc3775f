package handoff

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestChooseVersion(t *testing.T) {
	tests := []struct {
		name                                     string
		senderMin, senderMax, readerMin, readMax uint32
		want                                     uint32
		err                                      []string // fragments the refusal must name
	}{
		{"same build", 3, 3, 3, 3, 3, nil},
		{"upgrade reads older too", 2, 3, 1, 4, 3, nil},
		{"new binary reads newer only", 1, 3, 3, 5, 3, nil},
		{"downgrade: old one migrates down", 1, 5, 2, 3, 3, nil},
		{"single overlap at the bottom", 4, 6, 1, 4, 4, nil},
		{"reader too new", 1, 3, 4, 6, 0, []string{"v1..v3", "v4..v6", "no common state version"}},
		{"reader too old", 5, 7, 1, 4, 0, []string{"v5..v7", "v1..v4"}},
		{"empty sender range", 3, 2, 1, 4, 0, []string{"v3..v2", "empty"}},
		{"empty reader range", 1, 2, 4, 3, 0, []string{"v4..v3", "empty"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChooseVersion(tc.senderMin, tc.senderMax, tc.readerMin, tc.readMax)
			if tc.err == nil {
				if err != nil || got != tc.want {
					t.Fatalf("got v%d, %v; want v%d", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got v%d, want a refusal", got)
			}
			for _, frag := range tc.err {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("refusal %q does not name %q", err, frag)
				}
			}
		})
	}
}

func TestCheckFDBudget(t *testing.T) {
	tests := []struct {
		name string
		h    Hello
		need int
		err  []string
	}{
		{"plenty", Hello{PID: 7, NoFileLimit: 1 << 20, OpenFDs: 30}, 10000, nil},
		{"exactly fits with the reserve", Hello{NoFileLimit: 1024, OpenFDs: 24}, 1024 - 24 - FDReserve, nil},
		{"one over", Hello{PID: 7, NoFileLimit: 1024, OpenFDs: 24}, 1024 - 24 - FDReserve + 1,
			[]string{"pid 7", "cannot take 937 descriptors", "24 open", "limit of 1024", "leaving 1000", "64 must stay in reserve"}},
		{"already over its limit", Hello{NoFileLimit: 100, OpenFDs: 150}, 0, []string{"leaving 0"}},
		{"unlimited", Hello{NoFileLimit: unix.RLIM_INFINITY, OpenFDs: 10}, 1 << 30, nil},
		{"negative need", Hello{NoFileLimit: 1024}, -1, []string{"negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFDBudget(tc.h, tc.need)
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no refusal")
			}
			for _, frag := range tc.err {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("refusal %q does not name %q", err, frag)
				}
			}
		})
	}
}

func TestLocalHello(t *testing.T) {
	h, err := LocalHello("b1", 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if h.Build != "b1" || h.ReadsMin != 2 || h.ReadsMax != 3 || h.NoFileLimit != rl.Cur || h.OpenFDs < 3 {
		t.Fatalf("hello %+v", h)
	}
}
