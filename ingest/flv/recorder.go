package flv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

const (
	// writeBufferSize batches small audio tags into few write syscalls while
	// a keyframe flush still bounds how stale the file on disk can be.
	writeBufferSize = 64 << 10

	// maxNameAttempts bounds the -1, -2, ... suffixes tried when segments
	// collide within one second of wall clock.
	maxNameAttempts = 1000

	segmentTimeLayout = "20060102T150405Z"
)

// ErrRecorderClosed is returned by Write after Close.
var ErrRecorderClosed = errors.New("flv: recorder closed")

// RecorderConfig configures a Recorder.
type RecorderConfig struct {
	// Dir receives this stream's segments; it is created (0755) when the
	// first segment opens.
	Dir string
	// SegmentDuration is the media time after which the next video keyframe
	// starts a new segment. Zero means one file per broadcast.
	SegmentDuration time.Duration
	// Now is the wall clock used to name segments; nil means time.Now.
	Now func() time.Time
	// OnSegmentDone, if set, is called on the recorder's goroutine each
	// time a segment file is complete: cut for the next one, or closed at
	// the end of the broadcast. Not for a segment abandoned after a write
	// error, nor at Release.
	OnSegmentDone func(SegmentDone)
}

// SegmentDone describes a complete recording file.
type SegmentDone struct {
	Path string
	// Start is the wall-clock time the segment's name records (second
	// precision, UTC), zero if the name does not parse.
	Start time.Time
	// Duration is the media time from its first tag to its last.
	Duration time.Duration
	Bytes    int64
}

// Recorder writes one broadcast into FLV segment files. It is owned by one
// goroutine (the publishing session) and is not safe for concurrent use.
type Recorder struct {
	dir    string
	segDur time.Duration
	now    func() time.Time

	f       *os.File
	w       *bufio.Writer
	path    string
	written int64 // bytes of the open segment, buffered or not

	started  bool   // a segment has been opened; f == nil then means one failed
	closed   bool   // Close was called
	sawVideo bool   // any video tag arrived: segments then cut on keyframes
	startTS  uint32 // timestamp of the open segment's first tag
	lastTS   uint32 // timestamp of the last tag written
	// lastInFile: the recorder was restored and has written no tag since,
	// so lastTS is not known here; the segment's last tag in the file
	// holds it (see lastTagTS).
	lastInFile bool
	onDone     func(SegmentDone)

	metadata []byte
	videoSeq []byte
	audioSeq []byte
	segments []string

	scratch [TagHeaderSize + 4]byte
}

// NewRecorder returns a Recorder; it touches the file system only when the
// first media tag arrives.
func NewRecorder(cfg RecorderConfig) *Recorder {
	r := &Recorder{dir: cfg.Dir, segDur: cfg.SegmentDuration, now: cfg.Now, onDone: cfg.OnSegmentDone}
	if r.now == nil {
		r.now = time.Now
	}
	if r.segDur < 0 {
		r.segDur = 0
	}
	return r
}

// SetMetadata sets the body of the script tag (AMF0 "onMetaData" and its
// object) that starts every segment. A change is also written at once into
// the open segment. A write error there surfaces from the next Write or
// Flush.
//
// Script tags are stamped 0: ffmpeg reads an onMetaData tag with any other
// timestamp as a packet of an extra "text" subtitle stream.
func (r *Recorder) SetMetadata(data []byte) {
	if bytes.Equal(data, r.metadata) {
		return
	}
	r.metadata = append(r.metadata[:0], data...)
	if r.f != nil && len(data) > 0 && len(data) <= MaxDataSize {
		// The error is sticky in bufio.Writer: the next Write reports it.
		_ = r.writeTag(TagScript, 0, r.metadata)
	}
}

// Write records one audio or video tag. The first tag opens the first
// segment; later segments start at a video keyframe (or, for a stream
// without video, at any audio frame) once SegmentDuration of media time has
// passed. Sequence headers are remembered and repeated at the start of every
// later segment. payload is not retained.
//
// After a write error the open segment is closed and the error returned;
// recording resumes in a new segment at the next tag that may start one, and
// the tags in between are not recorded.
func (r *Recorder) Write(typ uint8, ts uint32, payload []byte) error {
	if r.closed {
		return ErrRecorderClosed
	}
	if typ != TagAudio && typ != TagVideo {
		return fmt.Errorf("flv: record tag type %d: only audio and video are recorded", typ)
	}
	if len(payload) > MaxDataSize {
		return fmt.Errorf("flv: record tag type %d at %d ms: %w", typ, ts, ErrTagTooLarge)
	}
	seq := IsSequenceHeader(typ, payload)
	key := typ == TagVideo && IsVideoKeyframe(payload)
	if typ == TagVideo {
		r.sawVideo = true
	}
	// A segment must be decodable from its start: it may begin at a
	// keyframe, or at any audio frame when there is no video at all.
	canStart := !seq && (key || (typ == TagAudio && !r.sawVideo))

	var err error
	switch {
	case !r.started:
		err = r.openSegment(ts)
	case r.f == nil:
		if canStart {
			err = r.openSegment(ts)
		}
	case canStart && r.segDur > 0 && mediaSince(r.startTS, ts) >= r.segDur:
		err = errors.Join(r.closeSegment(), r.openSegment(ts))
	}
	if seq {
		if typ == TagVideo {
			r.videoSeq = append(r.videoSeq[:0], payload...)
		} else {
			r.audioSeq = append(r.audioSeq[:0], payload...)
		}
	}
	if r.f == nil {
		return err
	}
	if werr := r.writeTag(typ, ts, payload); werr != nil {
		return errors.Join(err, r.abandon(werr))
	}
	r.lastTS, r.lastInFile = ts, false
	if key {
		if ferr := r.w.Flush(); ferr != nil {
			return errors.Join(err, r.abandon(ferr))
		}
	}
	return err
}

// Flush writes buffered tags to the open segment.
func (r *Recorder) Flush() error {
	if r.f == nil {
		return nil
	}
	if err := r.w.Flush(); err != nil {
		return r.abandon(err)
	}
	return nil
}

// Close flushes and closes the open segment. It writes nothing beyond the
// buffered tags, so it is also how an old process lets go of a recording it
// has exported with State. Close is idempotent.
func (r *Recorder) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	return r.closeSegment()
}

// Release closes the open segment without reporting it done: the
// recording goes on in another process, which has its own descriptor.
func (r *Recorder) Release() error {
	r.onDone = nil
	return r.Close()
}

// SetOnSegmentDone sets the callback of RecorderConfig.OnSegmentDone, for
// a restored recorder.
func (r *Recorder) SetOnSegmentDone(fn func(SegmentDone)) { r.onDone = fn }

// Path returns the path of the current (or, after Close, the last) segment,
// or "" before the first.
func (r *Recorder) Path() string { return r.path }

// Segments returns the paths of all segments this recorder has opened, oldest
// first.
func (r *Recorder) Segments() []string { return slices.Clone(r.segments) }

// mediaSince is the media time from start to ts. Timestamps are 32-bit
// milliseconds that wrap after 49.7 days, so the difference is taken modulo
// 2^32; a "negative" one (ts behind start) counts as no time at all.
func mediaSince(start, ts uint32) time.Duration {
	d := ts - start
	if d > 1<<31 {
		return 0
	}
	return time.Duration(d) * time.Millisecond
}

// openSegment creates the next segment file and writes its preamble: the FLV
// header, the metadata (stamped 0, see SetMetadata) and the current sequence
// headers, stamped ts like the keyframe that follows them.
func (r *Recorder) openSegment(ts uint32) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("flv: create record dir: %w", err)
	}
	f, path, err := createSegment(r.dir, r.now().UTC().Format(segmentTimeLayout))
	if err != nil {
		return err
	}
	r.f, r.path = f, path
	r.segments = append(r.segments, path)
	r.started = true
	r.startTS, r.lastTS, r.lastInFile = ts, ts, false
	r.written = 0
	if r.w == nil {
		r.w = bufio.NewWriterSize(f, writeBufferSize)
	} else {
		r.w.Reset(f)
	}

	n, _ := r.w.Write(AppendFileHeader(r.scratch[:0], true, true))
	r.written += int64(n)
	for _, t := range [...]struct {
		typ  uint8
		ts   uint32
		data []byte
	}{{TagScript, 0, r.metadata}, {TagVideo, ts, r.videoSeq}, {TagAudio, ts, r.audioSeq}} {
		if len(t.data) == 0 {
			continue
		}
		if err := r.writeTag(t.typ, t.ts, t.data); err != nil {
			return r.abandon(err)
		}
	}
	return nil
}

// createSegment creates <dir>/<base>.flv, or <base>-1.flv, <base>-2.flv, ...
// if that exists (a republish within the same second). O_EXCL guarantees an
// earlier recording is never overwritten.
func createSegment(dir, base string) (*os.File, string, error) {
	name := base
	for i := 1; ; i++ {
		path := filepath.Join(dir, name+".flv")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
		if err == nil {
			return f, path, nil
		}
		if !errors.Is(err, os.ErrExist) || i >= maxNameAttempts {
			return nil, "", fmt.Errorf("flv: create segment: %w", err)
		}
		name = base + "-" + strconv.Itoa(i)
	}
}

// writeTag writes a tag into the buffer; the header and PreviousTagSize go
// through r.scratch so that steady-state recording does not allocate.
func (r *Recorder) writeTag(typ uint8, ts uint32, payload []byte) error {
	hdr := AppendTagHeader(r.scratch[:0], typ, ts, len(payload))
	if _, err := r.w.Write(hdr); err != nil {
		return err
	}
	if _, err := r.w.Write(payload); err != nil {
		return err
	}
	trailer := binary.BigEndian.AppendUint32(r.scratch[:0], uint32(TagHeaderSize+len(payload)))
	if _, err := r.w.Write(trailer); err != nil {
		return err
	}
	r.written += int64(TagHeaderSize + len(payload) + 4)
	return nil
}

// closeSegment flushes and closes the open segment, if any.
func (r *Recorder) closeSegment() error {
	if r.f == nil {
		return nil
	}
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f = nil
	r.w.Reset(nil)
	if err != nil {
		return fmt.Errorf("flv: close segment %s: %w", r.path, err)
	}
	if r.onDone != nil {
		if r.lastInFile {
			// A segment cut by the first keyframe after an upgrade would
			// otherwise report a duration of zero.
			if ts, err := lastTagTS(r.path, r.written); err == nil {
				r.lastTS = ts
			}
			r.lastInFile = false
		}
		r.onDone(SegmentDone{Path: r.path, Start: segmentStart(r.path), Duration: mediaSince(r.startTS, r.lastTS), Bytes: r.written})
	}
	return nil
}

// lastTagTS reads the timestamp of the last tag of the FLV file at path,
// size bytes long, from its last PreviousTagSize and the header it points
// back to.
func lastTagTS(path string, size int64) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("flv: last tag of %s: %w", path, err)
	}
	defer f.Close()
	var b [TagHeaderSize]byte
	if size < FileHeaderSize+4+TagHeaderSize+4 {
		return 0, fmt.Errorf("flv: last tag of %s: no tag in %d bytes: %w", path, size, ErrFormat)
	}
	if _, err := f.ReadAt(b[:4], size-4); err != nil {
		return 0, fmt.Errorf("flv: last tag of %s: %w", path, err)
	}
	prev := int64(binary.BigEndian.Uint32(b[:4]))
	at := size - 4 - prev
	if prev < TagHeaderSize || at < FileHeaderSize+4 {
		return 0, fmt.Errorf("flv: last tag of %s: PreviousTagSize %d in %d bytes: %w", path, prev, size, ErrFormat)
	}
	if _, err := f.ReadAt(b[:], at); err != nil {
		return 0, fmt.Errorf("flv: last tag of %s: %w", path, err)
	}
	_, data, ts := tagHeaderFields(b[:])
	if int64(data) != prev-TagHeaderSize {
		return 0, fmt.Errorf("flv: last tag of %s: header says %d bytes, PreviousTagSize %d: %w", path, data, prev, ErrFormat)
	}
	return ts, nil
}

// segmentStart reads a segment's start back from its name,
// <UTC start>[-N].flv.
func segmentStart(path string) time.Time {
	base := filepath.Base(path)
	if len(base) < len(segmentTimeLayout) {
		return time.Time{}
	}
	t, err := time.Parse(segmentTimeLayout, base[:len(segmentTimeLayout)])
	if err != nil {
		return time.Time{}
	}
	return t
}

// abandon closes a segment that failed to write and arranges for recording to
// resume in a new segment at the next keyframe: bufio.Writer keeps failing
// once it has failed, so the segment cannot be continued.
func (r *Recorder) abandon(err error) error {
	if r.f != nil {
		_ = r.f.Close() // the write error is the one worth reporting
		r.f = nil
		r.w.Reset(nil)
	}
	return fmt.Errorf("flv: write segment %s: %w", r.path, err)
}
