package hls

import (
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
// unchanged, for a rollback.
func (m *Muxer) Export() (state.HLS, error) {
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
	if err := writeFileAtomic(filepath.Join(m.dir, pendingFile), buf); err != nil {
		return state.HLS{}, fmt.Errorf("hls pending frames: %w", err)
	}
	return out, nil
}

// Restore rebuilds a muxer from an old process's state. videoSeq and
// audioSeq are the stream's sequence headers (RTMP message bodies), which
// cross with the stream. The open segment's file is reopened for
// appending, cut back to the parts the index knows.
func Restore(cfg Config, st state.HLS, videoSeq, audioSeq []byte) (*Muxer, error) {
	cfg.setDefaults()
	m := &Muxer{cfg: cfg, dir: st.Dir, log: cfg.Log, changed: make(chan struct{}), st: st}
	if videoSeq != nil {
		m.Write(typeVideo, 0, videoSeq, timeZero)
	}
	if audioSeq != nil {
		m.Write(typeAudio, 0, audioSeq, timeZero)
	}
	buf, err := os.ReadFile(filepath.Join(st.Dir, pendingFile))
	if err != nil && !(errors.Is(err, os.ErrNotExist) && len(st.Pending) == 0) {
		return nil, fmt.Errorf("hls pending frames: %w", err)
	}
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
	m.loadRecent()
	return m, nil
}

// loadRecent reads the newest parts back into memory, as the old process
// had them: right after an upgrade every viewer asks for them at once.
// A part that cannot be read is left to the file.
func (m *Muxer) loadRecent() {
	type ref struct {
		msn  uint64
		idx  int
		part state.HLSPart
	}
	var refs []ref
	for i := len(m.st.Segments) - 1; i >= 0 && len(refs) < m.cfg.MemParts; i-- {
		s := m.st.Segments[i]
		for j := len(s.Parts) - 1; j >= 0 && len(refs) < m.cfg.MemParts; j-- {
			refs = append(refs, ref{s.MSN, j, s.Parts[j]})
		}
	}
	var (
		f   *os.File
		msn uint64
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
		m.rememberLocked(memPart{msn: r.msn, idx: r.idx, data: b})
	}
}

// timeZero stands for "now" where a call makes no segment.
var timeZero time.Time
