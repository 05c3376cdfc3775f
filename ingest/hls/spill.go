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

// Spills reads the spill files named by restored muxers, each opened and
// read once however many streams it holds, and removes them when the
// restore is over: by then every muxer has its frames in memory.
//
// A spill file is read whole, in one call, and each stream's frames are a
// slice of it: one read(2) a stream, into memory of its own, was a tenth
// of a new process's CPU while 1,000 streams waited for it. A file larger
// than wholeSpill is read a stream at a time instead.
type Spills struct {
	mu    sync.Mutex
	files map[string]*spillFile
}

type spillFile struct {
	once sync.Once
	f    *os.File
	// data is the whole file, when it was read whole; err why it could
	// not be.
	data []byte
	err  error
}

// wholeSpill bounds the spill file read in one piece: 1,000 streams hold
// back about 3 MiB at 500 kbit/s. A variable for the tests.
var wholeSpill int64 = 256 << 20

// NewSpills starts an empty set; the restore closes it.
func NewSpills() *Spills { return &Spills{files: make(map[string]*spillFile)} }

func (s *Spills) read(path string, off int64, n int) ([]byte, error) {
	s.mu.Lock()
	sf, ok := s.files[path]
	if !ok {
		sf = &spillFile{}
		s.files[path] = sf
	}
	s.mu.Unlock()
	sf.once.Do(func() { sf.load(path) })
	if sf.err != nil {
		return nil, sf.err
	}
	short := func() ([]byte, error) { return nil, fmt.Errorf("%s holds less than %d bytes at %d", path, n, off) }
	if sf.data != nil {
		if off > int64(len(sf.data)) || int64(n) > int64(len(sf.data))-off {
			return short()
		}
		return sf.data[off : off+int64(n) : off+int64(n)], nil
	}
	b := make([]byte, n)
	if _, err := sf.f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return short()
		}
		return nil, err
	}
	return b, nil
}

func (sf *spillFile) load(path string) {
	if sf.f, sf.err = os.Open(path); sf.err != nil {
		return
	}
	fi, err := sf.f.Stat()
	if err != nil {
		sf.err = err
		return
	}
	if fi.Size() > wholeSpill {
		return
	}
	data := make([]byte, fi.Size())
	if _, err := io.ReadFull(sf.f, data); err != nil {
		sf.err = fmt.Errorf("read %s: %w", path, err)
		return
	}
	sf.data = data
}

// Close closes and removes every spill file read.
func (s *Spills) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for path, sf := range s.files {
		if sf.f != nil {
			sf.f.Close()
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = err
		}
		delete(s.files, path)
	}
	return first
}
