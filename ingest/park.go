package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediad/mediad/ingest/hls"
	"github.com/mediad/mediad/state"
)

// errMoved ends a session whose connection now belongs to another process.
var errMoved = errors.New("session moved to the new process")

// ErrParkInProgress refuses a second Park while one is outstanding.
var ErrParkInProgress = errors.New("ingest: sessions are already parked")

type parkDecision uint8

const (
	decisionResume parkDecision = iota // rollback: carry on here
	decisionCommit                     // the new process owns the session
)

type parkResult struct {
	item ParkedSession
	err  error
}

// parkRequest is one Park's conversation with one session. Each Park makes
// fresh channels, so a reply nobody read can never reach a later Park.
type parkRequest struct {
	reply    chan parkResult
	decision chan parkDecision
	// spill takes the LL-HLS frames held back by a publisher's muxer;
	// nil writes them to the stream's own file, as version 5 reads them.
	spill *hls.Spill
	// base is what Presend sent of the session, nil if nothing: the
	// session exports its tail when its static part is still the base's.
	base *state.Base
}

// ParkedSession is one session stopped at a safe point: its state envelope
// and the descriptors it travels with (the connection first, then the
// recording, if any). A parked session lends its own descriptors by
// number (Borrowed): they stay open, untouched, until the commit or the
// resume, so no duplicate is needed to send them, and the old process
// holds each connection once for the whole upgrade. The numbers are valid
// until Resume or Commit, and only while the Server stays open: the
// upgrade engine stops an upgrade in flight before anything closes the
// Server. A session received from an old process carries its descriptors
// as Files, owned.
type ParkedSession struct {
	Envelope state.Envelope
	Borrowed []int
	Files    []*os.File
	// LastRead is when the old process last read from the connection.
	LastRead time.Time
}

// Parked is every session of a server stopped at a safe point. Exactly one
// of Resume or Commit must follow.
type Parked struct {
	srv      *Server
	sessions []*session
	reqs     map[*session]*parkRequest
	Items    []ParkedSession
	done     bool
	spill    *hls.Spill
}

// Park parks every session for a new process that reads this build's
// state version; see ParkFor.
func (s *Server) Park(ctx context.Context) (*Parked, error) { return s.ParkFor(ctx, state.Version) }

// ParkFor parks every session; see ParkEach.
func (s *Server) ParkFor(ctx context.Context, version uint32) (*Parked, error) {
	return s.ParkEach(ctx, version, nil)
}

// ParkEach parks every session, none of which went ahead; see ParkAfter.
func (s *Server) ParkEach(ctx context.Context, version uint32, each func([]ParkedSession) error) (*Parked, error) {
	return s.ParkAfter(ctx, version, nil, each)
}

// parkGroup is how many parked sessions ParkEach hands each at a time:
// enough that a send's fixed cost is spread, few enough that the new
// process starts rebuilding while most sessions are still parking. At
// 1,000 streams on 2 busy cores, 32 measured no better than 128, and
// neither better than sending everything after the park: the cores were
// the limit, not the order.
const parkGroup = 128

// ParkAfter stops accepting and parks every session between two RTMP messages:
// publishers first, so nothing reaches a player's queue after it is
// exported. Reads blocked in the kernel are interrupted; bytes already read
// and bytes queued for clients become part of the state. Connections that
// arrive meanwhile wait in the listen queue. On error every session already
// parked is resumed. version is the state version the envelopes will be
// migrated to: below 6, LL-HLS frames held back go to each stream's own
// file, which is all an older build reads.
//
// each, if not nil, is handed the sessions as they park, a few at a time,
// on the caller's goroutine, while the rest are still parking: every
// feeder before any player. An error from it fails the Park. Everything it
// was handed is also in Items.
//
// pre is what a Presend to the same new process sent, or nil: a session
// whose base went, and whose static part is still the base's, exports its
// tail (state.KindPublisherTail or KindPlayerTail), without the
// connection's descriptor, which went with the base; any other goes
// whole.
func (s *Server) ParkAfter(ctx context.Context, version uint32, pre *Presented, each func([]ParkedSession) error) (*Parked, error) {
	s.mu.Lock()
	if s.parked {
		s.mu.Unlock()
		return nil, ErrParkInProgress
	}
	if s.closed {
		s.mu.Unlock()
		return nil, ErrServerClosed
	}
	s.parked = true
	s.acceptGate = make(chan struct{})
	for ln := range s.listeners {
		// Wake Accept so that each Serve loop notices the pause.
		if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			_ = d.SetDeadline(time.Unix(1, 0))
		}
	}
	for s.acceptorsPaused < len(s.listeners) && !s.closed {
		s.acceptCond.Wait()
	}
	// Every session that may feed a player parks before any player, so
	// nothing reaches a player's queue once it is exported. A session that
	// turns player meanwhile is caught below.
	var feeders, players []*session
	for sess := range s.sessions {
		if sess.tlsRelay {
			// Its TLS keys cannot move: it carries on until the commit,
			// when its stream's hand-over closes it (push.go).
			continue
		}
		if r := role(sess.roleA.Load()); r == rolePlayer || r == roleFLVPlayer || r == roleRelay {
			players = append(players, sess)
		} else {
			feeders = append(feeders, sess)
		}
	}
	s.mu.Unlock()

	p := &Parked{srv: s, reqs: make(map[*session]*parkRequest)}
	if version >= 6 {
		p.spill = hls.NewSpill(s.cfg.HLSDir)
	}
	for _, group := range [][]*session{feeders, players} {
		for _, sess := range group {
			p.reqs[sess] = sess.requestPark(p.spill, pre.baseOf(sess))
		}
		handed := len(p.Items)
		for i, sess := range group {
			var err error
			select {
			case r := <-p.reqs[sess].reply:
				p.sessions = append(p.sessions, sess)
				if r.err != nil {
					err = fmt.Errorf("park session %d: %w", sess.id, r.err)
				} else {
					p.Items = append(p.Items, r.item)
				}
			case <-sess.done:
				// It ended before reaching a safe point: nothing to move.
			case <-ctx.Done():
				err = fmt.Errorf("park: %w", ctx.Err())
				i-- // this one has not answered either
			}
			// A group goes when it is full, and the last of each kind
			// before the next kind parks.
			if err == nil && each != nil && (len(p.Items)-handed >= parkGroup || i == len(group)-1) && len(p.Items) > handed {
				err = each(p.Items[handed:len(p.Items):len(p.Items)])
				handed = len(p.Items)
			}
			if err != nil {
				// Sessions asked but not yet answered park on their own:
				// the resume decision waits for them, and what they export
				// is closed unread.
				for _, rest := range group[i+1:] {
					req := p.reqs[rest]
					req.decision <- decisionResume
					go discardReply(rest, req)
				}
				p.Resume()
				return nil, err
			}
		}
	}
	for _, sess := range p.sessions {
		if pl := sess.player; pl != nil && pl.fedAfterExport() {
			p.Resume()
			return nil, fmt.Errorf("park: player %d was fed after its state was taken (a publish began during the park); try again", sess.id)
		}
	}
	return p, nil
}

// ParkFDs is at least the number of descriptors a Park started now would
// export: one connection per session, and a recording for a publisher.
// The upgrade checks it against the new process's descriptor limit before
// anything parks, so that a refusal costs no session a stall; a session
// that arrives before the Park is caught by the exact count after it.
func (s *Server) ParkFDs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for sess := range s.sessions {
		switch {
		case sess.tlsRelay:
			// Stays here until the commit (see Park).
		case role(sess.roleA.Load()) == rolePublisher:
			// Whether it records right now is the session goroutine's to
			// know; the bound counts a file wherever one may be open: with
			// recording configured, or a recording that came with the
			// stream from an older process. At 10,000 publishers with
			// recording off, counting one each would refuse an upgrade
			// that fits.
			n++
			if s.cfg.RecordDir != "" || sess.restoredRec {
				n++
			}
		default:
			n++
		}
	}
	return n
}

// Resume rolls back: every parked session continues in this process from
// its own untouched state, and accepting resumes.
func (p *Parked) Resume() {
	if p.done {
		return
	}
	p.done = true
	p.closeFiles()
	if err := p.spill.Discard(); err != nil {
		p.srv.log.Warn().Err(err).Msg("removing the LL-HLS spill file after a rollback")
	}
	for _, sess := range p.sessions {
		p.reqs[sess].decision <- decisionResume
	}
	p.srv.resumeAccepting()
}

// Commit hands the sessions over for good: each session goroutine closes
// its copy of the connection and recording without writing to them and
// ends without a goodbye. Accepting stays paused; the caller closes the
// listeners, which the new process has inherited.
func (p *Parked) Commit() {
	if p.done {
		return
	}
	p.done = true
	p.closeFiles()
	// The new process has read the spill and removes it.
	_ = p.spill.Close()
	p.srv.markMoved()
	for _, sess := range p.sessions {
		p.reqs[sess].decision <- decisionCommit
	}
	for _, sess := range p.sessions {
		<-sess.done
	}
}

func (p *Parked) closeFiles() {
	for _, it := range p.Items {
		for _, f := range it.Files {
			f.Close()
		}
	}
}

// ResumeAccepting lets Serve loops accept again after a Park whose
// sessions were committed but whose new process then failed: the sessions
// are gone, new connections at least are served.
func (s *Server) ResumeAccepting() { s.resumeAccepting() }

func (s *Server) resumeAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.parked {
		return
	}
	s.parked = false
	for ln := range s.listeners {
		if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			_ = d.SetDeadline(time.Time{})
		}
	}
	close(s.acceptGate)
}

// acceptPaused blocks a Serve loop while sessions are parked. It reports
// false if the server closed meanwhile.
func (s *Server) acceptPaused(ln net.Listener) bool {
	s.mu.Lock()
	if !s.parked {
		s.mu.Unlock()
		return true
	}
	gate := s.acceptGate
	s.acceptorsPaused++
	s.acceptCond.Broadcast()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.acceptorsPaused--
		s.mu.Unlock()
	}()
	select {
	case <-gate:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// discardReply closes what an abandoned park request exported.
func discardReply(sess *session, req *parkRequest) {
	select {
	case r := <-req.reply:
		for _, f := range r.item.Files {
			f.Close()
		}
	case <-sess.done:
	}
}

// requestPark asks the session's goroutine to stop at its next safe point.
// The request comes first, the deadline second: see serve.
func (sess *session) requestPark(spill *hls.Spill, base *state.Base) *parkRequest {
	req := &parkRequest{reply: make(chan parkResult, 1), decision: make(chan parkDecision, 1), spill: spill, base: base}
	sess.parkReq.Store(req)
	_ = sess.conn.SetReadDeadline(time.Unix(1, 0))
	// The session goroutine may be blocked writing to a client that does
	// not read (output left from a park, an HTTP-FLV header): a slow
	// client must not hold the handoff up.
	_ = sess.conn.SetWriteDeadline(time.Unix(1, 0))
	return req
}

// park runs on the session's own goroutine at a safe point: between two
// Feed calls, so every byte read so far is in the parser's state. It
// reports whether the session carries on here.
func (sess *session) park() bool {
	if sess.player != nil {
		sess.player.pause()
	}
	sess.wmu.Lock()
	sess.parking = true
	sess.wmu.Unlock()

	req := sess.parkReq.Load()
	item, err := sess.export(req)
	req.reply <- parkResult{item: item, err: err}
	var d parkDecision
	select {
	case d = <-req.decision:
	case <-sess.srv.ctx.Done():
		// Closed while parked: carry on here, where the closed socket
		// ends the session.
		d = decisionResume
	}
	// Only this request: after a Resume the next Park may already have
	// asked again, and its request must stand.
	sess.parkReq.CompareAndSwap(req, nil)
	if d == decisionCommit {
		sess.handOver()
		return false
	}
	sess.wmu.Lock()
	sess.parking = false
	sess.wmu.Unlock()
	if sess.player != nil {
		sess.player.resume()
	}
	if err := sess.flushOut(); err != nil {
		sess.log.Warn().Err(err).Msg("write after resume failed")
		sess.conn.Close()
	}
	return true
}

// handOver releases what moved to the new process: the socket and the
// recording are closed here (the new process holds its own descriptors, so
// the peer sees nothing), the stream leaves this registry silently.
func (sess *session) handOver() {
	sess.dropDecision()
	switch sess.role {
	case rolePublisher:
		st := sess.stream
		st.mu.Lock()
		if st.rec != nil {
			// Flushed at export, so Release writes nothing more; the
			// segment is not done, it goes on in the new process.
			_ = st.rec.Release()
			st.rec = nil
		}
		if st.hls != nil {
			// The new process owns the files now; requests that reach this
			// process meanwhile get what it last had, and are sent on.
			st.hls.Detach()
			st.reg.keepHLS(st.App, st.Key, st.hls, false)
			st.hls = nil
		}
		st.movePushLocked()
		st.publisher = nil
		st.players = nil
		st.gop.reset(&st.reg.gop)
		st.mu.Unlock()
		sess.srv.registry.forget(st)
	case rolePlayer, roleFLVPlayer, roleRelay:
		sess.player.stop()
		sess.stream.mu.Lock()
		sess.stream.players = nil
		sess.stream.mu.Unlock()
		sess.srv.registry.forget(sess.stream)
	}
	sess.movedOut.Store(true)
	sess.wmu.Lock()
	sess.wclosed = true
	sess.wmu.Unlock()
	if sess.hupWatched {
		// The socket goes on in the new process: its FIN is not ours.
		sess.srv.hangups.forget(sess, sess.raw)
	}
	if c := sess.srv.coalesce; c != nil {
		c.forget(sess)
	}
	sess.conn.Close()
}

// dupFile duplicates fd as a close-on-exec *os.File.
func dupFile(fd uintptr, name string) (*os.File, error) {
	nfd, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", name, err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// rawFD is the descriptor number of c or f, without f.Fd(), which would
// switch a socket to blocking mode. It is valid while c or f is open.
func rawFD(c syscall.Conn, name string) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("descriptor of %s: %w", name, err)
	}
	fd := -1
	if err := raw.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return -1, fmt.Errorf("descriptor of %s: %w", name, err)
	}
	return fd, nil
}

// export captures the session as an envelope plus its descriptors, lent:
// the connection's first, unless it went ahead with the session's base.
func (sess *session) export(req *parkRequest) (ParkedSession, error) {
	item := ParkedSession{LastRead: sess.lastRead}
	sc, ok := sess.conn.(syscall.Conn)
	if !ok {
		return item, fmt.Errorf("connection %T has no file descriptor", sess.conn)
	}
	fd, err := rawFD(sc, "conn "+sess.conn.RemoteAddr().String())
	if err != nil {
		return item, err
	}
	item.Borrowed = append(item.Borrowed, fd)
	fail := func(err error) (ParkedSession, error) { return ParkedSession{}, err }
	if sess.role == roleFLVPlayer {
		// No RTMP state: the connection is an HTTP response body.
		if item.Envelope, err = state.Encode(state.KindFLVPlayer, sess.flvState()); err != nil {
			return fail(err)
		}
		return item, nil
	}
	b := req.base
	ss := sess.sessionState(b)
	switch sess.role {
	case rolePublisher:
		st, recFD, err := sess.stream.export(req.spill)
		if err != nil {
			return fail(err)
		}
		pub := state.Publisher{Session: ss, Msid: sess.pubMsid, Stream: st}
		kind := state.KindPublisher
		if b != nil && b.TailPublisher(&pub) {
			kind, item.Borrowed = state.KindPublisherTail, item.Borrowed[:0]
		}
		if recFD >= 0 {
			item.Borrowed = append(item.Borrowed, recFD)
		}
		item.Envelope, err = state.Encode(kind, pub)
		if err != nil {
			return fail(err)
		}
	case roleRelay:
		rs, err := sess.exportRelay(ss)
		if err == nil {
			item.Envelope, err = state.Encode(state.KindRelay, rs)
		}
		if err != nil {
			return fail(err)
		}
	case rolePlayer:
		pl := sess.player.export()
		pl.Session = ss
		pl.App, pl.Key = sess.stream.App, sess.stream.Key
		kind := state.KindPlayer
		if b != nil && b.TailPlayer(&pl) {
			kind, item.Borrowed = state.KindPlayerTail, item.Borrowed[:0]
		}
		item.Envelope, err = state.Encode(kind, pl)
		if err != nil {
			return fail(err)
		}
	default:
		item.Envelope, err = state.Encode(state.KindConn, ss)
		if err != nil {
			return fail(err)
		}
	}
	return item, nil
}

// sessionState is the session's protocol state; its peer's address comes
// from b, the base sent ahead, when there is one (the address of a
// connection never changes, and asking for it allocates).
func (sess *session) sessionState(b *state.Base) state.Session {
	peer := ""
	if b != nil {
		peer = b.Peer
	} else {
		peer = sess.conn.RemoteAddr().String()
	}
	sess.wmu.Lock()
	out := append([]byte(nil), sess.out...)
	w := sess.w.State()
	sess.wmu.Unlock()
	ss := state.Session{
		ID:               sess.id,
		Peer:             peer,
		HandshakePhase:   uint8(sess.hs.Phase),
		HandshakePartial: append([]byte(nil), sess.hs.Partial...),
		Reader:           sess.r.State(),
		Writer:           w,
		Out:              out,
		Connected:        sess.connected,
		App:              sess.app,
		TCURL:            sess.tcURL,
		FlashVer:         sess.flashVer,
		NextMsid:         sess.nextMsid,
		AckWindow:        sess.ackWindow,
		LastAck:          sess.lastAck,
		Pending:          sess.pendingState(),
	}
	if !sess.lastRead.IsZero() {
		ss.LastRead = sess.lastRead.UnixNano()
	}
	return ss
}

// export captures the stream and the descriptor of its recording file
// (-1 if none), lent like the connection's; the recording is flushed first
// so the file's size is the state's offset.
func (st *Stream) export(spill *hls.Spill) (state.Stream, int, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := state.Stream{
		App: st.App, Key: st.Key,
		Metadata: st.metadata, VideoSeq: st.videoSeq, AudioSeq: st.audioSeq,
		Started:     st.started.UnixNano(),
		BytesIn:     st.stats.BytesIn,
		VideoFrames: st.stats.VideoFrames,
		AudioFrames: st.stats.AudioFrames,
		Keyframes:   st.stats.Keyframes,
		VideoBytes:  st.stats.VideoBytes,
		AudioBytes:  st.stats.AudioBytes,
		Encoder:     st.stats.Encoder,
		Query:       st.query, PublisherAddr: st.pubAddr,
	}
	if !st.stats.TracksSince.IsZero() {
		out.TracksSince = st.stats.TracksSince.UnixNano()
	}
	out.RateBuckets, out.RateSecond = st.stats.rate.export()
	if st.hls != nil {
		hs, err := st.hls.ExportTo(spill)
		if err != nil {
			return out, -1, fmt.Errorf("hls of %s/%s: %w", st.App, st.Key, err)
		}
		out.HLS = &hs
	}
	if st.rec == nil {
		return out, -1, nil
	}
	rs, f, err := st.rec.State()
	if err != nil {
		return out, -1, fmt.Errorf("recording of %s/%s: %w", st.App, st.Key, err)
	}
	out.Recorder = &state.Recorder{
		Dir: rs.Dir, SegmentDuration: int64(rs.SegmentDuration), Path: rs.Path, Offset: rs.Offset,
		SegmentStartTS: rs.SegmentStartTS, Started: rs.Started, SawVideo: rs.SawVideo,
		Metadata: rs.Metadata, VideoSeq: rs.VideoSeq, AudioSeq: rs.AudioSeq, Segments: rs.Segments,
	}
	if f == nil {
		return out, -1, nil
	}
	fd, err := rawFD(f, rs.Path)
	if err != nil {
		return out, -1, err
	}
	out.Recorder.HasFile = true
	return out, fd, nil
}

func (p *player) export() state.Player {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exported, p.fedLate = true, false
	out := state.Player{Msid: p.msid, WaitKey: p.waitKey, Skips: p.skips}
	out.Queue = make([]state.QueuedMessage, len(p.queue))
	for i, m := range p.queue {
		out.Queue[i] = state.QueuedMessage{Type: m.typ, Kind: uint8(m.kind), Key: m.key, TS: m.ts, CSID: m.csid, Msid0: m.msid0, Payload: m.payload}
	}
	return out
}
