package hls

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
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
	// mu makes each stream's offset and its write one step, so that the
	// file never has a hole below its size: the new process reads it while
	// the old one still writes (Spills), and a stream written after one
	// that reserved a lower offset would leave zeros there for a moment.
	mu   sync.Mutex
	next int64
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
	sp.mu.Lock()
	defer sp.mu.Unlock()
	off := sp.next
	if _, err := sp.f.WriteAt(b, off); err != nil {
		// Nothing after it lands past what was written: no hole.
		return "", 0, fmt.Errorf("spill file %s: %w", sp.f.Name(), err)
	}
	sp.next += int64(len(b))
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
// A spill file is read in a few large pieces, and each stream's frames are
// a slice of one: one read(2) a stream, into memory of its own, was a
// tenth of a new process's CPU while 1,000 streams waited for it. The old
// process may still be writing the file while the streams it sent first
// are rebuilt here, so a stream beyond what was read brings in everything
// written since; its writes leave no hole below the file's size (Spill),
// so what was read stays right. A stream that straddles two pieces, or
// lies beyond wholeSpill, is read on its own.
type Spills struct {
	mu    sync.Mutex
	files map[string]*spillFile
}

type spillFile struct {
	once sync.Once
	f    *os.File
	err  error // why it could not be opened

	mu     sync.Mutex
	pieces []spillPiece
	end    int64 // the pieces cover the file from 0 to end
}

type spillPiece struct {
	off  int64
	data []byte
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
	sf.once.Do(func() { sf.f, sf.err = os.Open(path) })
	if sf.err != nil {
		return nil, sf.err
	}
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("%s: %d bytes at %d", path, n, off)
	}
	if b := sf.cached(off, n); b != nil {
		return b, nil
	}
	b := make([]byte, n)
	if _, err := sf.f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s holds less than %d bytes at %d", path, n, off)
		}
		return nil, err
	}
	return b, nil
}

// cached returns the n bytes at off from the pieces read so far, after
// reading what was written since the last piece when they lie beyond it;
// nil when no piece holds them whole.
func (sf *spillFile) cached(off int64, n int) []byte {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	end := off + int64(n)
	if end > sf.end && sf.end < wholeSpill {
		sf.readMore()
	}
	for _, p := range sf.pieces {
		if off >= p.off && end <= p.off+int64(len(p.data)) {
			return p.data[off-p.off : end-p.off : end-p.off]
		}
	}
	return nil
}

// readMore reads the file from where the pieces end to its size now (up
// to wholeSpill) as one more piece. A failure leaves the pieces as they
// are: the caller's own read reports it.
func (sf *spillFile) readMore() {
	fi, err := sf.f.Stat()
	if err != nil {
		return
	}
	size := min(fi.Size(), wholeSpill)
	if size <= sf.end {
		return
	}
	data := make([]byte, size-sf.end)
	k, _ := sf.f.ReadAt(data, sf.end)
	if k <= 0 {
		return
	}
	sf.pieces = append(sf.pieces, spillPiece{off: sf.end, data: data[:k:k]})
	sf.end += int64(k)
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
