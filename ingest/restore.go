package ingest

import (
	"errors"
	"fmt"
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
	// unread counts the restored publishers that have not read here yet;
	// allRead is closed when none is left.
	unread  atomic.Int64
	allRead chan struct{}
}

// recentWait bounds how long the newest LL-HLS parts of restored streams
// wait for every moved publisher's first read before they are loaded
// anyway (some publisher may never send again).
const recentWait = 2 * time.Second

// publisherRead is a restored publisher's first read here.
func (r *Restored) publisherRead() {
	if r.unread.Add(-1) == 0 {
		close(r.allRead)
	}
}

// loadRecent puts the newest LL-HLS parts of the restored streams back in
// memory, as the old process had them, once every moved publisher has
// read again: before, it was each publisher's first step, and its files'
// reads and fresh pages, at 1,000 streams, came before the others' first
// reads. Viewers get the files until then.
func (r *Restored) loadRecent() {
	defer r.srv.wg.Done()
	if r.unread.Load() > 0 {
		bound := time.NewTimer(recentWait)
		defer bound.Stop()
		select {
		case <-r.allRead:
		case <-bound.C:
		case <-r.srv.ctx.Done():
			return
		}
	}
	for _, st := range r.streams {
		if r.srv.ctx.Err() != nil {
			return
		}
		st.loadRecentHLS()
	}
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
// Start. It is BeginRestore, Add and Finish in one call.
func (s *Server) Restore(items []ParkedSession) (*Restored, error) {
	rs := s.BeginRestore()
	rs.Add(items)
	return rs.Finish()
}

// restoreOrder is the order in which Finish puts restored sessions
// together: publishers first, since players attach to the streams they
// rebuild.
var restoreOrder = []state.Kind{state.KindPublisher, state.KindPlayer, state.KindFLVPlayer, state.KindRelay, state.KindConn}

// wholeKind is the kind a session was rebuilt as: a tail's is its whole
// kind's.
func (j *restoreJob) wholeKind() state.Kind {
	switch k := j.it.Envelope.Kind; k {
	case state.KindPublisherTail:
		return state.KindPublisher
	case state.KindPlayerTail:
		return state.KindPlayer
	default:
		return k
	}
}

// restoreQueueLen bounds the sessions waiting for a worker: Add blocks,
// and so does the handoff socket behind it, only when the workers are this
// far behind.
const restoreQueueLen = 1024

// Restoring is a restore in progress. Each session is rebuilt as soon as it
// arrives, on every core at once: its state decoded, its connection, chunk
// streams, player queue, recording and LL-HLS files made ready, all of
// which touch nothing but the session's own. Finish then puts the sessions
// together with the registry and with each other, in restoreOrder. Add,
// Finish and Abandon are called from one goroutine; exactly one of Finish
// or Abandon ends a restore, and it waits for the workers, which the
// Restoring owns.
type Restoring struct {
	r    *Restored
	jobs chan *restoreJob
	wg   sync.WaitGroup
	// unbuilt counts the sessions added and not yet built (Built).
	unbuilt sync.WaitGroup
	// all is every session added, in arrival order; a job's fields are
	// its worker's until wg.Wait returns.
	all  []*restoreJob
	done bool

	// The bases that came ahead of the park (state.KindBase), by session
	// id, once their workers have built them; basesDue counts those added
	// and not yet built. Every base comes before any tail, so a tail's
	// worker that finds no base while none is due has none to find.
	baseMu   sync.Mutex
	baseCond *sync.Cond
	bases    map[uint64]*restoreJob
	basesDue int
}

// restoreJob is one session: what arrived, and what its worker made of it.
type restoreJob struct {
	it ParkedSession
	// sess is the rebuilt session, st a publisher's stream; app and key
	// name the stream a player attaches to.
	sess     *session
	st       *Stream
	app, key string
	// ending: an HTTP-FLV viewer whose broadcast had ended.
	ending bool
	err    error
	// base is a base's static part; its session, built around the
	// connection, is sess until a tail takes it.
	base *state.Base
}

// BeginRestore starts a restore that rebuilds sessions as they arrive
// (Add); Finish returns them, not yet running.
func (s *Server) BeginRestore() *Restoring {
	rs := &Restoring{
		r:     &Restored{srv: s, spills: hls.NewSpills(), allRead: make(chan struct{})},
		jobs:  make(chan *restoreJob, restoreQueueLen),
		bases: make(map[uint64]*restoreJob),
	}
	rs.baseCond = sync.NewCond(&rs.baseMu)
	for range runtime.GOMAXPROCS(0) {
		rs.wg.Go(rs.work)
	}
	return rs
}

// Add hands sessions of the current state version to the restore, which
// owns their files from the call on, success or not, and rebuilds them
// while more arrive. After Finish or Abandon it only closes the files.
func (rs *Restoring) Add(items []ParkedSession) {
	for _, it := range items {
		if rs.done {
			closeFiles(it.Files)
			continue
		}
		j := &restoreJob{it: it}
		rs.all = append(rs.all, j)
		rs.unbuilt.Add(1)
		if it.Envelope.Kind == state.KindBase {
			rs.baseMu.Lock()
			rs.basesDue++
			rs.baseMu.Unlock()
		}
		rs.jobs <- j
	}
}

func (rs *Restoring) work() {
	for j := range rs.jobs {
		if j.err = rs.prepare(j); j.err != nil {
			// Closing a file the failed step already closed is harmless.
			closeFiles(j.it.Files)
		}
		j.it.Files = nil
		rs.unbuilt.Done()
	}
}

// Built returns once every session added so far is built, or failed
// (Finish says which): what an old process sent ahead of its park is then
// ready before anything parks. Add, Built, Finish and Abandon are called
// from one goroutine.
func (rs *Restoring) Built() { rs.unbuilt.Wait() }

// wait ends the workers once they have rebuilt every session added.
func (rs *Restoring) wait() {
	if rs.done {
		return
	}
	rs.done = true
	close(rs.jobs)
	rs.wg.Wait()
	for _, j := range rs.all {
		if j.st != nil {
			rs.r.streams = append(rs.r.streams, j.st)
		}
	}
}

// dropBases closes the sessions built from bases that no tail took: their
// sessions ended in the old process after the base went, or went whole
// (their static part changed).
func (rs *Restoring) dropBases() {
	for _, j := range rs.all {
		if j.base != nil && j.sess != nil {
			j.sess.conn.Close()
			j.sess = nil
		}
	}
}

// Abandon drops every session added without a word to its peer: the old
// process keeps them.
func (rs *Restoring) Abandon() {
	if rs.done {
		return
	}
	rs.wait()
	rs.discard()
}

// discard drops every session the workers made, put together or not.
func (rs *Restoring) discard() {
	r := rs.r
	r.sessions, r.relays = r.sessions[:0], nil
	for _, j := range rs.all {
		if j.sess != nil {
			r.sessions = append(r.sessions, j.sess)
		}
	}
	r.Discard()
	rs.closeSpills()
}

func (rs *Restoring) closeSpills() {
	// Every muxer holds its frames in memory now, and after a rollback
	// the old process still has its own.
	if err := rs.r.spills.Close(); err != nil {
		rs.r.srv.log.Warn().Err(err).Msg("removing the LL-HLS spill file after the restore")
	}
}

// Finish waits until every session added is rebuilt, puts them together
// with the registry and with each other, and returns them, ready to Start.
// On error nothing stays: every session added is dropped as by Discard.
func (rs *Restoring) Finish() (*Restored, error) {
	if rs.done {
		return nil, errors.New("restore: finished or abandoned already")
	}
	rs.wait()
	r := rs.r
	for _, j := range rs.all {
		if j.err != nil {
			rs.discard()
			return nil, fmt.Errorf("restore %s session: %w", j.it.Envelope.Kind, j.err)
		}
	}
	for _, kind := range restoreOrder {
		for _, j := range rs.all {
			if j.wholeKind() != kind {
				continue
			}
			if err := r.attach(j); err != nil {
				rs.discard()
				return nil, fmt.Errorf("restore %s session: %w", kind, err)
			}
		}
	}
	rs.dropBases()
	rs.closeSpills()
	r.gate = make(chan struct{})
	for _, sess := range r.sessions {
		r.srv.prestart(r, sess)
	}
	return r, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// prepare rebuilds one session from its envelope and descriptors, which it
// takes. A base is built around its connection and kept for its tail; a
// tail is made whole from its base and rebuilt around the base's session.
func (rs *Restoring) prepare(j *restoreJob) error {
	switch j.it.Envelope.Kind {
	case state.KindBase:
		err := rs.r.prepareBase(j)
		rs.baseMu.Lock()
		rs.basesDue--
		if err == nil {
			if _, dup := rs.bases[j.base.ID]; dup {
				err = fmt.Errorf("two bases of session %d", j.base.ID)
			} else {
				rs.bases[j.base.ID] = j
			}
		}
		rs.baseCond.Broadcast()
		rs.baseMu.Unlock()
		return err
	case state.KindPublisherTail:
		var ps state.Publisher
		if err := state.Decode(j.it.Envelope, &ps); err != nil {
			return err
		}
		b, sess, err := rs.takeBase(ps.Session.ID)
		if err != nil {
			return err
		}
		// From here the session is this job's to release, whatever follows.
		j.sess = sess
		if err := b.FillPublisher(&ps); err != nil {
			return err
		}
		return rs.r.preparePublisher(j, &ps, sess)
	case state.KindPlayerTail:
		var pl state.Player
		if err := state.Decode(j.it.Envelope, &pl); err != nil {
			return err
		}
		b, sess, err := rs.takeBase(pl.Session.ID)
		if err != nil {
			return err
		}
		j.sess = sess
		if err := b.FillPlayer(&pl); err != nil {
			return err
		}
		return rs.r.preparePlayer(j, &pl, sess)
	}
	return rs.r.prepare(j)
}

// takeBase waits for the base of session id to be built and takes its
// session.
func (rs *Restoring) takeBase(id uint64) (*state.Base, *session, error) {
	rs.baseMu.Lock()
	defer rs.baseMu.Unlock()
	for {
		if bj, ok := rs.bases[id]; ok {
			if bj.sess == nil {
				return nil, nil, fmt.Errorf("two tails of session %d", id)
			}
			sess := bj.sess
			bj.sess = nil
			return bj.base, sess, nil
		}
		if rs.basesDue == 0 {
			return nil, nil, fmt.Errorf("tail of session %d without its base", id)
		}
		rs.baseCond.Wait()
	}
}

// prepareBase builds a session around a base's connection: what a tail
// then adds is its protocol state.
func (r *Restored) prepareBase(j *restoreJob) error {
	it := &j.it
	var b state.Base
	if err := state.Decode(it.Envelope, &b); err != nil {
		return err
	}
	if len(it.Files) != 1 {
		return fmt.Errorf("base of session %d with %d descriptors, want 1", b.ID, len(it.Files))
	}
	if b.Of != state.KindPublisherTail && b.Of != state.KindPlayerTail {
		return fmt.Errorf("base of session %d for a %q", b.ID, b.Of)
	}
	if !validName(b.StreamApp) || !validName(b.Key) {
		return fmt.Errorf("base of session %d: invalid stream name %q/%q", b.ID, b.StreamApp, b.Key)
	}
	sess, err := r.srv.adoptSession(b.ID, it.Files[0])
	if err != nil {
		return err
	}
	sess.app, sess.tcURL, sess.flashVer = b.App, b.TCURL, b.FlashVer
	sess.log = sess.log.With().Str("app", b.App).Str("key", b.Key).Logger()
	j.base, j.sess = &b, sess
	return nil
}

// prepare rebuilds a session that came whole.
func (r *Restored) prepare(j *restoreJob) error {
	it := &j.it
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
		// A publish or play waiting for its webhook: asked again once the
		// session runs here. Only a connection without a stream can wait.
		if ss.Pending != nil && !ss.Connected {
			return errors.New("a publish or play pending before connect")
		}
		sess, err := r.srv.restoreSession(ss, it.Files[0])
		if err != nil {
			return err
		}
		sess.resumeDecision = ss.Pending
		j.sess = sess
	case state.KindPublisher:
		var ps state.Publisher
		if err := state.Decode(it.Envelope, &ps); err != nil {
			return err
		}
		return r.preparePublisher(j, &ps, nil)
	case state.KindPlayer:
		var pl state.Player
		if err := state.Decode(it.Envelope, &pl); err != nil {
			return err
		}
		return r.preparePlayer(j, &pl, nil)
	case state.KindFLVPlayer:
		return r.prepareFLVPlayer(j)
	case state.KindRelay:
		return r.prepareRelay(j)
	default:
		return fmt.Errorf("unknown session kind %q", it.Envelope.Kind)
	}
	return nil
}

// preparePlayer rebuilds a player: around the session its base built, or,
// with sess nil, around its own descriptor.
func (r *Restored) preparePlayer(j *restoreJob, ps *state.Player, sess *session) error {
	it := &j.it
	want := 1
	if sess != nil {
		want = 0
	}
	if len(it.Files) != want {
		return fmt.Errorf("%d descriptors, want %d", len(it.Files), want)
	}
	if !validName(ps.App) || !validName(ps.Key) {
		return fmt.Errorf("invalid stream name %q/%q", ps.App, ps.Key)
	}
	sess, err := r.srv.sessionFor(sess, ps.Session, it.Files)
	if err != nil {
		return err
	}
	j.sess = sess
	if want == 1 {
		sess.log = sess.log.With().Str("key", ps.Key).Logger()
	}
	p := newPlayer(sess, ps.Msid)
	if err := p.restoreQueue(ps.Queue, ps.WaitKey, ps.Skips); err != nil {
		p.stop()
		return err
	}
	sess.setRole(rolePlayer)
	sess.player = p
	j.app, j.key = ps.App, ps.Key
	return nil
}

// sessionFor is sess, built from a base, given the protocol state ss, or
// a session rebuilt from ss around files[0].
func (s *Server) sessionFor(sess *session, ss state.Session, files []*os.File) (*session, error) {
	if sess == nil {
		return s.restoreSession(ss, files[0])
	}
	if err := sess.restoreState(ss); err != nil {
		return nil, err
	}
	return sess, nil
}

// attach puts a prepared session together with the registry and the
// sessions before it in restoreOrder: a publisher's stream is registered,
// a player joins its stream.
func (r *Restored) attach(j *restoreJob) error {
	sess := j.sess
	switch j.wholeKind() {
	case state.KindPublisher:
		if err := r.srv.registry.restorePublisher(j.st, sess); err != nil {
			return err
		}
		// The next upgrade sends its static part ahead too.
		sess.publishBase()
	case state.KindPlayer:
		sess.stream = r.srv.registry.attachPlayer(j.app, j.key, sess.player)
		sess.publishBase()
	case state.KindFLVPlayer:
		sess.stream = r.srv.registry.attachPlayer(j.app, j.key, sess.player)
		// Publishers were restored first; a viewer whose broadcast did not
		// come along has seen its end.
		sess.stream.mu.Lock()
		live := sess.stream.publisher != nil
		sess.stream.mu.Unlock()
		if j.ending || !live {
			// Not endOfStream: its wake would write before Start.
			p := sess.player
			p.mu.Lock()
			p.ending = true
			p.mu.Unlock()
		}
	case state.KindRelay:
		sess.stream = r.srv.registry.attachPlayer(j.app, j.key, sess.player)
		r.relays = append(r.relays, sess)
	}
	r.sessions = append(r.sessions, sess)
	return nil
}

// preparePublisher rebuilds a publisher and its stream: the recording and
// LL-HLS files reopened, everything but the registry. sess is the session
// its base built, or nil: the connection is then the first descriptor.
func (r *Restored) preparePublisher(j *restoreJob, ps *state.Publisher, sess *session) error {
	it := &j.it
	conns := 1
	if sess != nil {
		conns = 0
	}
	want := conns
	if ps.Stream.Recorder != nil && ps.Stream.Recorder.HasFile {
		want++
	}
	if len(it.Files) != want {
		return fmt.Errorf("%d descriptors, want %d", len(it.Files), want)
	}
	if !validName(ps.Stream.App) || !validName(ps.Stream.Key) {
		return fmt.Errorf("invalid stream name %q/%q", ps.Stream.App, ps.Stream.Key)
	}
	var recFile *os.File
	if want > conns {
		recFile = it.Files[conns]
	}
	st, err := r.srv.restoreStream(ps.Stream, recFile, r.spills)
	if err != nil {
		return err
	}
	// From here the stream is Discard's to release, whatever follows.
	j.st = st
	if sess, err = r.srv.sessionFor(sess, ps.Session, it.Files); err != nil {
		return err
	}
	j.sess = sess
	sess.setRole(rolePublisher)
	sess.restoredRec = ps.Stream.Recorder != nil && ps.Stream.Recorder.HasFile
	sess.pubMsid = ps.Msid
	if ps.Session.LastRead != 0 {
		sess.stallFrom = time.Unix(0, ps.Session.LastRead)
		sess.firstRead = r.publisherRead
		r.unread.Add(1)
	}
	sess.stream = st
	st.pubID = sess.id
	if st.pubAddr == "" {
		st.pubAddr = ps.Session.Peer
	}
	if conns == 1 {
		sess.log = sess.log.With().Str("key", ps.Stream.Key).Logger()
	}
	st.log = sess.log
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
	sess, err := s.adoptSession(ss.ID, f)
	if err != nil {
		return nil, err
	}
	if err := sess.restoreState(ss); err != nil {
		sess.conn.Close()
		return nil, err
	}
	return sess, nil
}

// adoptSession is a session with id around the received descriptor, which
// it takes, and nothing else yet.
func (s *Server) adoptSession(id uint64, f *os.File) (*session, error) {
	c, err := adoptConn(f)
	if err != nil {
		return nil, fmt.Errorf("connection from descriptor: %w", err)
	}
	s.keepIDsAbove(id)
	return newSession(s, c, id), nil
}

// restoreState gives the session the protocol state ss. A session built
// from a base has its connect and its log fields already.
func (sess *session) restoreState(ss state.Session) error {
	if ss.ID != sess.id {
		return fmt.Errorf("state of session %d for session %d", ss.ID, sess.id)
	}
	if ss.HandshakePhase > uint8(handshake.PhaseDone) {
		return fmt.Errorf("handshake phase %d", ss.HandshakePhase)
	}
	r, err := chunk.Restore(ss.Reader)
	if err != nil {
		return err
	}
	w, err := chunk.RestoreWriter(ss.Writer)
	if err != nil {
		return err
	}
	sess.hs = handshake.Server{Phase: handshake.Phase(ss.HandshakePhase), Partial: ss.HandshakePartial}
	sess.r = r
	sess.w = w
	sess.out = ss.Out
	sess.connected = ss.Connected
	logApp := ss.App != "" && sess.app == ""
	sess.app = ss.App
	sess.tcURL = ss.TCURL
	sess.flashVer = ss.FlashVer
	sess.nextMsid = ss.NextMsid
	sess.ackWindow = ss.AckWindow
	sess.lastAck = ss.LastAck
	if ss.LastRead != 0 {
		sess.lastRead = time.Unix(0, ss.LastRead)
	}
	if logApp {
		sess.log = sess.log.With().Str("app", ss.App).Logger()
	}
	return nil
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
	r.srv.mu.Lock()
	if !r.srv.closed {
		r.srv.wg.Add(1)
		go r.loadRecent()
	}
	r.srv.mu.Unlock()
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

// loadRecentHLS puts a restored stream's newest LL-HLS parts back in
// memory (Restored.loadRecent).
func (st *Stream) loadRecentHLS() {
	st.mu.Lock()
	m := st.hls
	st.mu.Unlock()
	if m != nil {
		m.LoadRecent()
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
