package hls

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// Spill is the file in which one park puts the frames every muxer holds
// back (not yet in a part), each stream at its own offset. Creating a file
// per stream cost every parked session tens of microseconds of
// file-system work, and every session waited for all of them; one file per
// park and one positioned write per stream costs a few. The file is
// created on the first write, in dir, or in the first writer's own
// directory when dir is empty.
//
// The old process closes it at the commit and removes it at a rollback;
// the new process reads it while restoring and removes it (Spills).
type Spill struct {
	dir  string
	once sync.Once
	f    *os.File
	err  error
	next atomic.Int64
}

// NewSpill prepares a spill; nothing touches the disk until a muxer
// exports into it.
func NewSpill(dir string) *Spill { return &Spill{dir: dir} }

// put writes b at a fresh offset and returns where it went.
func (sp *Spill) put(fallbackDir string, b []byte) (string, int64, error) {
	sp.once.Do(func() {
		dir := sp.dir
		if dir == "" {
			dir = fallbackDir
		}
		sp.f, sp.err = os.CreateTemp(dir, "handoff-*.pending")
	})
	if sp.err != nil {
		return "", 0, fmt.Errorf("spill file: %w", sp.err)
	}
	off := sp.next.Add(int64(len(b))) - int64(len(b))
	if _, err := sp.f.WriteAt(b, off); err != nil {
		return "", 0, fmt.Errorf("spill file %s: %w", sp.f.Name(), err)
	}
	return sp.f.Name(), off, nil
}

// Close lets go of the file at the commit: it is the new process's now.
func (sp *Spill) Close() error {
	if sp == nil || sp.f == nil {
		return nil
	}
	return sp.f.Close()
}

// Discard closes and removes the file at a rollback: every muxer still
// holds its frames in memory.
func (sp *Spill) Discard() error {
	if sp == nil {
		return nil
	}
	// After a failed park, a session that had not answered yet may still
	// export: it must not create the file now that nobody removes it.
	sp.once.Do(func() { sp.err = errors.New("the park was rolled back") })
	if sp.f == nil {
		return nil
	}
	err := sp.f.Close()
	if rerr := os.Remove(sp.f.Name()); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// Spills reads the spill files named by restored muxers, each opened once
// however many streams it holds, and removes them when the restore is
// over: by then every muxer has its frames in memory.
type Spills struct {
	mu    sync.Mutex
	files map[string]*os.File
}

// NewSpills starts an empty set; the restore closes it.
func NewSpills() *Spills { return &Spills{files: make(map[string]*os.File)} }

func (s *Spills) read(path string, off int64, n int) ([]byte, error) {
	s.mu.Lock()
	f, ok := s.files[path]
	if !ok {
		var err error
		if f, err = os.Open(path); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		s.files[path] = f
	}
	s.mu.Unlock()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%s holds less than %d bytes at %d", path, n, off)
		}
		return nil, err
	}
	return b, nil
}

// Close closes and removes every spill file read.
func (s *Spills) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for path, f := range s.files {
		f.Close()
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = err
		}
		delete(s.files, path)
	}
	return first
}
