package ingest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
	"github.com/mediad/mediad/ingest/handshake"
	"github.com/mediad/mediad/ingest/hls"
	"github.com/mediad/mediad/state"
)

// Restored is the set of sessions rebuilt from an old process, prepared but
// not yet reading: Start lets them run, Discard drops them (the old process
// keeps them after a rollback).
type Restored struct {
	srv      *Server
	sessions []*session
	streams  []*Stream
	// relays are the restored relays' sessions, adopted by their
	// streams' links at Start.
	relays  []*session
	started bool
	// Session goroutines exist from Restore on, waiting at gate, so that
	// Start only has to open it.
	gate      chan struct{}
	discarded atomic.Bool
	// spills are the LL-HLS spill files of the old process's park, read
	// while restoring and removed at its end.
	spills *hls.Spills
}

// Len is the number of sessions restored.
func (r *Restored) Len() int { return len(r.sessions) }

// Readers is the number of restored sessions whose stall is measured: the
// publishers, which always send again.
func (r *Restored) Readers() int {
	n := 0
	for _, sess := range r.sessions {
		if sess.role == rolePublisher {
			n++
		}
	}
	return n
}

// Restore rebuilds sessions from envelopes of the current state version
// and their descriptors: the connection first, then the recording. It takes
// ownership of every file, success or not. Nothing is read or written until
// Start.
func (s *Server) Restore(items []ParkedSession) (*Restored, error) {
	r := &Restored{srv: s, spills: hls.NewSpills()}
	ok := false
	defer func() {
		// Every muxer holds its frames in memory now, and after a
		// rollback the old process still has its own.
		if err := r.spills.Close(); err != nil {
			s.log.Warn().Err(err).Msg("removing the LL-HLS spill file after the restore")
		}
		if !ok {
			r.Discard()
			for _, it := range items {
				for _, f := range it.Files {
					f.Close()
				}
			}
		}
	}()
	// Publishers first: players attach to the streams they rebuild.
	order := make([]int, 0, len(items))
	for _, kind := range []state.Kind{state.KindPublisher, state.KindPlayer, state.KindFLVPlayer, state.KindRelay, state.KindConn} {
		for i, it := range items {
			if it.Envelope.Kind == kind {
				order = append(order, i)
			}
		}
	}
	if len(order) != len(items) {
		for _, it := range items {
			switch it.Envelope.Kind {
			case state.KindPublisher, state.KindPlayer, state.KindFLVPlayer, state.KindRelay, state.KindConn:
			default:
				return nil, fmt.Errorf("restore: unknown session kind %q", it.Envelope.Kind)
			}
		}
	}
	prep := r.preparePublishers(items)
	for _, i := range order {
		it := &items[i]
		if err := r.restoreOne(it, prep[i]); err != nil {
			return nil, fmt.Errorf("restore %s session: %w", it.Envelope.Kind, err)
		}
		it.Files = nil // owned by the session now
	}
	ok = true
	r.gate = make(chan struct{})
	for _, sess := range r.sessions {
		s.prestart(r, sess)
	}
	return r, nil
}

// preparedPublisher is a publisher's stream rebuilt ahead of the ordered
// part of a restore. Decoding its state and reopening its recording and
// LL-HLS files touch nothing but the stream's own, so they run on every
// core at once; the registry and the sessions are then put together in
// order.
type preparedPublisher struct {
	ps  state.Publisher
	st  *Stream
	err error
}

// preparePublishers prepares every publisher of items in parallel. A
// stream it rebuilt is in r.streams, for Discard, and owns its recording's
// descriptor from then on.
func (r *Restored) preparePublishers(items []ParkedSession) map[int]*preparedPublisher {
	var idx []int
	for i := range items {
		if items[i].Envelope.Kind == state.KindPublisher {
			idx = append(idx, i)
		}
	}
	out := make(map[int]*preparedPublisher, len(idx))
	for _, i := range idx {
		out[i] = &preparedPublisher{}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(idx)) {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= len(idx) {
					return
				}
				p := out[idx[k]]
				p.ps, p.st, p.err = r.preparePublisher(&items[idx[k]])
			}
		})
	}
	wg.Wait()
	for _, i := range idx {
		if p := out[i]; p.st != nil {
			r.streams = append(r.streams, p.st)
			items[i].Files = items[i].Files[:1]
		}
	}
	return out
}

func (r *Restored) preparePublisher(it *ParkedSession) (state.Publisher, *Stream, error) {
	var ps state.Publisher
	if len(it.Files) == 0 {
		return ps, nil, errors.New("no connection descriptor")
	}
	if err := state.Decode(it.Envelope, &ps); err != nil {
		return ps, nil, err
	}
	want := 1
	if ps.Stream.Recorder != nil && ps.Stream.Recorder.HasFile {
		want = 2
	}
	if len(it.Files) != want {
		return ps, nil, fmt.Errorf("%d descriptors, want %d", len(it.Files), want)
	}
	if !validName(ps.Stream.App) || !validName(ps.Stream.Key) {
		return ps, nil, fmt.Errorf("invalid stream name %q/%q", ps.Stream.App, ps.Stream.Key)
	}
	var recFile *os.File
	if want == 2 {
		recFile = it.Files[1]
	}
	st, err := r.srv.restoreStream(ps.Stream, recFile, r.spills)
	return ps, st, err
}

func (r *Restored) restoreOne(it *ParkedSession, prep *preparedPublisher) error {
	if len(it.Files) == 0 {
		return errors.New("no connection descriptor")
	}
	switch it.Envelope.Kind {
	case state.KindConn:
		var ss state.Session
		if err := state.Decode(it.Envelope, &ss); err != nil {
			return err
		}
		if len(it.Files) != 1 {
			return fmt.Errorf("%d descriptors, want 1", len(it.Files))
		}
		sess, err := r.srv.restoreSession(ss, it.Files[0])
		if err != nil {
			return err
		}
		// A publish or play waiting for its webhook: asked again once the
		// session runs here. Only a connection without a stream can wait.
		if pc := ss.Pending; pc != nil {
			if !ss.Connected {
				sess.conn.Close()
				return errors.New("a publish or play pending before connect")
			}
			sess.resumeDecision = pc
		}
		r.sessions = append(r.sessions, sess)
	case state.KindPublisher:
		if prep.err != nil {
			return prep.err
		}
		ps, st := &prep.ps, prep.st
		sess, err := r.srv.restoreSession(ps.Session, it.Files[0])
		if err != nil {
			st.closeRecording()
			return err
		}
		sess.setRole(rolePublisher)
		sess.restoredRec = ps.Stream.Recorder != nil && ps.Stream.Recorder.HasFile
		sess.pubMsid = ps.Msid
		if ps.Session.LastRead != 0 {
			sess.stallFrom = time.Unix(0, ps.Session.LastRead)
		}
		sess.stream = st
		st.pubID = sess.id
		if st.pubAddr == "" {
			st.pubAddr = ps.Session.Peer
		}
		sess.log = sess.log.With().Str("key", ps.Stream.Key).Logger()
		st.log = sess.log
		if err := r.srv.registry.restorePublisher(st, sess); err != nil {
			sess.conn.Close()
			st.closeRecording()
			return err
		}
		r.sessions = append(r.sessions, sess)
	case state.KindPlayer:
		var ps state.Player
		if err := state.Decode(it.Envelope, &ps); err != nil {
			return err
		}
		if len(it.Files) != 1 {
			return fmt.Errorf("%d descriptors, want 1", len(it.Files))
		}
		if !validName(ps.App) || !validName(ps.Key) {
			return fmt.Errorf("invalid stream name %q/%q", ps.App, ps.Key)
		}
		sess, err := r.srv.restoreSession(ps.Session, it.Files[0])
		if err != nil {
			return err
		}
		sess.log = sess.log.With().Str("key", ps.Key).Logger()
		p := newPlayer(sess, ps.Msid)
		if err := p.restoreQueue(ps.Queue, ps.WaitKey, ps.Skips); err != nil {
			p.stop()
			sess.conn.Close()
			return err
		}
		sess.setRole(rolePlayer)
		sess.player = p
		sess.stream = r.srv.registry.attachPlayer(ps.App, ps.Key, p)
		r.sessions = append(r.sessions, sess)
	case state.KindFLVPlayer:
		return r.restoreFLVPlayer(it)
	case state.KindRelay:
		return r.restoreRelay(it)
	}
	return nil
}

// restoreQueue gives a restored player the queue and place it had.
func (p *player) restoreQueue(queue []state.QueuedMessage, waitKey bool, skips int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waitKey = waitKey
	p.skips = skips
	for _, q := range queue {
		if q.Kind > uint8(kindControl) {
			return fmt.Errorf("queued message of unknown kind %d", q.Kind)
		}
		m := outMsg{typ: q.Type, kind: msgKind(q.Kind), key: q.Key, ts: q.TS, csid: q.CSID, msid0: q.Msid0, payload: q.Payload}
		p.queue = append(p.queue, m)
		p.queued += m.size()
	}
	return nil
}

// restoreSession rebuilds one connection's protocol state around the
// received descriptor, which it takes.
func (s *Server) restoreSession(ss state.Session, f *os.File) (*session, error) {
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("connection from descriptor: %w", err)
	}
	fail := func(err error) (*session, error) {
		c.Close()
		return nil, err
	}
	if ss.HandshakePhase > uint8(handshake.PhaseDone) {
		return fail(fmt.Errorf("handshake phase %d", ss.HandshakePhase))
	}
	r, err := chunk.Restore(ss.Reader)
	if err != nil {
		return fail(err)
	}
	w, err := chunk.RestoreWriter(ss.Writer)
	if err != nil {
		return fail(err)
	}
	s.keepIDsAbove(ss.ID)
	sess := newSession(s, c, ss.ID)
	sess.hs = handshake.Server{Phase: handshake.Phase(ss.HandshakePhase), Partial: ss.HandshakePartial}
	sess.r = r
	sess.w = w
	sess.out = ss.Out
	sess.connected = ss.Connected
	sess.app = ss.App
	sess.tcURL = ss.TCURL
	sess.flashVer = ss.FlashVer
	sess.nextMsid = ss.NextMsid
	sess.ackWindow = ss.AckWindow
	sess.lastAck = ss.LastAck
	if ss.LastRead != 0 {
		sess.lastRead = time.Unix(0, ss.LastRead)
	}
	if ss.App != "" {
		sess.log = sess.log.With().Str("app", ss.App).Logger()
	}
	return sess, nil
}

// keepIDsAbove makes new session ids follow a restored one.
func (s *Server) keepIDsAbove(id uint64) {
	for {
		cur := s.nextID.Load()
		if id <= cur || s.nextID.CompareAndSwap(cur, id) {
			return
		}
	}
}

func (s *Server) restoreStream(ss state.Stream, recFile *os.File, spills *hls.Spills) (*Stream, error) {
	if len(ss.RateBuckets) > state.RateWindow {
		if recFile != nil {
			recFile.Close()
		}
		return nil, fmt.Errorf("%d rate buckets, at most %d", len(ss.RateBuckets), state.RateWindow)
	}
	st := &Stream{
		App: ss.App, Key: ss.Key, reg: s.registry, query: ss.Query, pubAddr: ss.PublisherAddr,
		metadata: ss.Metadata, videoSeq: ss.VideoSeq, audioSeq: ss.AudioSeq,
		started: time.Unix(0, ss.Started),
		stats: StreamStats{
			BytesIn: ss.BytesIn, VideoFrames: ss.VideoFrames, AudioFrames: ss.AudioFrames, Keyframes: ss.Keyframes,
			VideoBytes: ss.VideoBytes, AudioBytes: ss.AudioBytes, Encoder: ss.Encoder,
			rate: restoreRate(ss.RateBuckets, ss.RateSecond),
		},
	}
	if ss.TracksSince != 0 {
		st.stats.TracksSince = time.Unix(0, ss.TracksSince)
	}

	if rs := ss.Recorder; rs != nil {
		rec, err := flv.RestoreRecorder(flv.RecorderState{
			Dir: rs.Dir, SegmentDuration: time.Duration(rs.SegmentDuration), Path: rs.Path, Offset: rs.Offset,
			SegmentStartTS: rs.SegmentStartTS, Started: rs.Started, SawVideo: rs.SawVideo,
			Metadata: rs.Metadata, VideoSeq: rs.VideoSeq, AudioSeq: rs.AudioSeq, Segments: rs.Segments,
		}, recFile, nil)
		if err != nil {
			if recFile != nil {
				recFile.Close()
			}
			return nil, err
		}
		st.rec = rec
		st.recPath = rec.Path()
	} else if recFile != nil {
		recFile.Close()
		return nil, errors.New("recording descriptor without recorder state")
	}
	if ss.HLS != nil {
		cfg := s.cfg.HLS
		cfg.Log = s.log.With().Str("app", ss.App).Str("key", ss.Key).Logger()
		m, err := hls.RestoreFrom(cfg, *ss.HLS, ss.VideoSeq, ss.AudioSeq, spills)
		if err != nil {
			st.closeRecording()
			return nil, err
		}
		st.hls = m
	} else {
		// From a build without HLS: the playlist starts at the next
		// keyframe.
		st.log = s.log.With().Str("app", ss.App).Str("key", ss.Key).Logger()
		st.startHLS(s)
	}
	return st, nil
}

// Start lets every restored session run: pending output is written first,
// then each goes back to reading where the old process stopped.
func (r *Restored) Start() {
	if r.started {
		return
	}
	r.started = true
	r.srv.stallMu.Lock()
	r.srv.stalls = r.srv.stalls[:0]
	r.srv.stallMu.Unlock()
	close(r.gate)
	for _, sess := range r.sessions {
		if sess.player != nil {
			select {
			case sess.player.wake <- struct{}{}:
			default:
			}
		}
	}
	r.startPush()
}

// Discard drops restored sessions without a word to their peers: used when
// the old process keeps them (rollback).
func (r *Restored) Discard() {
	if r.started {
		return
	}
	r.started = true
	r.discarded.Store(true)
	if r.gate != nil {
		close(r.gate)
	}
	for _, sess := range r.sessions {
		if sess.player != nil {
			sess.player.stop()
		}
		sess.conn.Close()
		if sess.stream != nil {
			sess.stream.mu.Lock()
			sess.stream.players = nil
			sess.stream.publisher = nil
			sess.stream.mu.Unlock()
			r.srv.registry.forget(sess.stream)
		}
	}
	for _, st := range r.streams {
		st.mu.Lock()
		if st.rec != nil {
			// Release writes nothing: the restored recorder has no
			// buffered data, and the old process goes on with the segment.
			_ = st.rec.Release()
			st.rec = nil
		}
		if st.hls != nil {
			// The old process keeps the files.
			st.hls.Detach()
			st.hls = nil
		}
		st.mu.Unlock()
	}
}

// prestart registers a restored session and starts its goroutine, which
// waits for Start (or Discard) before touching the connection.
func (s *Server) prestart(r *Restored, sess *session) {
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		<-r.gate
		if !r.discarded.Load() {
			sess.run()
		} else {
			close(sess.done)
		}
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
	}()
}
