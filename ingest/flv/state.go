package flv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// RecorderState is a Recorder as plain data, for carrying a recording across
// a live upgrade. The open segment file travels beside it.
type RecorderState struct {
	Dir             string
	SegmentDuration time.Duration
	// Path is the open segment, or the last one if none is open.
	Path string
	// Offset is the size of the open segment: every byte has been flushed.
	Offset int64
	// SegmentStartTS is the timestamp of the open segment's first tag.
	SegmentStartTS uint32
	// Started is false until the first segment has been opened. Started with
	// no file means the last segment failed and the next keyframe opens a new
	// one.
	Started  bool
	SawVideo bool
	Metadata []byte
	VideoSeq []byte
	AudioSeq []byte
	Segments []string
}

// State flushes the open segment and returns the recorder as plain data with
// the open segment file (nil if none). The recorder stays usable, so an
// upgrade that rolls back simply carries on writing; after a committed
// upgrade the old process calls Close, which writes nothing more.
func (r *Recorder) State() (RecorderState, *os.File, error) {
	if r.closed {
		return RecorderState{}, nil, ErrRecorderClosed
	}
	if err := r.Flush(); err != nil {
		return RecorderState{}, nil, err
	}
	st := RecorderState{
		Dir:             r.dir,
		SegmentDuration: r.segDur,
		Path:            r.path,
		SegmentStartTS:  r.startTS,
		Started:         r.started,
		SawVideo:        r.sawVideo,
		Metadata:        slices.Clone(r.metadata),
		VideoSeq:        slices.Clone(r.videoSeq),
		AudioSeq:        slices.Clone(r.audioSeq),
		Segments:        slices.Clone(r.segments),
	}
	if r.f != nil {
		st.Offset = r.written
	}
	return st, r.f, nil
}

// RestoreRecorder rebuilds a Recorder from st that appends to f, the segment
// file State returned (possibly received from another process), or to
// nothing if f is nil. It refuses a file whose size is not st.Offset: bytes
// would be lost or duplicated. now is the wall clock; nil means time.Now.
func RestoreRecorder(st RecorderState, f *os.File, now func() time.Time) (*Recorder, error) {
	if st.SegmentDuration < 0 {
		return nil, fmt.Errorf("flv: restore recorder %s: negative segment duration %v", st.Dir, st.SegmentDuration)
	}
	if f != nil {
		if !st.Started || st.Path == "" {
			return nil, fmt.Errorf("flv: restore recorder %s: a file but no open segment", st.Dir)
		}
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("flv: restore recorder %s: %w", st.Path, err)
		}
		if fi.Size() != st.Offset {
			return nil, fmt.Errorf("flv: restore recorder %s: file is %d bytes, state says %d", st.Path, fi.Size(), st.Offset)
		}
		// Segments are opened O_APPEND, but a file reopened by other means
		// must write at the end as well.
		if _, err := f.Seek(st.Offset, io.SeekStart); err != nil {
			return nil, fmt.Errorf("flv: restore recorder %s: %w", st.Path, err)
		}
	}
	r := NewRecorder(RecorderConfig{Dir: st.Dir, SegmentDuration: st.SegmentDuration, Now: now})
	r.path = st.Path
	r.startTS = st.SegmentStartTS
	// The last tag's time did not travel: the next tag sets it, and a
	// segment closed before that reads it back from its file.
	r.lastTS = st.SegmentStartTS
	r.lastInFile = f != nil
	r.started = st.Started
	r.sawVideo = st.SawVideo
	r.metadata = slices.Clone(st.Metadata)
	r.videoSeq = slices.Clone(st.VideoSeq)
	r.audioSeq = slices.Clone(st.AudioSeq)
	r.segments = slices.Clone(st.Segments)
	if f != nil {
		r.f = f
		r.w = bufio.NewWriterSize(f, writeBufferSize)
		r.written = st.Offset
	}
	return r, nil
}
