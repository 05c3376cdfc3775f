package hls

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mediad/mediad/state"
)

// pendingFile holds, while the stream crosses an upgrade, the bytes of the
// frames not yet in a part.
const pendingFile = "pending"

// Export captures the muxer at a safe point (the publisher is parked, so
// Write is not running). The frames not yet in a part go to a file in the
// stream's directory: media stays out of the state. The muxer goes on
// unchanged, for a rollback. This is the form a version-5 build reads.
func (m *Muxer) Export() (state.HLS, error) { return m.ExportTo(nil) }

// ExportTo is Export with the held-back frames written into sp, shared by
// every stream of the park (state version 6); nil sp writes the stream's
// own pending file.
func (m *Muxer) ExportTo(sp *Spill) (state.HLS, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.st
	out.Segments = slices.Clone(m.st.Segments)
	for i := range out.Segments {
		out.Segments[i].Parts = slices.Clone(out.Segments[i].Parts)
	}
	out.Gone = slices.Clone(m.st.Gone)
	for i := range out.Gone {
		out.Gone[i].Parts = slices.Clone(out.Gone[i].Parts)
	}
	var buf []byte
	out.Pending = make([]state.HLSSample, len(m.pending))
	for i, s := range m.pending {
		out.Pending[i] = state.HLSSample{Track: s.track, DTS: s.dts, CTS: s.cts, Key: s.key, Size: uint32(len(s.data))}
		buf = append(buf, s.data...)
	}
	if sp == nil {
		if err := writeFileAtomic(filepath.Join(m.dir, pendingFile), buf); err != nil {
			return state.HLS{}, fmt.Errorf("hls pending frames: %w", err)
		}
		return out, nil
	}
	out.PendingFile, out.PendingOffset = "", 0
	if len(buf) > 0 {
		var err error
		if out.PendingFile, out.PendingOffset, err = sp.put(filepath.Dir(m.dir), buf); err != nil {
			return state.HLS{}, fmt.Errorf("hls pending frames: %w", err)
		}
	}
	return out, nil
}

// Restore rebuilds a muxer from an old process's state. videoSeq and
// audioSeq are the stream's sequence headers (RTMP message bodies), which
// cross with the stream. The open segment's file is reopened for
// appending, cut back to the parts the index knows.
func Restore(cfg Config, st state.HLS, videoSeq, audioSeq []byte) (*Muxer, error) {
	sp := NewSpills()
	defer sp.Close()
	return RestoreFrom(cfg, st, videoSeq, audioSeq, sp)
}

// RestoreFrom is Restore reading held-back frames from spill files through
// sp, which the caller closes (removing the files) once every stream of
// the upgrade is restored.
func RestoreFrom(cfg Config, st state.HLS, videoSeq, audioSeq []byte, sp *Spills) (*Muxer, error) {
	cfg.setDefaults()
	m := &Muxer{cfg: cfg, dir: st.Dir, log: cfg.Log, changed: make(chan struct{}), st: st}
	if videoSeq != nil {
		m.Write(typeVideo, 0, videoSeq, timeZero)
	}
	if audioSeq != nil {
		m.Write(typeAudio, 0, audioSeq, timeZero)
	}
	buf, err := readPending(st, sp)
	if err != nil {
		return nil, fmt.Errorf("hls pending frames: %w", err)
	}
	st.PendingFile, st.PendingOffset = "", 0
	m.st.PendingFile, m.st.PendingOffset = "", 0
	for _, s := range st.Pending {
		if int(s.Size) > len(buf) || s.Track > trackAudio {
			return nil, fmt.Errorf("hls pending frames: %d bytes on disk, the index wants more", len(buf))
		}
		m.pending = append(m.pending, sample{track: s.Track, dts: s.DTS, cts: s.CTS, key: s.Key, data: buf[:s.Size:s.Size]})
		buf = buf[s.Size:]
	}
	m.st.Pending = nil
	if open := m.openLocked(); open != nil {
		f, err := os.OpenFile(m.segPath(open.MSN), os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("hls open segment: %w", err)
		}
		var end int64
		if n := len(open.Parts); n > 0 {
			end = open.Parts[n-1].Offset + open.Parts[n-1].Size
		}
		if err := f.Truncate(end); err != nil {
			f.Close()
			return nil, fmt.Errorf("hls open segment: %w", err)
		}
		m.segFile = f
	}
	return m, nil
}

// maxPending bounds what a restore reads for one stream's held-back
// frames: a part's worth is a few hundred kilobytes even at 20 Mbit/s.
const maxPending = 64 << 20

// readPending reads the held-back frames from the shared spill file or
// the stream's own pending file.
func readPending(st state.HLS, sp *Spills) ([]byte, error) {
	var n int64
	for _, s := range st.Pending {
		n += int64(s.Size)
	}
	if n > maxPending {
		return nil, fmt.Errorf("%d bytes held back, at most %d", n, maxPending)
	}
	if st.PendingFile == "" {
		buf, err := os.ReadFile(filepath.Join(st.Dir, pendingFile))
		if errors.Is(err, os.ErrNotExist) && n == 0 {
			return nil, nil
		}
		return buf, err
	}
	if n == 0 {
		return nil, nil
	}
	if st.PendingOffset < 0 {
		return nil, fmt.Errorf("offset %d in %s", st.PendingOffset, st.PendingFile)
	}
	return sp.read(st.PendingFile, st.PendingOffset, int(n))
}

// LoadRecent reads the newest parts of a restored muxer back into memory,
// as the old process had them: right after an upgrade every viewer asks
// for them at once. Until then, and for a part that cannot be read,
// viewers get the file.
//
// It may run at any time after the restore, alongside the publisher's
// writes: the server calls it once the moved publishers have read again,
// because some ten system calls and as many fresh pages a stream, made
// before each publisher's first read, were most of the stall at 1,000
// streams with LL-HLS. Parts made here meanwhile stay; the loaded ones go
// before them, and only the newest cfg.MemParts are kept. The files are
// read without the lock, so that the publisher does not wait for them.
func (m *Muxer) LoadRecent() {
	type ref struct {
		msn  uint64
		idx  int
		part state.HLSPart
	}
	var refs []ref
	m.mu.Lock()
	if m.detached || m.ended || m.loadedRecent {
		m.mu.Unlock()
		return
	}
	m.loadedRecent = true
	for i := len(m.st.Segments) - 1; i >= 0 && len(refs) < m.cfg.MemParts; i-- {
		s := m.st.Segments[i]
		for j := len(s.Parts) - 1; j >= 0 && len(refs) < m.cfg.MemParts; j-- {
			if m.recentLocked(s.MSN, uint64(j)) != nil {
				continue
			}
			refs = append(refs, ref{s.MSN, j, s.Parts[j]})
		}
	}
	m.mu.Unlock()
	// A segment removed meanwhile (the window moved on) cannot be opened;
	// one removed after it was opened can still be read. The ranges of
	// listed parts never change.
	var (
		f      *os.File
		msn    uint64
		loaded []memPart
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for i := len(refs) - 1; i >= 0; i-- {
		r := refs[i]
		if f == nil || r.msn != msn {
			if f != nil {
				f.Close()
			}
			var err error
			if f, err = os.Open(m.segPath(r.msn)); err != nil {
				f = nil
				continue
			}
			msn = r.msn
		}
		b := make([]byte, r.part.Size)
		if _, err := f.ReadAt(b, r.part.Offset); err != nil {
			continue
		}
		loaded = append(loaded, memPart{msn: r.msn, idx: r.idx, data: b})
	}
	if len(loaded) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.detached || m.cfg.MemParts == 0 {
		return
	}
	all := append(loaded, m.recent...)
	slices.SortStableFunc(all, func(a, b memPart) int {
		if c := cmp.Compare(a.msn, b.msn); c != 0 {
			return c
		}
		return cmp.Compare(a.idx, b.idx)
	})
	all = slices.CompactFunc(all, func(a, b memPart) bool { return a.msn == b.msn && a.idx == b.idx })
	if n := len(all) - m.cfg.MemParts; n > 0 {
		all = all[n:]
	}
	m.recent = append(m.recent[:0:0], all...)
}

// timeZero stands for "now" where a call makes no segment.
var timeZero time.Time
