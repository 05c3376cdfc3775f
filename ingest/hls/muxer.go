// Package hls packages a live RTMP stream as Low-Latency HLS (RFC 8216bis
// with its low-latency extensions): fMP4 segments cut at keyframes, parts of
// about 200 ms, blocking playlist reload.
//
// A stream's media lives in files, in a directory of its own, and never in
// the muxer's state: a segment is one file, its parts byte ranges of it.
// What the muxer keeps in memory is an index (segments, parts, offsets),
// which crosses a live upgrade as state.HLS. The new process opens the same
// files and goes on with the same numbering, so to a viewer an upgrade is
// a part that arrives a few milliseconds late.
package hls

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
	"github.com/rs/zerolog"

	"github.com/mediad/mediad/state"
)

// Config sets the shape of every stream's playlist.
type Config struct {
	// PartTarget is the longest a part may last: 200 ms by default.
	PartTarget time.Duration
	// SegmentTarget is the shortest a segment lasts: it is cut at the
	// first keyframe after it, 1 s by default.
	SegmentTarget time.Duration
	// Window is how many complete segments the playlist lists: 7 by
	// default, the least the issue asks.
	Window int
	// Keep is how long a segment's file stays after it left the window,
	// so that a client holding an older playlist still finds it: 40 s.
	Keep time.Duration
	// MemParts is how many of the newest parts are also kept in memory
	// and served from there: 6 by default (1.2 s at 200 ms parts), which
	// covers what players at the live edge ask for. Every viewer of a
	// live stream asks for the same newest part within milliseconds; from
	// memory that costs one write, from the file an open, a read and a
	// close each. Older parts come from the file. Negative: none.
	MemParts int
	Log      zerolog.Logger
}

func (c *Config) setDefaults() {
	if c.PartTarget <= 0 {
		c.PartTarget = 200 * time.Millisecond
	}
	if c.SegmentTarget <= 0 {
		c.SegmentTarget = time.Second
	}
	if c.Window < 7 {
		c.Window = 7
	}
	if c.Keep <= 0 {
		c.Keep = 40 * time.Second
	}
	switch {
	case c.MemParts == 0:
		c.MemParts = 6
	case c.MemParts < 0:
		c.MemParts = 0
	}
}

// Track numbers in state.HLS.Tracks and fMP4 track ids.
const (
	trackVideo = 0
	trackAudio = 1
)

// sample is a frame waiting for its part. data is shared with the RTMP
// fan-out, except after a restore, when it was read back from disk.
type sample struct {
	track uint8
	dts   int64
	cts   int32
	key   bool
	data  []byte
}

// Muxer is one broadcast's LL-HLS packager. Write runs on the publisher's
// goroutine; the playlist and file methods run on HTTP handlers.
type Muxer struct {
	cfg Config
	dir string
	log zerolog.Logger

	// Publisher-goroutine state: codec configuration as received.
	videoFourCC        string
	videoCfg, audioCfg []byte
	video, audio       codecs.Codec
	segFile            *os.File
	// unsupported says why the stream has no HLS (unsupportedErr).
	unsupported atomic.Pointer[error]

	mu sync.Mutex
	// changed is closed and replaced whenever a part is added or the
	// muxer stops, waking blocked requests.
	changed  chan struct{}
	st       state.HLS
	pending  []sample
	ended    bool // the broadcast is over: ENDLIST
	detached bool // the stream lives in another process now
	// loadedRecent: LoadRecent has run (it reads the files once).
	loadedRecent bool
	moved        movedParts
	// recent: the newest parts' bytes, oldest first, at most
	// cfg.MemParts. They are in the files too; a restored muxer reads
	// them back from there (LoadRecent).
	recent []memPart

	// The playlist as last built, until the next change.
	playlist    []byte
	playlistErr error

	// onChange, set only by tests, sees every state a request could see:
	// it runs under mu at each signal.
	onChange func()
}

// New starts the muxer of a broadcast in dir, which it creates.
func New(cfg Config, dir string) (*Muxer, error) {
	cfg.setDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("hls dir: %w", err)
	}
	m := &Muxer{cfg: cfg, dir: dir, log: cfg.Log, changed: make(chan struct{})}
	m.st.Dir = dir
	return m, nil
}

// Dir is where the stream's files are.
func (m *Muxer) Dir() string { return m.dir }

// Write takes one RTMP audio (8) or video (9) message at timestamp ts. It
// never fails the broadcast: a codec HLS cannot carry turns the stream's
// HLS off with one log line, and a write error is logged and the part
// dropped.
func (m *Muxer) Write(typ uint8, ts uint32, payload []byte, now time.Time) {
	if m.unsupportedErr() != nil {
		return
	}
	var (
		f   frame
		err error
	)
	switch typ {
	case typeVideo:
		f, err = parseVideo(payload)
	case typeAudio:
		f, err = parseAudio(payload)
	default:
		return
	}
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			m.setUnsupported(err)
		} else {
			m.log.Debug().Err(err).Msg("hls: message skipped")
		}
		return
	}
	if f.skip {
		return
	}
	if f.config {
		m.configure(typ, f)
		return
	}
	tr := uint8(trackAudio)
	if typ == typeVideo {
		tr = trackVideo
		if m.video == nil {
			return
		}
	} else if m.audio == nil {
		return
	}
	m.add(sample{track: tr, dts: m.unwrap(tr, ts), cts: f.cts, key: f.key, data: f.data}, now)
}

// unsupportedErr is read for every frame: without the lock, which
// viewers' requests take too.
func (m *Muxer) unsupportedErr() error {
	if p := m.unsupported.Load(); p != nil {
		return *p
	}
	return nil
}

func (m *Muxer) setUnsupported(err error) {
	first := m.unsupported.Swap(&err) == nil
	m.mu.Lock()
	m.signalLocked()
	m.mu.Unlock()
	if first {
		m.log.Warn().Err(err).Msg("hls: this stream cannot be served as HLS; RTMP and HTTP-FLV carry it on")
	}
}

// Unsupported says why the stream has no HLS, or nil.
func (m *Muxer) Unsupported() error { return m.unsupportedErr() }

// configure applies a sequence header. A configuration that differs from
// the one in use starts the playlist over, after a discontinuity.
func (m *Muxer) configure(typ uint8, f frame) {
	if typ == typeVideo {
		if m.video != nil && f.fourcc == m.videoFourCC && bytes.Equal(f.data, m.videoCfg) {
			return
		}
		c, err := videoCodec(f.fourcc, f.data)
		if err != nil {
			if errors.Is(err, ErrUnsupported) {
				m.setUnsupported(err)
			} else {
				m.log.Warn().Err(err).Msg("hls: bad video sequence header ignored")
			}
			return
		}
		changed := m.video != nil
		m.video, m.videoFourCC, m.videoCfg = c, f.fourcc, f.data
		if changed {
			m.restart("video")
		}
		return
	}
	if m.audio != nil && bytes.Equal(f.data, m.audioCfg) {
		return
	}
	c, err := audioCodec(f.data)
	if err != nil {
		m.log.Warn().Err(err).Msg("hls: bad audio sequence header ignored")
		return
	}
	changed := m.audio != nil
	m.audio, m.audioCfg = c, f.data
	if changed {
		m.restart("audio")
	}
}

// restart ends the open segment and empties the window after a codec
// change: the next keyframe opens a segment with a new init file, marked
// as a discontinuity. Numbering goes on.
func (m *Muxer) restart(what string) {
	m.log.Info().Str("track", what).Msg("hls: codec configuration changed: the playlist starts over at the next keyframe")
	m.closeSegFile()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending = nil
	now := time.Now()
	for _, s := range m.st.Segments {
		if len(s.Parts) > 0 {
			m.st.Gone = append(m.st.Gone, state.HLSGone{MSN: s.MSN, Expiry: now.Add(m.cfg.Keep).UnixNano(), Parts: s.Parts})
		}
	}
	m.st.Segments = nil
	m.st.InitStale = true
	m.signalLocked()
}

// unwrap puts an RTMP timestamp on the track's 64-bit time line. RTMP
// timestamps wrap after 2^32 ms (49.7 days), which a 24/7 channel reaches.
func (m *Muxer) unwrap(tr uint8, ts uint32) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &m.st.Tracks[tr]
	if !t.Seen {
		t.Seen, t.LastTS = true, ts
		return int64(ts)
	}
	d := int64(ts) - int64(t.LastTS)
	switch {
	case d < -(1 << 31):
		t.Epoch++
	case d > 1<<31:
		t.Epoch--
	}
	t.LastTS = ts
	return t.Epoch<<32 + int64(ts)
}

// add queues a frame and cuts parts and segments: a part ends before the
// frame that would take it past the part target, a segment at the first
// keyframe past the segment target. The video track leads; a stream
// without video is cut on audio alone, where every frame is a sync point.
func (m *Muxer) add(s sample, now time.Time) {
	m.mu.Lock()
	t := &m.st.Tracks[s.track]
	if s.dts < t.LastDTS {
		// A publisher's clock that steps back: keep decode order.
		s.dts = t.LastDTS
	}
	t.LastDTS = s.dts
	lead := s.track == trackVideo || m.video == nil
	open := m.openLocked()
	m.mu.Unlock()

	if open == nil {
		// Every segment starts with a keyframe: nothing before the first.
		if !lead || !s.key {
			return
		}
		if err := m.openSegment(s.dts, now, nil); err != nil {
			m.log.Error().Err(err).Msg("hls: opening a segment failed; retrying at the next keyframe")
			return
		}
		m.mu.Lock()
		m.pending = append(m.pending, s)
		m.mu.Unlock()
		return
	}
	if lead {
		m.mu.Lock()
		partStart := m.st.PartStart
		segStart := partStart - m.openDurationLocked()
		last, ok := m.lastPendingLocked(s.track)
		m.mu.Unlock()
		cut := s.key && time.Duration(s.dts-segStart)*time.Millisecond >= m.cfg.SegmentTarget
		step := int64(0)
		if ok {
			step = s.dts - last
		}
		full := ok && time.Duration(s.dts-partStart+step)*time.Millisecond > m.cfg.PartTarget
		switch {
		case cut:
			// The last part and the cut land in the index in one step: a
			// playlist in between would hint a part that never comes.
			if err := m.openSegment(s.dts, now, m.writePart(s.dts, false)); err != nil {
				m.log.Error().Err(err).Msg("hls: opening a segment failed; retrying at the next keyframe")
				return
			}
		case full:
			m.flush(s.dts, false)
		}
	}
	m.mu.Lock()
	m.pending = append(m.pending, s)
	m.mu.Unlock()
}

func (m *Muxer) openLocked() *state.HLSSegment {
	if n := len(m.st.Segments); n > 0 && !m.st.Segments[n-1].Closed {
		return &m.st.Segments[n-1]
	}
	return nil
}

func (m *Muxer) openDurationLocked() int64 {
	var d int64
	if s := m.openLocked(); s != nil {
		for _, p := range s.Parts {
			d += p.DurationMS
		}
	}
	return d
}

func (m *Muxer) lastPendingLocked(tr uint8) (int64, bool) {
	for i := len(m.pending) - 1; i >= 0; i-- {
		if m.pending[i].track == tr {
			return m.pending[i].dts, true
		}
	}
	return 0, false
}

func (m *Muxer) segPath(msn uint64) string {
	return filepath.Join(m.dir, "s"+strconv.FormatUint(msn, 10)+".m4s")
}

func (m *Muxer) initPath(n uint32) string {
	return filepath.Join(m.dir, "init"+strconv.FormatUint(uint64(n), 10)+".mp4")
}

// openSegment starts the segment after the last one at dts, writing a new
// init file first if the codecs changed. The open segment's last part, w,
// and its end go into the index in the same step as the new segment: a
// playlist never shows the live edge with no open segment, or a preload
// hint for a part that will not exist.
func (m *Muxer) openSegment(dts int64, now time.Time, w *partWrite) (err error) {
	defer func() {
		if err != nil && w != nil {
			m.mu.Lock()
			m.commitLocked(w)
			m.signalLocked()
			m.mu.Unlock()
		}
	}()
	m.mu.Lock()
	msn := m.st.Removed
	if n := len(m.st.Segments); n > 0 {
		msn = m.st.Segments[n-1].MSN + 1
	} else if n := len(m.st.Gone); n > 0 {
		msn = m.st.Gone[n-1].MSN + 1
	}
	initN, disc := m.st.Init, false
	stale := initN == 0 || m.st.InitStale
	m.mu.Unlock()
	if stale {
		n, werr := m.writeInit(initN + 1)
		if werr != nil {
			return werr
		}
		initN, disc = n, n > 1
	}
	f, err := os.OpenFile(m.segPath(msn), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("segment %d: %w", msn, err)
	}
	m.closeSegFile()
	m.segFile = f
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commitLocked(w)
	start := m.nextStartLocked(now, disc)
	m.closeOpenLocked(now)
	m.st.Init, m.st.InitStale = initN, false
	m.st.PartStart = dts
	m.st.Segments = append(m.st.Segments, state.HLSSegment{MSN: msn, Start: start, Init: initN, Discontinuity: disc})
	m.signalLocked()
	return nil
}

// A segment's program date-time is stepped on from the one before by media
// time. pdtSlack is how far it may then lie from the wall clock before it
// is moved towards it; pdtResync how far before it is set to the wall
// clock outright (a publisher that sends faster than real time, a clock
// stepped by minutes).
const (
	pdtSlack  = 500 * time.Millisecond
	pdtResync = 5 * time.Second
)

// nextStartLocked is the program date-time (Unix ns) of a segment opened
// at now after the open one: the open one's plus its duration, so that
// EXT-X-PROGRAM-DATE-TIME steps exactly as EXTINF does. Beyond pdtSlack
// from now, it is moved towards now by at most 1 ms for each second of
// media: the publisher's clock drifts from ours, 4 s a day at 50 ppm. The
// first segment, and the first after a discontinuity, take now.
//
// Stamped on arrival, the first segments of an ffmpeg publish stepped
// 0.912 s for an EXTINF of 1.000. hls.js (1.7.4) aligns a live playlist
// it starts on by the date-times of two of its segments, slid the whole
// playlist by the 88 ms difference, found its buffer's end inside the
// first segment and loaded that again and again: a picture frozen for
// 1.5 s. The slack keeps arrival jitter from stepping date-times unevenly.
func (m *Muxer) nextStartLocked(now time.Time, disc bool) int64 {
	prev := m.openLocked()
	if prev == nil || disc {
		return now.UnixNano()
	}
	d := segDuration(*prev)
	want := prev.Start + d*int64(time.Millisecond)
	off := now.UnixNano() - want
	if off > int64(pdtResync) || off < -int64(pdtResync) {
		m.log.Info().Dur("off", time.Duration(off)).Msg("hls: program date-time set to the wall clock: media time and the wall clock are too far apart")
		return now.UnixNano()
	}
	slew := max(int64(time.Millisecond), d*int64(time.Microsecond))
	switch {
	case off > int64(pdtSlack):
		return want + min(off-int64(pdtSlack), slew)
	case off < -int64(pdtSlack):
		return want - min(-off-int64(pdtSlack), slew)
	}
	return want
}

// writeInit writes the init file for the codecs in use as number n.
func (m *Muxer) writeInit(n uint32) (uint32, error) {
	var init fmp4.Init
	if m.video != nil {
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: trackVideo + 1, TimeScale: 1000, Codec: m.video})
	}
	if m.audio != nil {
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: trackAudio + 1, TimeScale: 1000, Codec: m.audio})
	}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return 0, fmt.Errorf("init: %w", err)
	}
	if err := writeFileAtomic(m.initPath(n), buf.Bytes()); err != nil {
		return 0, err
	}
	return n, nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// flush writes the frames before end as the open segment's next part and
// lists it.
func (m *Muxer) flush(end int64, final bool) {
	w := m.writePart(end, final)
	if w == nil {
		return
	}
	m.mu.Lock()
	m.commitLocked(w)
	m.signalLocked()
	m.mu.Unlock()
}

// partWrite is a part in the open segment's file, not yet in the index.
type partWrite struct {
	keep  []sample // frames held back for the next part
	taken int      // how many pending frames the part consumed
	end   int64
	part  state.HLSPart
	data  []byte // the part's bytes, as written
	err   error  // the part could not be written: its frames are lost to HLS
}

// memPart is a part's bytes kept in memory.
type memPart struct {
	msn  uint64
	idx  int
	data []byte
}

// writePart writes the frames before end to the open segment's file, nil
// if there is nothing to write. Each frame lasts until the next frame of
// its track; the last video frame until end; the last audio frame before
// end for one frame (see audioStep), or to end if that falls short by a
// frame at most. Audio from end on waits for the next part.
//
// A part's audio reaches the part's end. One that stopped a frame short
// (the last frame held back for want of its successor: 0.996 s in a
// segment that ends at 1.000) made hls.js 1.7.4, started inside that
// segment, ask for the segment again and again for the missing 4 ms,
// never for the next one, and the picture froze until the page jumped.
func (m *Muxer) writePart(end int64, final bool) *partWrite {
	m.mu.Lock()
	if m.openLocked() == nil || len(m.pending) == 0 {
		m.mu.Unlock()
		return nil
	}
	partStart := m.st.PartStart
	seq := m.st.NextSeq
	pending := m.pending
	m.mu.Unlock()

	var (
		tracks [2]fragTrack
		keep   []sample
		indep  = m.video == nil
		first  = true
	)
	for i, s := range pending {
		// Duration: up to the next frame of the same track.
		next := int64(-1)
		for j := i + 1; j < len(pending); j++ {
			if pending[j].track == s.track {
				next = pending[j].dts
				break
			}
		}
		lead := s.track == trackVideo || m.video == nil
		if next < 0 {
			switch {
			case lead:
				next = end
			case final || s.dts < end:
				step := m.audioStep(s.dts)
				next = s.dts + step
				// Up to end, when a frame short of it: the publisher's
				// next frame, due before end, can come after the video
				// frame that cut the part (ffmpeg sends 1.599 s after
				// 1.600 s), and lands at the next part's start.
				if !final && next < end && end-next <= step {
					next = end
				}
			default:
				keep = append(keep, s)
				continue
			}
		}
		if !lead && !final && s.dts >= end {
			keep = append(keep, s)
			continue
		}
		if lead && first {
			indep = indep || s.key
			first = false
		}
		t := &tracks[s.track]
		if t.samples == nil {
			t.id, t.baseTime = uint32(s.track)+1, uint64(s.dts)
			t.samples = make([]fragSample, 0, len(pending))
		}
		t.samples = append(t.samples, fragSample{
			duration: uint32(next - s.dts), ptsOffset: s.cts,
			nonSync: !s.key, data: s.data,
		})
	}
	var room [2]fragTrack
	present := room[:0]
	for _, t := range tracks {
		if t.samples != nil {
			present = append(present, t)
		}
	}
	if len(present) == 0 {
		return nil
	}
	data := appendFragment(nil, seq, present)
	off, err := m.segFile.Seek(0, 2)
	if err == nil {
		_, err = m.segFile.Write(data)
	}
	if err != nil && off > 0 {
		_ = m.segFile.Truncate(off)
	}
	return &partWrite{
		keep: keep, taken: len(pending), end: end, err: err, data: data,
		part: state.HLSPart{Offset: off, Size: int64(len(data)), DurationMS: end - partStart, Independent: indep},
	}
}

// commitLocked lists a written part in the open segment.
func (m *Muxer) commitLocked(w *partWrite) {
	if w == nil {
		return
	}
	m.pending = append(w.keep, m.pending[w.taken:]...)
	m.st.PartStart = w.end
	if w.err != nil {
		// The frames are lost to HLS, not to RTMP or the recording; the
		// playlist goes on with the next part, which starts later.
		m.log.Error().Err(w.err).Msg("hls: writing a part failed; its frames are missing from HLS")
		return
	}
	m.st.NextSeq++
	if open := m.openLocked(); open != nil {
		open.Parts = append(open.Parts, w.part)
		m.rememberLocked(memPart{msn: open.MSN, idx: len(open.Parts) - 1, data: w.data})
	}
}

// rememberLocked keeps a part's bytes in memory, letting go of the oldest
// beyond cfg.MemParts.
func (m *Muxer) rememberLocked(p memPart) {
	if m.cfg.MemParts == 0 {
		return
	}
	if len(m.recent) == m.cfg.MemParts {
		m.recent[0] = memPart{}
		m.recent = m.recent[1:]
	}
	m.recent = append(m.recent, p)
}

// recentLocked is a part's bytes if they are in memory.
func (m *Muxer) recentLocked(msn uint64, idx uint64) []byte {
	for i := len(m.recent) - 1; i >= 0; i-- {
		if p := m.recent[i]; p.msn == msn && uint64(p.idx) == idx {
			return p.data
		}
	}
	return nil
}

// closeOpenLocked ends the open segment, if any, and moves the window.
func (m *Muxer) closeOpenLocked(now time.Time) {
	open := m.openLocked()
	if open == nil {
		return
	}
	open.Closed = true
	var closed int
	for _, s := range m.st.Segments {
		if s.Closed {
			closed++
		}
	}
	for closed > m.cfg.Window {
		s := m.st.Segments[0]
		m.st.Gone = append(m.st.Gone, state.HLSGone{MSN: s.MSN, Expiry: now.Add(m.cfg.Keep).UnixNano(), Parts: s.Parts})
		m.st.Segments = m.st.Segments[1:]
		closed--
	}
	m.removeExpiredLocked(now)
	m.signalLocked()
}

// removeExpiredLocked deletes files that left the window long enough ago,
// and init files no segment uses any more.
func (m *Muxer) removeExpiredLocked(now time.Time) {
	n := 0
	for _, g := range m.st.Gone {
		if g.Expiry > now.UnixNano() {
			break
		}
		if err := os.Remove(m.segPath(g.MSN)); err != nil && !errors.Is(err, os.ErrNotExist) {
			m.log.Warn().Err(err).Msg("hls: removing an old segment")
		}
		m.st.Removed = g.MSN + 1
		n++
	}
	m.st.Gone = m.st.Gone[n:]
}

func (m *Muxer) closeSegFile() {
	if m.segFile != nil {
		if err := m.segFile.Close(); err != nil {
			m.log.Warn().Err(err).Msg("hls: closing a segment file")
		}
		m.segFile = nil
	}
}

func (m *Muxer) signalLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
	m.playlist, m.playlistErr = nil, nil
	if m.onChange != nil {
		m.onChange()
	}
}

// audioStep is how long the audio frame at dts lasts when its successor
// has not come: one AAC frame (1024 samples, 960 with the short frame
// length) at the stream's sample rate, else the step from the frame
// before it. Off by a millisecond of the publisher's rounding at most;
// the next part's decode time is the next frame's own.
func (m *Muxer) audioStep(dts int64) int64 {
	if a, ok := m.audio.(*codecs.MPEG4Audio); ok && a.Config.SampleRate > 0 {
		n := mpeg4audio.SamplesPerAccessUnit
		if a.Config.FrameLengthFlag {
			n = 960
		}
		if d := (int64(n)*1000 + int64(a.Config.SampleRate)/2) / int64(a.Config.SampleRate); d > 0 {
			return d
		}
	}
	return m.lastStep(trackAudio, dts)
}

// lastStep is the time between the last two frames of a track before dts,
// standing in for the duration of a frame that has no successor: 1 ms if
// unknown.
func (m *Muxer) lastStep(tr uint8, dts int64) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := int64(-1)
	for _, s := range m.pending {
		if s.track == tr && s.dts < dts {
			prev = s.dts
		}
	}
	if prev < 0 || dts-prev <= 0 {
		return 1
	}
	return dts - prev
}

// End marks the broadcast over: what is pending becomes the last part, the
// playlist ends with ENDLIST, blocked requests are answered. The files
// stay for Keep, for viewers still behind the live edge; Remove (or the
// caller's timer) deletes them.
func (m *Muxer) End() {
	m.mu.Lock()
	lead := uint8(trackVideo)
	if m.video == nil {
		lead = trackAudio
	}
	last, ok := m.lastPendingLocked(lead)
	m.mu.Unlock()
	var w *partWrite
	if ok {
		w = m.writePart(last+m.lastStep(lead, last), true)
	}
	m.closeSegFile()
	m.mu.Lock()
	m.commitLocked(w)
	m.closeOpenLocked(time.Now())
	m.ended = true
	m.signalLocked()
	m.mu.Unlock()
}

// Keep is how long files stay after the broadcast ends.
func (m *Muxer) Keep() time.Duration { return m.cfg.Keep }

// Remove deletes the broadcast's files, after End.
func (m *Muxer) Remove() {
	if err := os.RemoveAll(m.dir); err != nil {
		m.log.Warn().Err(err).Msg("hls: removing the stream's files")
	}
	// The key's and app's directories and the per-process root go with
	// their last broadcast (Remove fails on a directory not empty).
	for d, i := filepath.Dir(m.dir), 0; i < 3; d, i = filepath.Dir(d), i+1 {
		_ = os.Remove(d)
	}
}

// Detach lets go of a muxer whose stream moved to another process, which
// now owns its files: nothing is removed. Blocked requests are answered
// with what this process last had.
func (m *Muxer) Detach() {
	m.closeSegFile()
	m.mu.Lock()
	m.detached = true
	m.signalLocked()
	m.mu.Unlock()
}

// Detached says whether the stream moved to another process.
func (m *Muxer) Detached() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.detached
}
