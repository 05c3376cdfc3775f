package hls

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mediad/mediad/state"
)

// Three streams parked into one spill and restored from it end with the
// files and playlist of a muxer that never moved, as with a pending file
// per stream; each stream's frames are at their own offset, and the
// restore's end removes the spill.
func TestSpillSharedByStreamsIsInvisible(t *testing.T) {
	msgs := captureMessages(t)
	ref := newTestMuxer(t, t.TempDir())
	feed(ref, msgs)
	want := snapshot(t, ref)

	spillDir := t.TempDir()
	sp := NewSpill(spillDir)
	cuts := []int{40, 97, len(msgs) / 2}
	var states []state.HLS
	for _, cut := range cuts {
		a := newTestMuxer(t, t.TempDir())
		feed(a, msgs[:cut])
		st, err := a.ExportTo(sp)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		a.Detach()
		if len(st.Pending) == 0 || st.PendingFile == "" || filepath.Dir(st.PendingFile) != spillDir {
			t.Fatalf("cut %d: %d frames held back in %q", cut, len(st.Pending), st.PendingFile)
		}
		if _, err := os.Stat(filepath.Join(st.Dir, pendingFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cut %d: a pending file of its own too: %v", cut, err)
		}
		states = append(states, st)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if states[0].PendingFile != states[2].PendingFile || states[0].PendingOffset != 0 || !(states[1].PendingOffset > 0 && states[2].PendingOffset > states[1].PendingOffset) {
		t.Fatalf("offsets %d, %d, %d in %s and %s", states[0].PendingOffset, states[1].PendingOffset, states[2].PendingOffset, states[0].PendingFile, states[2].PendingFile)
	}

	spills := NewSpills()
	for i, cut := range cuts {
		vs, as := seqHeaders(msgs[:cut])
		b, err := RestoreFrom(Config{}, states[i], vs, as, spills)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if b.st.PendingFile != "" {
			t.Errorf("cut %d: the restored muxer still names the spill", cut)
		}
		feed(b, msgs[cut:])
		got := snapshot(t, b)
		if !slices.Equal(got.names, want.names) {
			t.Fatalf("cut %d: files %v, want %v", cut, got.names, want.names)
		}
		for j := range got.files {
			if !bytes.Equal(got.files[j], want.files[j]) {
				t.Errorf("cut %d: %s differs", cut, got.names[j])
			}
		}
		if !bytes.Equal(got.playlist, want.playlist) {
			t.Errorf("cut %d: playlist differs", cut)
		}
	}
	if _, err := os.Stat(states[0].PendingFile); err != nil {
		t.Fatalf("spill gone before the restore ended: %v", err)
	}
	if err := spills.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(states[0].PendingFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spill left after the restore: %v", err)
	}
}

// A rollback removes the spill; a park with nothing held back creates no
// file at all.
func TestSpillDiscard(t *testing.T) {
	msgs := captureMessages(t)
	dir := t.TempDir()
	empty := NewSpill(dir)
	if err := empty.Discard(); err != nil {
		t.Fatal(err)
	}
	sp := NewSpill(dir)
	a := newTestMuxer(t, t.TempDir())
	feed(a, msgs[:50])
	st, err := a.ExportTo(sp)
	if err != nil || st.PendingFile == "" {
		t.Fatalf("export: %v, file %q", err, st.PendingFile)
	}
	if err := sp.Discard(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left after a rollback: %v", ents)
	}
	// A session that exports after the rollback (it had not answered the
	// failed park) gets an error and leaves no file behind.
	if _, err := a.ExportTo(empty); err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Errorf("export after a rollback: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left after a late export: %v", ents)
	}
}

// A restore whose spill is missing or short fails with the file named,
// rather than muxing frames that are not there.
func TestRestoreFromBadSpill(t *testing.T) {
	msgs := captureMessages(t)
	sp := NewSpill(t.TempDir())
	a := newTestMuxer(t, t.TempDir())
	feed(a, msgs[:50])
	st, err := a.ExportTo(sp)
	if err != nil {
		t.Fatal(err)
	}
	a.Detach()
	sp.Close()
	vs, as := seqHeaders(msgs[:50])
	for _, tc := range []struct {
		name string
		mod  func(st *state.HLS)
		want string
	}{
		{"offset past the end", func(st *state.HLS) { st.PendingOffset = 1 << 20 }, "holds less than"},
		{"negative offset", func(st *state.HLS) { st.PendingOffset = -1 }, "offset -1"},
		{"no such file", func(st *state.HLS) { st.PendingFile = filepath.Join(t.TempDir(), "gone.pending") }, "gone.pending"},
		{"too much held back", func(st *state.HLS) { st.Pending = append(slices.Clone(st.Pending), state.HLSSample{Size: maxPending}) }, "held back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := st
			tc.mod(&bad)
			spills := NewSpills()
			defer spills.Close()
			if _, err := RestoreFrom(Config{}, bad, vs, as, spills); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("restore: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// A spill too large to read whole is read a stream at a time, with the
// same bytes and the same errors.
func TestSpillsReadAStreamAtATime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff-1.pending")
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(old int64) { wholeSpill = old }(wholeSpill)
	for _, limit := range []int64{0, wholeSpill} {
		wholeSpill = limit
		spills := NewSpills()
		for _, r := range []struct{ off, n int }{{0, 10}, {9990, 10}, {1234, 4000}, {10000, 0}} {
			b, err := spills.read(path, int64(r.off), r.n)
			if err != nil || !bytes.Equal(b, data[r.off:r.off+r.n]) || cap(b) != r.n {
				t.Errorf("limit %d: read %d at %d: %d bytes (cap %d), %v", limit, r.n, r.off, len(b), cap(b), err)
			}
		}
		for _, r := range []struct{ off, n int }{{9995, 10}, {10001, 1}, {1 << 40, 1}} {
			if _, err := spills.read(path, int64(r.off), r.n); err == nil || !strings.Contains(err.Error(), "holds less than") {
				t.Errorf("limit %d: read %d at %d: %v, want a short file", limit, r.n, r.off, err)
			}
		}
		for _, sf := range spills.files {
			if (len(sf.pieces) == 1) != (limit > 0) {
				t.Errorf("limit %d: read in %d pieces", limit, len(sf.pieces))
			}
			sf.f.Close()
		}
	}
}

// The new process reads the spill while the old one still writes it: the
// streams sent first are rebuilt while the others park. Each stream reads
// back what was written for it, whichever piece it lands in, with many
// writers at once and a reader right behind each.
func TestSpillsReadWhileWritten(t *testing.T) {
	dir := t.TempDir()
	sp := NewSpill(dir)
	defer sp.Discard()
	spills := NewSpills()
	defer spills.Close()
	const writers, streams = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers*streams)
	for w := range writers {
		wg.Go(func() {
			for i := range streams {
				b := bytes.Repeat([]byte{byte(w*streams + i)}, 100+(w*31+i*17)%3000)
				path, off, err := sp.put(dir, b)
				if err == nil {
					var got []byte
					got, err = spills.read(path, off, len(b))
					if err == nil && !bytes.Equal(got, b) {
						err = fmt.Errorf("writer %d stream %d: read back %d bytes that differ from the %d written at %d", w, i, len(got), len(b), off)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, sf := range spills.files {
		t.Logf("%d streams read from %d pieces of %d bytes in all", writers*streams, len(sf.pieces), sf.end)
	}
}
