package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mediad/mediad/state"
)

// An upgrade moves the viewers' connections too (state version 7), so that
// an LL-HLS viewer neither reconnects nor is told its stream moved. Before,
// the old process answered every waiting request with the playlist it last
// had and closed the connection; a thousand viewers then redialled the new
// process at the moment it was busiest catching up, and the last of them
// waited in its accept queue for over half a second.
//
// A connection moves at a request boundary: waiting for a request (new or
// idle), or with a request whose wait the park cut short (a blocking
// reload or a preload hint). Such a request goes with the connection,
// unanswered, as the head the client sent, and the new process reads it
// before the socket and answers it there. Requests are GET or HEAD, so
// answering one there is the same as answering it here. A connection busy
// otherwise (writing an answer to a slow reader, reading a head sent
// slowly) is left out when it does not reach a boundary within the park's
// bound: it stays here and is answered and closed as before.

// Park states of a connection.
const (
	parkNone  int32 = iota
	parkAsked       // a park waits for this connection
	parkDone        // it stopped at a request boundary
	parkOut         // it did not stop in time: it stays
)

// ParkBound is how long Park waits for a connection to reach a request
// boundary.
const ParkBound = 100 * time.Millisecond

// ParkedConns are the connections of one park, stopped at a request
// boundary. Exactly one of Resume or Commit follows.
type ParkedConns struct {
	s     *HTTP1
	round *parkRound
	// Items are the connections' envelopes, each with the connection's
	// own descriptor lent for the send.
	Items []ParkedConn
	done  bool
}

// ParkedConn is one connection's envelope and descriptor.
type ParkedConn struct {
	Envelope state.Envelope
	// Borrowed is the connection's own descriptor, open until Resume or
	// Commit.
	Borrowed []int
}

// parkRound is what a park and its connections share.
type parkRound struct {
	mu      sync.Mutex
	parked  []*h1conn
	waiting int           // asked and not yet stopped or ended
	arrived chan struct{} // a token whenever waiting drops
	decided chan struct{} // closed by Resume or Commit
	resume  bool
}

func (r *parkRound) arrive(c *h1conn) {
	r.mu.Lock()
	if c != nil {
		r.parked = append(r.parked, c)
	}
	r.waiting--
	r.mu.Unlock()
	select {
	case r.arrived <- struct{}{}:
	default:
	}
}

// ParkFDs is at least the number of descriptors a Park started now would
// export.
func (s *HTTP1) ParkFDs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) + s.openLeft
}

// Park stops accepting and stops every connection at a request boundary,
// for a new process that reads state version version; one that reads less
// than 7 gets none (they stay, and are answered and closed after the
// commit, as before). Connections that do not stop within bound stay too.
func (s *HTTP1) Park(ctx context.Context, version uint32, bound time.Duration) (*ParkedConns, error) {
	p := &ParkedConns{s: s}
	if version < 7 {
		p.done = true
		return p, nil
	}
	// Connections still being restored from the last upgrade would be
	// missed: wait until they serve.
	s.mu.Lock()
	opening := s.opening
	s.mu.Unlock()
	if opening != nil {
		select {
		case <-opening:
		case <-ctx.Done():
			return nil, fmt.Errorf("park HTTP connections: waiting for those restored last time: %w", ctx.Err())
		}
	}
	r := &parkRound{arrived: make(chan struct{}, 1), decided: make(chan struct{})}
	s.mu.Lock()
	if s.closed || s.draining.Load() || s.round != nil {
		s.mu.Unlock()
		p.done = true
		return p, nil
	}
	s.round = r
	// Accepting stops, so that a viewer who dials now waits in the accept
	// queue for whichever process goes on rather than being served here
	// and cut off after the commit.
	for ln := range s.lns {
		if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
			_ = d.SetDeadline(time.Unix(1, 0))
		}
	}
	asked := make([]*h1conn, 0, len(s.conns))
	for c := range s.conns {
		c.round = r
		c.park.Store(parkAsked)
		asked = append(asked, c)
	}
	r.waiting = len(asked)
	s.mu.Unlock()
	p.round = r
	for _, c := range asked {
		c.wakeForPark()
	}
	timer := time.NewTimer(bound)
	defer timer.Stop()
wait:
	for {
		r.mu.Lock()
		left := r.waiting
		r.mu.Unlock()
		if left <= 0 {
			break
		}
		select {
		case <-r.arrived:
		case <-timer.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	// Those still on their way stay here; one that stops after this finds
	// itself out and goes on.
	for _, c := range asked {
		if c.park.CompareAndSwap(parkAsked, parkOut) {
			r.arrive(nil)
		}
	}
	r.mu.Lock()
	parked := r.parked
	r.mu.Unlock()
	// In the order they were accepted, for a stable handoff.
	sort.Slice(parked, func(i, j int) bool { return parked[i].id < parked[j].id })
	for _, c := range parked {
		fd, err := connFD(c.conn)
		if err == nil {
			var env state.Envelope
			env, err = state.Encode(state.KindHTTPConn, state.HTTPConn{ID: c.id, Peer: c.remote, Unread: c.unread, Fresh: c.fresh})
			if err == nil {
				p.Items = append(p.Items, ParkedConn{Envelope: env, Borrowed: []int{fd}})
				continue
			}
		}
		p.Resume()
		return nil, fmt.Errorf("park HTTP connection %s: %w", c.remote, err)
	}
	return p, nil
}

// connFD is the descriptor of c's socket, without File(), which would
// duplicate it.
func connFD(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, errors.New("no descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return 0, err
	}
	return fd, nil
}

// Resume rolls back: every parked connection goes on here, its cut-short
// request answered here, and accepting resumes.
func (p *ParkedConns) Resume() { p.decide(true) }

// Commit lets go of the parked connections: the new process has them.
// Each is closed here without a word (the new process holds its own
// descriptor, so the client sees nothing); this process accepts no more.
func (p *ParkedConns) Commit() { p.decide(false) }

func (p *ParkedConns) decide(resume bool) {
	if p.done {
		return
	}
	p.done = true
	s, r := p.s, p.round
	s.mu.Lock()
	r.resume = resume
	if resume {
		for ln := range s.lns {
			if d, ok := ln.(interface{ SetDeadline(time.Time) error }); ok {
				_ = d.SetDeadline(time.Time{})
			}
		}
		s.round = nil
	} else {
		// This process's copies of the listeners close now, not when the
		// Serve loops next run: from here on only the new process accepts.
		s.moved = true
		for ln := range s.lns {
			_ = ln.Close()
		}
	}
	close(r.decided)
	s.mu.Unlock()
	s.signal()
}

// wakeForPark makes a connection waiting for a request, or for a
// blocking answer, come to its park.
func (c *h1conn) wakeForPark() {
	c.cancelWait()
	if st := c.state.Load(); st == connNew || st == connIdle {
		_ = c.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// parkHere stops the connection at a request boundary until the park is
// decided. It reports whether the connection goes on here.
func (c *h1conn) parkHere() bool {
	r := c.round
	c.unread = c.takeUnread()
	c.fresh = c.state.Load() == connNew
	r.arrive(c)
	<-r.decided
	if !r.resume {
		return false
	}
	c.round = nil
	c.park.Store(parkNone)
	c.goOn()
	return true
}

// takeUnread is what the connection read and has not answered: the bytes
// it holds, then those still waiting to be read again.
func (c *h1conn) takeUnread() []byte {
	var b []byte
	if n := c.br.Buffered(); n > 0 || len(c.rest.b) > 0 {
		b = make([]byte, 0, n+len(c.rest.b))
		b = append(b, peekBuffered(c.br)...)
		b = append(b, c.rest.b...)
	}
	return b
}

// goOn readies the connection to serve again after a park that did not
// take it, or in the new process: it reads c.unread before the socket,
// with fresh deadlines and a fresh context.
func (c *h1conn) goOn() {
	c.rest = restReader{b: c.unread, conn: c.conn}
	c.unread = nil
	c.br.Reset(&c.rest)
	c.rdl, c.wdl = time.Time{}, time.Time{}
	c.newContext()
}

// restReader reads b, then the connection: what a connection read before
// a park, read again.
type restReader struct {
	b    []byte
	conn net.Conn
}

func (r *restReader) Read(p []byte) (int, error) {
	if len(r.b) > 0 {
		n := copy(p, r.b)
		r.b = r.b[n:]
		if len(r.b) == 0 {
			r.b = nil
		}
		return n, nil
	}
	return r.conn.Read(p)
}

// requestHead writes r's head again as the client sent it, near enough
// for the server to read it a second time: the request line, Host, and
// every header.
func requestHead(r *http.Request) []byte {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte(' ')
	b.WriteString(r.RequestURI)
	b.WriteByte(' ')
	b.WriteString(r.Proto)
	b.WriteString("\r\n")
	if r.Host != "" {
		b.WriteString("Host: ")
		b.WriteString(r.Host)
		b.WriteString("\r\n")
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// RestoredConns are connections taken over from the old process, not yet
// served. Exactly one of Start or Discard follows.
//
// Restore only decodes: making a net.Conn of a descriptor costs some ten
// system calls (a dup, the socket's type and addresses, keep-alive options,
// the poller), 30 to 80 µs a connection here, and a thousand viewers' two
// connections each would add that to every stream's stall while the
// sessions wait for the commit. Start does it after, off that path.
type RestoredConns struct {
	s     *HTTP1
	conns []restoredConn
	done  bool
}

type restoredConn struct {
	st state.HTTPConn
	f  *os.File
}

// Restore takes a connection's envelope (of the current state version) and
// its descriptor, which it owns from the call on.
func (s *HTTP1) Restore(rc *RestoredConns, env state.Envelope, f *os.File) error {
	var st state.HTTPConn
	if err := state.Decode(env, &st); err != nil {
		f.Close()
		return fmt.Errorf("restore HTTP connection: %w", err)
	}
	s.mu.Lock()
	s.nextID = max(s.nextID, st.ID)
	s.mu.Unlock()
	rc.conns = append(rc.conns, restoredConn{st: st, f: f})
	return nil
}

// NewRestoredConns starts a restore into s.
func (s *HTTP1) NewRestoredConns() *RestoredConns { return &RestoredConns{s: s} }

// Len is the number of connections.
func (rc *RestoredConns) Len() int { return len(rc.conns) }

// Start serves every restored connection: a request that came with one is
// answered first. One goroutine, owned by the server (Shutdown waits for
// it, Close ends it), makes the connections one after another, so that a
// descriptor is never held twice for more than one connection at a time;
// a park waits until it is done.
func (rc *RestoredConns) Start() {
	if rc.done {
		return
	}
	rc.done = true
	s := rc.s
	s.mu.Lock()
	if s.closed || s.draining.Load() || s.opening != nil {
		s.mu.Unlock()
		rc.closeFrom(0)
		return
	}
	done := make(chan struct{})
	s.opening, s.openLeft = done, len(rc.conns)
	s.serving++
	s.mu.Unlock()
	go func() {
		defer func() {
			s.mu.Lock()
			s.opening, s.openLeft = nil, 0
			s.serving--
			s.mu.Unlock()
			close(done)
			s.signal()
		}()
		for i, r := range rc.conns {
			if s.isClosed() || s.draining.Load() {
				rc.closeFrom(i)
				return
			}
			c, err := s.open(r)
			s.mu.Lock()
			s.openLeft--
			if err == nil && !s.closed {
				s.conns[c] = struct{}{}
			} else if err == nil {
				c.conn.Close()
				c = nil
			}
			s.mu.Unlock()
			if err != nil {
				// The viewer dials again, as after a cut connection.
				s.cfg.Log.Warn().Err(err).Str("client", r.st.Peer).Msg("media: a moved connection could not be restored")
				continue
			}
			if c != nil {
				go c.serveRestored()
			}
		}
	}()
}

// open makes a connection of a restored descriptor, which it closes.
func (s *HTTP1) open(r restoredConn) (*h1conn, error) {
	nc, err := net.FileConn(r.f)
	r.f.Close()
	if err != nil {
		return nil, fmt.Errorf("restore HTTP connection %s: %w", r.st.Peer, err)
	}
	if s.cfg.Adopt != nil {
		nc = s.cfg.Adopt(nc)
	}
	c := newH1Conn(s, nc)
	c.id = r.st.ID
	c.unread = r.st.Unread
	if !r.st.Fresh {
		c.state.Store(connIdle)
	}
	return c, nil
}

func (rc *RestoredConns) closeFrom(i int) {
	for _, r := range rc.conns[i:] {
		r.f.Close()
	}
}

// Discard closes the restored connections without a word: the old process
// keeps them.
func (rc *RestoredConns) Discard() {
	if rc.done {
		return
	}
	rc.done = true
	rc.closeFrom(0)
}
