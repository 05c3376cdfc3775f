package ingest

import (
	"fmt"
	"syscall"

	"github.com/mediad/mediad/state"
)

// sessionBase is what a publishing or playing session publishes of itself
// for Presend, which runs on another goroutine: set once the role has
// begun (all its fields then stay as they are for the role's life), and
// cleared when it ends. The stream's metadata and sequence headers, which
// may change, are read under the stream's lock when the base is taken; the
// park checks that they did not change since (state.Base.TailPublisher).
type sessionBase struct {
	of                         state.Kind
	peer, app, tcURL, flashVer string
	st                         *Stream
}

// publishBase records the session's static part for Presend: called by
// the session's goroutine, or before it runs, once a publish or play has
// begun.
func (s *session) publishBase() {
	of := state.KindPlayerTail
	if s.role == rolePublisher {
		of = state.KindPublisherTail
	}
	s.base.Store(&sessionBase{of: of, peer: s.conn.RemoteAddr().String(), app: s.app, tcURL: s.tcURL, flashVer: s.flashVer, st: s.stream})
}

// Presented is what one Presend sent: the base of each session, which the
// park that follows compares with the session's state then.
type Presented struct {
	bases map[*session]*state.Base
}

// Len is the number of bases sent.
func (p *Presented) Len() int {
	if p == nil {
		return 0
	}
	return len(p.bases)
}

func (p *Presented) baseOf(sess *session) *state.Base {
	if p == nil {
		return nil
	}
	return p.bases[sess]
}

// Presend hands each, a group at a time, the base of every RTMP publisher
// and player (state.KindBase, with the connection's descriptor lent), for
// a new process that reads state version version, while every session
// still runs: the new process builds each session around its connection
// meanwhile, and ParkAfter, given what Presend returns, exports only each
// session's tail. Below state.BaseSince it sends nothing. An error from
// each ends it; nothing is parked either way.
//
// A connection's descriptor is held open (RawConn.Control) while a send
// that lends it is in flight: the session runs, and a close of its
// connection would otherwise free the number for another file. Such a
// close waits for the send; a session that ended before is left out. A
// session that ends after its base went leaves the base without a tail,
// which the new process closes at the end of the restore.
func (s *Server) Presend(version uint32, each func([]ParkedSession) error) (*Presented, error) {
	if version < state.BaseSince {
		return nil, nil
	}
	s.mu.Lock()
	var sessions []*session
	for sess := range s.sessions {
		if !sess.tlsRelay && sess.base.Load() != nil {
			sessions = append(sessions, sess)
		}
	}
	s.mu.Unlock()
	pre := &Presented{bases: make(map[*session]*state.Base, len(sessions))}
	// One group after the other: four at once measured no faster at
	// 10,000 on 2 busy cores (0.60-1.00 s against 0.77-0.87 s); the
	// cores are the limit there, not this goroutine.
	for len(sessions) > 0 {
		group := sessions[:min(parkGroup, len(sessions))]
		sessions = sessions[len(group):]
		if err := pre.send(group, each); err != nil {
			return nil, err
		}
	}
	return pre, nil
}

// send takes the bases of group and sends them with their descriptors held.
func (p *Presented) send(group []*session, each func([]ParkedSession) error) error {
	items := make([]ParkedSession, 0, len(group))
	bases := make([]*state.Base, 0, len(group))
	raws := make([]syscall.RawConn, 0, len(group))
	sent := make([]*session, 0, len(group))
	for _, sess := range group {
		sb := sess.base.Load()
		sc, ok := sess.conn.(syscall.Conn)
		if sb == nil || !ok {
			continue
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			continue
		}
		b := sb.take(sess.id)
		env, err := state.Encode(state.KindBase, b)
		if err != nil {
			return fmt.Errorf("base of session %d: %w", sess.id, err)
		}
		items = append(items, ParkedSession{Envelope: env})
		bases, raws, sent = append(bases, b), append(raws, raw), append(sent, sess)
	}
	fds := make([]int, len(raws))
	var out []ParkedSession
	err := holdFDs(raws, fds, func() error {
		out = items[:0:0]
		for i, fd := range fds {
			if fd < 0 {
				continue
			}
			it := items[i]
			it.Borrowed = []int{fd}
			out = append(out, it)
		}
		if len(out) == 0 {
			return nil
		}
		return each(out)
	})
	if err != nil {
		return err
	}
	for i, fd := range fds {
		if fd >= 0 {
			p.bases[sent[i]] = bases[i]
		}
	}
	return nil
}

// take is the session's base now.
func (sb *sessionBase) take(id uint64) *state.Base {
	b := &state.Base{ID: id, Of: sb.of, Peer: sb.peer, App: sb.app, TCURL: sb.tcURL, FlashVer: sb.flashVer,
		StreamApp: sb.st.App, Key: sb.st.Key}
	if sb.of == state.KindPublisherTail {
		st := sb.st
		st.mu.Lock()
		b.Metadata, b.VideoSeq, b.AudioSeq = st.metadata, st.videoSeq, st.audioSeq
		b.Started, b.Query, b.PublisherAddr = st.started.UnixNano(), st.query, st.pubAddr
		st.mu.Unlock()
	}
	return b
}

// holdFDs runs fn with the descriptor of every conn held open, in fds;
// fds[i] is -1 for a conn already closed.
func holdFDs(raws []syscall.RawConn, fds []int, fn func() error) error {
	if len(raws) == 0 {
		return fn()
	}
	var ferr error
	held := false
	// Control fails only for a closed connection, which held tells.
	_ = raws[0].Control(func(fd uintptr) {
		held = true
		fds[0] = int(fd)
		ferr = holdFDs(raws[1:], fds[1:], fn)
	})
	if !held {
		// Its session is ending, and goes without a base.
		fds[0] = -1
		return holdFDs(raws[1:], fds[1:], fn)
	}
	return ferr
}
