package ingest

import (
	"context"
	"errors"
	"time"
)

// errShutdown ends a session at a graceful stop.
var errShutdown = errors.New("server shutting down")

// Shutdown stops the server gracefully, in phases: stop accepting; end
// every publish, which finalises its recording and tells its players the
// stream ended after the frames already queued for them; let players drain
// what is queued; then close every connection. If ctx ends first, what is
// left is closed at once and Shutdown returns ctx's error after logging
// what was cut. Close may follow; both are idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed || s.stopping {
		s.mu.Unlock()
		return s.Close()
	}
	s.stopping = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	var pubs, players, others []*session
	for sess := range s.sessions {
		switch role(sess.roleA.Load()) {
		case rolePublisher:
			pubs = append(pubs, sess)
		case rolePlayer, roleFLVPlayer, roleRelay:
			players = append(players, sess)
		default:
			others = append(others, sess)
		}
	}
	s.mu.Unlock()

	// Publishers end on their own goroutine, where the recording lives.
	for _, sess := range pubs {
		sess.requestStop(ctx)
	}
	cut := waitDone(ctx, pubs)
	// Players have been told; each takes what is queued for it, until
	// the deadline at most, and ends.
	for _, sess := range players {
		sess.requestStop(ctx)
	}
	cut += waitDone(ctx, players)
	for _, sess := range others {
		sess.conn.Close()
	}
	if ctx.Err() != nil {
		s.log.Warn().Int("sessions_cut", cut).Msg("graceful stop ran out of time; closing what is left")
		s.Close()
		return ctx.Err()
	}
	return s.Close()
}

// waitDone waits for sessions to end and counts those still running when
// ctx ends.
func waitDone(ctx context.Context, sessions []*session) int {
	cut := 0
	for _, sess := range sessions {
		select {
		case <-sess.done:
		case <-ctx.Done():
			cut++
		}
	}
	return cut
}

// requestStop asks the session's goroutine to end at its next safe point,
// as a park request does; a player first drains its queue, until ctx's
// deadline at most.
func (sess *session) requestStop(ctx context.Context) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	sess.stopReq.Store(deadline.UnixNano())
	_ = sess.conn.SetReadDeadline(time.Unix(1, 0))
}

// stop ends the session for a graceful stop, on its own goroutine.
func (sess *session) stop() error {
	if p := sess.player; p != nil {
		deadline := time.Unix(0, sess.stopReq.Load())
		for !p.drained() && time.Now().Before(deadline) {
			select {
			case <-p.done:
				return errShutdown
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return errShutdown
}

// drained reports whether nothing is queued or being written.
func (p *player) drained() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) == 0 && !p.writing
}
