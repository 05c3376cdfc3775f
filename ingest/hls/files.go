package hls

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrMoved answers a request that waited for a part which the stream's new
// process produces: this one cannot see it. The client asks again and
// reaches the new process.
var ErrMoved = errors.New("the stream moved to a new process during the request")

// File is a byte range of a file in the stream's directory, or a part's
// bytes in memory.
type File struct {
	f         *os.File
	data      []byte
	Off, Size int64
	ModTime   time.Time
	// Moved: the part was written by the stream's new process. The caller
	// closes the connection so that the client's next request reaches it.
	Moved bool
}

// Reader reads the range.
func (f *File) Reader() io.ReadSeeker {
	if f.f == nil {
		return bytes.NewReader(f.data)
	}
	return io.NewSectionReader(f.f, f.Off, f.Size)
}

// WriteTo writes the whole range to w in one write: from memory, or read
// from the file into a pooled buffer. (io.Copy to an http.ResponseWriter
// allocates 32 KiB per call: after an upgrade, when the new process has
// no part in memory yet and every viewer catches up from the files, that
// was a tenth of its CPU.)
func (f *File) WriteTo(w io.Writer) (int64, error) {
	if f.f == nil {
		n, err := w.Write(f.data)
		return int64(n), err
	}
	if f.Size > maxPooledRead {
		return io.Copy(w, io.NewSectionReader(f.f, f.Off, f.Size))
	}
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	if int64(cap(*bp)) < f.Size {
		*bp = make([]byte, f.Size)
	}
	b := (*bp)[:f.Size]
	if _, err := f.f.ReadAt(b, f.Off); err != nil {
		return 0, fmt.Errorf("read %s at %d: %w", f.f.Name(), f.Off, err)
	}
	n, err := w.Write(b)
	return int64(n), err
}

// maxPooledRead bounds the buffers WriteTo keeps: parts and segments are
// far smaller; anything larger is copied in pieces.
const maxPooledRead = 4 << 20

var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// Close releases the file.
func (f *File) Close() error {
	if f.f == nil {
		return nil
	}
	return f.f.Close()
}

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
		var data []byte
		if err == nil && !wait && nm.hasPart {
			data = m.recentLocked(nm.n, nm.part)
		}
		moved, ended := m.detached, m.ended
		ch := m.changed
		m.mu.Unlock()
		if moved && (wait || errors.Is(err, ErrNotFound)) {
			// Whatever this process does not have, the new process may
			// write: a client can reach this process on a connection it
			// kept alive, with a name from the new process's playlist.
			return m.openMoved(ctx, nm, deadline.C)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, file)
		}
		if data != nil {
			return &File{data: data, Size: int64(len(data))}, nil
		}
		if !wait {
			f, err := os.Open(m.segPath(nm.n))
			if err != nil {
				return nil, fmt.Errorf("%w: %s", ErrNotFound, file)
			}
			return &File{f: f, Off: off, Size: size}, nil
		}
		if ended {
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

// movedPollInterval is how often the files are looked at for parts that
// the stream's new process writes, while requests wait for them here.
const movedPollInterval = 5 * time.Millisecond

// movedParts is what this process learns, after the stream moved, of the
// parts the new process writes: the new process's index is out of reach,
// but a part is self-delimiting (its fMP4 boxes up to and including its
// mdat, starting where the part before ends). One watcher per stream reads
// the files, however many requests wait.
type movedParts struct {
	waiters  int  // requests waiting for a part
	watching bool // the watcher runs
	started  bool
	first    uint64 // the segment open when the stream moved
	// The segment being read: the one open when the stream moved, then
	// the next (the only two a playlist of this process can hint).
	msn   uint64
	next  int   // index of its next part
	off   int64 // where that part starts
	found []movedPart
	done  bool // the second segment is complete too, or reading failed
	err   error
}

type movedPart struct {
	msn      uint64
	idx      int
	off, len int64
}

// openMoved answers a request for a part that did not exist when the
// stream moved to the new process, which writes it to the same file: the
// request is answered the moment the part is on disk, with no error for
// the client to back off from (hls.js waits a second before it retries a
// part).
func (m *Muxer) openMoved(ctx context.Context, nm name, deadline <-chan time.Time) (*File, error) {
	m.mu.Lock()
	open := m.openLocked()
	if !nm.hasPart || open == nil || nm.n != open.MSN && nm.n != open.MSN+1 {
		m.mu.Unlock()
		return nil, ErrMoved
	}
	mp := &m.moved
	if !mp.watching && !mp.done {
		if !mp.started {
			mp.started, mp.first = true, open.MSN
			mp.msn, mp.next = open.MSN, len(open.Parts)
			if n := len(open.Parts); n > 0 {
				mp.off = open.Parts[n-1].Offset + open.Parts[n-1].Size
			}
		}
		mp.watching = true
		go m.watchMoved()
	}
	mp.waiters++
	defer func() {
		m.mu.Lock()
		mp.waiters--
		m.mu.Unlock()
	}()
	for {
		for _, p := range mp.found {
			if p.msn == nm.n && uint64(p.idx) == nm.part {
				m.mu.Unlock()
				f, err := os.Open(m.segPath(p.msn))
				if err != nil {
					return nil, fmt.Errorf("%w: %s", ErrNotFound, m.segPath(p.msn))
				}
				return &File{f: f, Off: p.off, Size: p.len, Moved: true}, nil
			}
		}
		// A part of a segment read to its end never comes.
		complete := mp.done || nm.n < mp.msn
		err := mp.err
		ch := m.changed
		m.mu.Unlock()
		switch {
		case err != nil:
			return nil, err
		case complete:
			return nil, ErrNotFound
		}
		select {
		case <-ch:
		case <-deadline:
			return nil, ErrMoved
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		m.mu.Lock()
	}
}

// watchMoved reads the files for parts while requests wait for them. It
// stops once none waits (a later request starts it again where it left
// off) or both segments are complete.
func (m *Muxer) watchMoved() {
	t := time.NewTicker(movedPollInterval)
	defer t.Stop()
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var size int64 = -1
	for range t.C {
		m.mu.Lock()
		mp := &m.moved
		if mp.waiters == 0 {
			mp.watching = false
			m.mu.Unlock()
			return
		}
		msn, off, next := mp.msn, mp.off, mp.next
		m.mu.Unlock()

		if f == nil {
			if f, _ = os.Open(m.segPath(msn)); f == nil {
				continue // not created yet
			}
		}
		fi, err := f.Stat()
		if err == nil && fi.Size() == size {
			// Nothing new. Once the next segment's file exists this one
			// is complete: the new process writes its last part first.
			if _, serr := os.Stat(m.segPath(msn + 1)); serr != nil {
				continue
			}
			if fi, err = f.Stat(); err == nil && fi.Size() == size {
				m.mu.Lock()
				if msn == mp.first {
					mp.msn, mp.next, mp.off = msn+1, 0, 0
				} else {
					mp.done, mp.watching = true, false
				}
				done := mp.done
				m.signalLocked()
				m.mu.Unlock()
				f.Close()
				f, size = nil, -1
				if done {
					return
				}
				continue
			}
		}
		var parts []movedPart
		if err == nil {
			size = fi.Size()
			for {
				n, perr := partLen(f, off, size)
				if perr != nil {
					err = perr
					break
				}
				if n == 0 {
					break
				}
				parts = append(parts, movedPart{msn: msn, idx: next, off: off, len: n})
				off += n
				next++
			}
		}
		if err == nil && len(parts) == 0 {
			continue
		}
		m.mu.Lock()
		mp.found = append(mp.found, parts...)
		mp.off, mp.next = off, next
		if err != nil {
			mp.err, mp.done, mp.watching = fmt.Errorf("reading parts the new process wrote: %w", err), true, false
		}
		m.signalLocked()
		m.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// partLen is the length of the part at off: its boxes up to and including
// the first mdat, 0 if they do not all lie before size yet.
func partLen(r io.ReaderAt, off, size int64) (int64, error) {
	var hdr [16]byte
	for pos := off; ; {
		if pos+8 > size {
			return 0, nil
		}
		if _, err := r.ReadAt(hdr[:8], pos); err != nil {
			return 0, fmt.Errorf("part at %d: %w", off, err)
		}
		n := int64(binary.BigEndian.Uint32(hdr[:4]))
		if n == 1 {
			if pos+16 > size {
				return 0, nil
			}
			if _, err := r.ReadAt(hdr[8:16], pos+8); err != nil {
				return 0, fmt.Errorf("part at %d: %w", off, err)
			}
			n = int64(binary.BigEndian.Uint64(hdr[8:16]))
		}
		if n < 8 {
			return 0, fmt.Errorf("part at %d: box of %d bytes", off, n)
		}
		if pos+n > size {
			return 0, nil
		}
		pos += n
		if string(hdr[4:8]) == "mdat" {
			return pos - off, nil
		}
	}
}
