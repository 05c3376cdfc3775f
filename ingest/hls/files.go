package hls

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrMoved answers a request that waited for a part which the stream's new
// process produces: this one cannot see it. The client asks again and
// reaches the new process.
var ErrMoved = errors.New("the stream moved to a new process during the request")

// File is a byte range of a file in the stream's directory.
type File struct {
	f         *os.File
	Off, Size int64
	ModTime   time.Time
}

// Reader reads the range.
func (f *File) Reader() io.ReadSeeker { return io.NewSectionReader(f.f, f.Off, f.Size) }

// Close releases the file.
func (f *File) Close() error { return f.f.Close() }

// name is a parsed file name: init<N>.mp4, s<MSN>.m4s or s<MSN>.<P>.m4s.
type name struct {
	init    bool
	n       uint64 // init number or MSN
	part    uint64
	hasPart bool
}

func parseName(s string) (name, bool) {
	if rest, ok := strings.CutPrefix(s, "init"); ok {
		num, ok := strings.CutSuffix(rest, ".mp4")
		n, err := strconv.ParseUint(num, 10, 32)
		return name{init: true, n: n}, ok && err == nil && num == strconv.FormatUint(n, 10)
	}
	rest, ok := strings.CutPrefix(s, "s")
	if !ok {
		return name{}, false
	}
	rest, ok = strings.CutSuffix(rest, ".m4s")
	if !ok {
		return name{}, false
	}
	msn, part, hasPart := strings.Cut(rest, ".")
	var nm name
	var err error
	if nm.n, err = strconv.ParseUint(msn, 10, 64); err != nil || msn != strconv.FormatUint(nm.n, 10) {
		return name{}, false
	}
	if hasPart {
		if nm.part, err = strconv.ParseUint(part, 10, 32); err != nil || part != strconv.FormatUint(nm.part, 10) {
			return name{}, false
		}
		nm.hasPart = true
	}
	return nm, true
}

// ValidName says whether s names a file a stream could have; anything else
// is a bad request, never a path on disk.
func ValidName(s string) bool {
	_, ok := parseName(s)
	return ok
}

// Open finds the init file, segment or part called file, waiting for a
// part or segment that is about to exist (the preload hint, or the open
// segment) up to three target durations.
func (m *Muxer) Open(ctx context.Context, file string) (*File, error) {
	nm, ok := parseName(file)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, file)
	}
	if nm.init {
		f, err := os.Open(m.initPath(uint32(nm.n)))
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, file)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		return &File{f: f, Size: fi.Size(), ModTime: fi.ModTime()}, nil
	}
	deadline := time.NewTimer(3 * m.targetDuration())
	defer deadline.Stop()
	for {
		m.mu.Lock()
		off, size, wait, err := m.locateLocked(nm)
		moved, ended := m.detached, m.ended
		ch := m.changed
		m.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, file)
		}
		if !wait {
			f, err := os.Open(m.segPath(nm.n))
			if err != nil {
				return nil, fmt.Errorf("%w: %s", ErrNotFound, file)
			}
			return &File{f: f, Off: off, Size: size}, nil
		}
		switch {
		case moved:
			return nil, ErrMoved
		case ended:
			return nil, fmt.Errorf("%w: %s", ErrNotFound, file)
		}
		select {
		case <-ch:
		case <-deadline.C:
			return nil, ErrTimeout
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// locateLocked finds a segment or part in the index: its byte range, or
// whether it is worth waiting for.
func (m *Muxer) locateLocked(nm name) (off, size int64, wait bool, err error) {
	for _, s := range m.st.Segments {
		if s.MSN != nm.n {
			continue
		}
		if !nm.hasPart {
			if !s.Closed {
				return 0, 0, true, nil
			}
			for _, p := range s.Parts {
				size += p.Size
			}
			return 0, size, false, nil
		}
		if nm.part < uint64(len(s.Parts)) {
			p := s.Parts[nm.part]
			return p.Offset, p.Size, false, nil
		}
		if !s.Closed && nm.part < uint64(len(s.Parts))+advancePartLimit {
			return 0, 0, true, nil
		}
		return 0, 0, false, ErrNotFound
	}
	// Out of the window but still on disk.
	for _, g := range m.st.Gone {
		if g.MSN != nm.n {
			continue
		}
		if nm.hasPart {
			if nm.part < uint64(len(g.Parts)) {
				return g.Parts[nm.part].Offset, g.Parts[nm.part].Size, false, nil
			}
			return 0, 0, false, ErrNotFound
		}
		for _, p := range g.Parts {
			size += p.Size
		}
		return 0, size, false, nil
	}
	// The first part of the segment after the open one: a preload hint
	// given just before a keyframe cut the segment.
	if open := m.openLocked(); open != nil && nm.n == open.MSN+1 && nm.hasPart && nm.part == 0 {
		return 0, 0, true, nil
	}
	if len(m.st.Segments) == 0 && nm.hasPart && nm.part == 0 {
		return 0, 0, true, nil
	}
	return 0, 0, false, ErrNotFound
}
