package ingest

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/handshake"
	"github.com/mediad/mediad/state"
)

// Outbound chunk stream ids. Every message opens with a format-0 header, so
// the choice only keeps kinds apart for readers of a capture.
const (
	csidControl = 2
	csidCommand = 3
	csidAudio   = 4
	csidData    = 5
	csidVideo   = 6
)

// readBufSize is the per-connection read buffer. Small on purpose: the
// kernel socket buffer does the queueing, and an idle buffer per publisher
// is memory the server pays a thousand times over.
const readBufSize = 8 << 10

// errClosedByPeer marks an orderly end of a connection.
var errClosedByPeer = errors.New("connection closed by peer")

// errResponseComplete ends an HTTP-FLV viewer whose stream has ended, once
// everything queued for it has been written.
var errResponseComplete = errors.New("stream ended and response complete")

// role says what a connection is doing once connected.
type role uint8

const (
	roleNone role = iota
	rolePublisher
	rolePlayer
	// roleFLVPlayer is an HTTP-FLV viewer (httpflv.go): a player from its
	// first byte on, with no RTMP around its queue.
	roleFLVPlayer
	// roleRelay is a push relay (push.go): a connection we dialled to a
	// downstream server, publishing one of our streams there.
	roleRelay
)

// session owns one client connection. Its goroutine (run) is the only reader
// of the connection and the only one to touch the protocol state; writes are
// serialised by wmu because a player's fan-out writer shares the socket.
type session struct {
	srv  *Server
	conn net.Conn
	id   uint64
	log  zerolog.Logger

	hs handshake.Server
	r  *chunk.Reader

	wmu     sync.Mutex
	w       *chunk.Writer
	wbuf    []byte
	wclosed bool
	// wv and wcur are writeLocked's vector, reused.
	wv, wcur net.Buffers
	// wdl is the write deadline this process set last (armWriteDeadline);
	// zero when it must be set again. Guarded by wmu.
	wdl time.Time

	connected bool
	app       string
	tcURL     string
	flashVer  string
	nextMsid  uint32

	// Acknowledgement: the peer's window and the byte count last acked.
	ackWindow uint32
	lastAck   uint64

	role role
	// roleA mirrors role for Park, which reads it from another goroutine.
	roleA    atomic.Uint32
	pubMsid  uint32
	stream   *Stream // published or played stream
	player   *player
	lastRead time.Time

	// Parking for a live upgrade (park.go). out and parking are guarded
	// by wmu.
	out     []byte
	parking bool
	parkReq atomic.Pointer[parkRequest]
	// base is the static part Presend sends ahead of a park, nil but
	// while the session publishes or plays over RTMP (presend.go).
	base    atomic.Pointer[sessionBase]
	stopReq atomic.Int64 // graceful stop: deadline in Unix ns, 0 if none
	// complete: an HTTP-FLV viewer's writer has written the last of an
	// ended stream; the session goroutine closes the connection.
	complete atomic.Bool
	// rbuf is the read buffer, allocated with the session so that a
	// restored session's first read does not wait on the allocator.
	rbuf []byte
	// rdl is what the read deadline is known to be (armReadDeadline);
	// the session goroutine's.
	rdl uint8
	// raw is conn's descriptor for readPublishing, looked up once
	// (rawChecked).
	raw        syscall.RawConn
	rawChecked bool
	// readFn is readCallback, bound once; rdPerr and rdErr carry its
	// protocol and read errors out of RawConn.Read.
	readFn        func(uintptr) bool
	rdPerr, rdErr error
	// hup: the peer has closed (hangups). hupWatched: the server's
	// hang-up set holds this publisher's socket, so a short read need not
	// be followed by one more; hupChecked: that was decided.
	hup                    atomic.Bool
	hupWatched, hupChecked bool
	// Read coalescing (coalesce.go); coalesceOff: the socket refused it.
	coalesceState
	coalesceOff bool
	done        chan struct{}
	// stallFrom is the old process's last read, for a restored session
	// until its first read here.
	stallFrom time.Time
	// firstRead, if set, is called at the restored session's first read.
	firstRead func()

	// A relay's target (push.go); relayState holds a restored relay's
	// counters until its link takes them. tlsRelay: the connection is TLS,
	// so it never parks (its keys cannot move).
	push       *pushLink
	relayState *state.Relay
	tlsRelay   bool
	// restoredRec: a publisher restored with its recording open, which
	// ParkFDs counts whatever this process's configuration says.
	restoredRec bool
	// movedOut is set once the session has been handed to a new process;
	// endErr is why it ended otherwise. Both are read after done closes.
	movedOut atomic.Bool
	endErr   error
	// written counts bytes written to the connection.
	written atomic.Uint64

	// A publish or play waiting for its webhook (hooks.go): pending is
	// the session goroutine's, decided is how the answer comes back.
	// resumeDecision is one that came from an old process, to ask again.
	pending        *decision
	decided        atomic.Pointer[decision]
	resumeDecision *state.PendingCommand
	// playQuery is the query of a play, for on_play_done.
	playQuery string
}

func newSession(srv *Server, c net.Conn, id uint64) *session {
	return &session{
		srv:      srv,
		conn:     c,
		id:       id,
		log:      srv.log.With().Uint64("session", id).Str("peer", c.RemoteAddr().String()).Logger(),
		r:        chunk.NewReader(srv.cfg.MaxMessageSize),
		w:        chunk.NewWriter(),
		nextMsid: 1,
		rbuf:     make([]byte, readBufSize),
		done:     make(chan struct{}),
	}
}

// run serves the connection until it ends, then releases everything the
// session holds: its stream, its player, its socket.
func (s *session) run() {
	defer close(s.done)
	err := s.serve()
	s.endErr = err
	if s.hupWatched {
		s.srv.hangups.forget(s, s.raw)
	}
	if c := s.srv.coalesce; c != nil {
		c.forget(s)
	}
	if errors.Is(err, errMoved) {
		// The new process owns the connection now: no goodbyes, no
		// unpublish, nothing written.
		return
	}
	s.teardown()
	switch {
	case err == nil, errors.Is(err, errClosedByPeer), errors.Is(err, errResponseComplete):
		s.log.Info().Str("role", s.role.String()).Msg("connection closed")
	case errors.Is(err, errShutdown):
		s.log.Info().Str("role", s.role.String()).Msg("connection closed by graceful stop")
	case errors.Is(err, net.ErrClosed) && s.srv.ctx.Err() != nil:
		s.log.Info().Str("role", s.role.String()).Msg("connection closed by server shutdown")
	default:
		s.log.Warn().Err(err).Str("role", s.role.String()).Str("phase", s.phase()).Msg("connection dropped")
	}
}

func (s *session) setRole(r role) {
	s.role = r
	s.roleA.Store(uint32(r))
}

func (r role) String() string {
	switch r {
	case rolePublisher:
		return "publisher"
	case rolePlayer:
		return "player"
	case roleFLVPlayer:
		return "flv-player"
	case roleRelay:
		return "relay"
	}
	return "none"
}

func (s *session) phase() string {
	switch {
	case s.role == roleFLVPlayer:
		return s.role.String()
	case !s.hs.Done():
		return "handshake"
	case !s.connected:
		return "connect"
	}
	return s.role.String()
}

func (s *session) serve() error {
	if err := s.flushOut(); err != nil {
		return err
	}
	if pc := s.resumeDecision; pc != nil {
		s.resumeDecision = nil
		s.startDecision(pc.Play, pc.Msid, pc.Name)
	}
	buf := s.rbuf
	for {
		if err := s.armReadDeadline(); err != nil {
			return err
		}
		// The flag is checked after the deadline is set: a park request
		// sets the flag first and a deadline in the past second, so either
		// this check sees it or the read below returns at once. Each
		// branch leaves the deadline to be set again: the request's past
		// one may still stand.
		if s.stopReq.Load() != 0 {
			return s.stop()
		}
		if s.complete.Load() {
			return errResponseComplete
		}
		if s.parkReq.Load() != nil {
			s.rdl = rdlUnknown
			if perr := s.drainBeforePark(); perr != nil {
				return perr
			}
			if !s.park() {
				return errMoved
			}
			continue
		}
		if d := s.decided.Swap(nil); d != nil {
			s.rdl = rdlUnknown
			if err := s.finishDecision(d); err != nil {
				return err
			}
			continue
		}
		var n int
		var err error
		if raw := s.rawConn(); raw != nil && s.role == rolePublisher && s.rdl == rdlIdle {
			var perr error
			if perr, err = s.readPublishing(raw); perr != nil {
				return perr
			}
		} else {
			n, err = s.conn.Read(buf)
		}
		if n > 0 {
			if perr := s.received(buf[:n]); perr != nil {
				return perr
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.rdl = rdlUnknown
				if s.parkReq.Load() != nil || s.stopReq.Load() != 0 || s.complete.Load() || s.decided.Load() != nil || s.hup.Load() {
					continue
				}
				if s.role == rolePublisher && time.Since(s.lastRead) < s.srv.cfg.IdleTimeout {
					// The idle deadline is set once and moved only when it
					// passes (armReadDeadline): the publisher has sent
					// something since, so it is not idle yet.
					continue
				}
			}
			// ffmpeg ends with a reset when our last replies are unread: for
			// a player, or after a clean unpublish, that is an orderly close.
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) && s.role != rolePublisher {
				return errClosedByPeer
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("%s timed out: %w", s.phase(), err)
			}
			return fmt.Errorf("read: %w", err)
		}
	}
}

// received accounts for bytes just read and runs the protocol over them.
func (s *session) received(p []byte) error {
	s.srv.bytesIn.Add(uint64(len(p)))
	now := time.Now()
	if !s.stallFrom.IsZero() {
		s.srv.recordStall(now.Sub(s.stallFrom))
		s.stallFrom = time.Time{}
		if f := s.firstRead; f != nil {
			s.firstRead = nil
			f()
		}
		// Every restored session has a backlog the upgrade made; let the
		// others read once before this one works through its own, so that
		// no connection waits for the others' catching up to be read again.
		runtime.Gosched()
	}
	s.lastRead = now
	return s.consume(p)
}

// rawConn is the connection's descriptor for readPublishing, nil when it
// has none (TLS, a pipe in a test).
func (s *session) rawConn() syscall.RawConn {
	if !s.rawChecked {
		s.rawChecked = true
		s.raw = rawConnOf(s.conn)
	}
	return s.raw
}

// rawConnOf is c's descriptor for reads and writes made by hand, nil when
// it has none (TLS, a pipe in a test).
func rawConnOf(c net.Conn) syscall.RawConn {
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			return raw
		}
	}
	return nil
}

// readPublishing reads and handles a publisher's media until a read fills
// the buffer, the protocol fails (perr), the connection does (err), or
// something asks the session to stop reading. The bytes are handled in the
// read's callback, with no copy and no wake-up between the read and the
// protocol. Its callback runs with the descriptor's read lock held, so
// nothing it calls may close this connection (Close would wait for the
// lock); consume closes only others.
func (s *session) readPublishing(raw syscall.RawConn) (perr, err error) {
	if s.readFn == nil {
		// Made once: a closure made per call would be allocated per read.
		s.readFn = s.readCallback
	}
	if !s.hupChecked {
		s.hupChecked = true
		s.hupWatched = s.srv.hangups.watch(s, raw)
	}
	s.rdPerr, s.rdErr = nil, nil
	err = raw.Read(s.readFn)
	perr = s.rdPerr
	if s.rdErr != nil {
		err = s.rdErr
	}
	s.rdPerr, s.rdErr = nil, nil
	return perr, err
}

// readCallback is readPublishing's RawConn.Read callback: it reports
// whether to return (true) or wait for the descriptor to be readable.
//
// After a read shorter than the buffer, which took everything there was,
// whether the peer closed after those bytes only the next read tells, or
// the server's hang-up set (hangups): Go's poller keeps one readiness
// token for data and the peer's FIN alike, so a FIN that came with the
// last bytes wakes nothing more, and a session that waited instead of
// reading saw its publisher's close only at the idle timeout (its
// encoder, dialling again, was refused meanwhile: the stream was still
// published). A watched session waits unless the set reported the FIN;
// one that is not watched reads until EAGAIN.
func (s *session) readCallback(fd uintptr) bool {
	buf := s.rbuf
	for {
		var n int
		var rerr error
		for {
			n, rerr = syscall.Read(int(fd), buf)
			if rerr != syscall.EINTR {
				break
			}
		}
		switch {
		case rerr == syscall.EAGAIN:
			return false
		case rerr != nil:
			s.rdErr = os.NewSyscallError("read", rerr)
			return true
		case n == 0:
			s.rdErr = io.EOF
			return true
		}
		if s.rdPerr = s.received(buf[:n]); s.rdPerr != nil {
			return true
		}
		if c := s.srv.coalesce; c != nil && !s.coalesceOff {
			c.account(s, fd, n)
		}
		if n == len(buf) || s.role != rolePublisher || s.rdl != rdlIdle {
			// More may wait, or the session changed what it reads for.
			return true
		}
		if s.hupWatched && !s.hup.Load() {
			// Everything there was; the hang-up set wakes us for a FIN.
			return false
		}
		// Whoever sets one of these flags sets a read deadline in the past
		// after it, which ends a wait.
		if s.parkReq.Load() != nil || s.stopReq.Load() != 0 || s.complete.Load() || s.decided.Load() != nil {
			return true
		}
	}
}

// What the connection's read deadline is known to be (session.rdl).
const (
	// rdlUnknown: set it before the next read; something may have moved
	// it (a park, a stop or a webhook's answer sets one in the past).
	rdlUnknown uint8 = iota
	// rdlNone: none is set.
	rdlNone
	// rdlIdle: a publisher's idle deadline is set, at most IdleTimeout
	// after the read that set it.
	rdlIdle
)

// armReadDeadline sets when a silent peer is given up on, which depends on
// what it is expected to send next. Setting a deadline moves a runtime
// timer, so it is set only when it changes: a publisher's idle deadline
// is set once and moved forward only when it passes (serve), instead of
// at every read; a connection that may be silent has none, set once.
func (s *session) armReadDeadline() error {
	var want uint8
	var at time.Time
	switch {
	case s.role == roleFLVPlayer, s.role == roleRelay:
		// A viewer owes us nothing after its request, a downstream
		// nothing while we publish.
		want = rdlNone
	case !s.hs.Done() || !s.connected:
		// Set at every read, as the handshake's few reads come.
		want, at = rdlUnknown, time.Now().Add(s.srv.cfg.HandshakeTimeout)
	case s.role == rolePublisher:
		if s.rdl == rdlIdle {
			return nil
		}
		want = rdlIdle
		now := time.Now()
		at = now.Add(s.srv.cfg.IdleTimeout)
		if last := s.lastRead.Add(s.srv.cfg.IdleTimeout); !s.lastRead.IsZero() && last.After(now) {
			// The deadline passed early (serve): IdleTimeout after the
			// last read, exactly.
			at = last
		}
	default:
		// Players and idle connections owe us nothing; writes have their
		// own deadline.
		want = rdlNone
	}
	if want != rdlUnknown && want == s.rdl {
		return nil
	}
	if err := s.conn.SetReadDeadline(at); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
	}
	s.rdl = want
	return nil
}

// consume runs the protocol over bytes just read.
func (s *session) consume(p []byte) error {
	if s.role == roleFLVPlayer {
		// An HTTP-FLV viewer is read only to notice it closing: what it
		// sends after its request is dropped, never buffered.
		return nil
	}
	if !s.hs.Done() {
		n, reply, err := s.hs.Feed(p, rand.Reader, uint32(time.Now().UnixMilli()))
		if err != nil {
			return fmt.Errorf("malformed handshake: %w", err)
		}
		if reply != nil {
			if err := s.writeRaw(reply); err != nil {
				return fmt.Errorf("handshake reply: %w", err)
			}
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
	if err := s.r.Feed(p, s.handle); err != nil {
		return err
	}
	return s.maybeAck()
}

// maybeAck acknowledges received bytes once the peer's window is reached.
func (s *session) maybeAck() error {
	read := s.r.BytesRead()
	p, due := chunk.AckDue(read, s.lastAck, s.ackWindow)
	if !due {
		return nil
	}
	s.lastAck = read
	return s.send(csidControl, chunk.TypeAck, 0, 0, p[:])
}

// handle dispatches one complete inbound message.
func (s *session) handle(m *chunk.Message) error {
	switch m.TypeID {
	case chunk.TypeSetChunkSize, chunk.TypeAbort, chunk.TypeAck:
		// The chunk reader applied the first two; acks of our output need
		// no action.
		return nil
	case chunk.TypeWindowAckSize:
		if len(m.Payload) < 4 {
			return fmt.Errorf("window acknowledgement size: %d-byte payload", len(m.Payload))
		}
		s.ackWindow = binary.BigEndian.Uint32(m.Payload)
		return nil
	case chunk.TypeSetPeerBandwidth:
		return nil
	case chunk.TypeUserControl:
		return s.handleUserControl(m.Payload)
	case chunk.TypeCommandAMF0, chunk.TypeCommandAMF3:
		if s.role == roleRelay {
			return s.relayCommand(m)
		}
		return s.handleCommand(m)
	case chunk.TypeDataAMF0, chunk.TypeDataAMF3:
		return s.handleData(m)
	case chunk.TypeAudio, chunk.TypeVideo:
		return s.handleMedia(m)
	case chunk.TypeAggregate:
		return s.handleAggregate(m)
	}
	s.log.Debug().Uint8("type", m.TypeID).Msg("ignoring message of unknown type")
	return nil
}

// User control event types (RTMP §7.1.7).
const (
	ucStreamBegin      = 0
	ucStreamEOF        = 1
	ucStreamDry        = 2
	ucSetBufferLength  = 3
	ucStreamIsRecorded = 4
	ucPingRequest      = 6
	ucPingResponse     = 7
)

func (s *session) handleUserControl(p []byte) error {
	if len(p) < 2 {
		return fmt.Errorf("user control: %d-byte payload", len(p))
	}
	if binary.BigEndian.Uint16(p) == ucPingRequest {
		if len(p) < 6 {
			return fmt.Errorf("ping request: %d-byte payload", len(p))
		}
		return s.userControl(ucPingResponse, binary.BigEndian.Uint32(p[2:]))
	}
	return nil
}

func (s *session) userControl(event uint16, value uint32) error {
	var p [6]byte
	binary.BigEndian.PutUint16(p[:], event)
	binary.BigEndian.PutUint32(p[2:], value)
	return s.send(csidControl, chunk.TypeUserControl, 0, 0, p[:])
}

// send frames and writes one message now. For players the fan-out writer
// shares the socket, so this takes the write lock.
func (s *session) send(csid uint32, typ uint8, msid, ts uint32, payload []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wbuf = s.w.Append(s.wbuf[:0], &chunk.Message{CSID: csid, TypeID: typ, StreamID: msid, Timestamp: ts, Payload: payload})
	return s.writeLocked(net.Buffers{s.wbuf})
}

func (s *session) writeRaw(p []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(net.Buffers{p})
}

// flushOut writes output left over from a park.
func (s *session) flushOut() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// A park leaves a write deadline in the past: set it again.
	s.wdl = time.Time{}
	if len(s.out) == 0 {
		return nil
	}
	return s.writeLocked(nil)
}

// writeLocked writes bufs after any output left from before. While the
// session is parking nothing reaches the socket: bytes join s.out, which
// travels with the session. A write cut short by a park keeps its unwritten
// tail in s.out, so the stream of chunks stays whole whichever process
// writes the rest.
func (s *session) writeLocked(bufs net.Buffers) error {
	return s.writeLockedRetry(bufs, true)
}

func (s *session) writeLockedRetry(bufs net.Buffers, retry bool) error {
	if s.wclosed {
		return net.ErrClosed
	}
	if s.parking {
		for _, b := range bufs {
			s.out = append(s.out, b...)
		}
		return nil
	}
	if err := s.armWriteDeadline(); err != nil {
		return err
	}
	if s.parkReq.Load() != nil {
		// A park request's deadline in the past may have been replaced
		// just now: keep the bytes for whichever process writes next.
		for _, b := range bufs {
			s.out = append(s.out, b...)
		}
		return nil
	}
	// The vector is the session's, so that nothing is allocated per
	// write: WriteTo consumes s.wcur, s.wv keeps the array.
	wv := s.wv[:0]
	if len(s.out) > 0 {
		wv = append(wv, s.out)
	}
	wv = append(wv, bufs...)
	s.wv, s.wcur = wv, wv
	n, err := s.wcur.WriteTo(s.conn)
	s.srv.bytesOut.Add(uint64(n))
	s.written.Add(uint64(n))
	if err == nil {
		s.out = s.out[:0]
		clear(s.wv)
		return nil
	}
	var rest []byte
	for _, b := range s.wcur {
		rest = append(rest, b...)
	}
	clear(s.wv)
	s.wcur = nil
	s.out = rest
	if (s.parking || s.parkReq.Load() != nil) && errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if retry && errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(s.wdl) {
		// Not the deadline we set: one in the past that a park left
		// behind when it resumed. Set ours and write the rest.
		s.wdl = time.Time{}
		return s.writeLockedRetry(nil, false)
	}
	return fmt.Errorf("write: %w", err)
}

// armWriteDeadline keeps a write deadline at least WriteTimeout ahead,
// moving it (and the runtime timer behind it) only when less is left:
// a write that blocks fails after WriteTimeout to 1.25 × WriteTimeout,
// and a player written to 50 times a second moves its timer every
// quarter of WriteTimeout instead of at every write. wmu is held.
func (s *session) armWriteDeadline() error {
	now := time.Now()
	wt := s.srv.cfg.WriteTimeout
	if s.wdl.Sub(now) >= wt {
		return nil
	}
	at := now.Add(wt + wt/4)
	if err := s.conn.SetWriteDeadline(at); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	s.wdl = at
	return nil
}

// responseComplete tells the session goroutine, which owns the
// connection, that an HTTP-FLV viewer has been sent the last of its
// stream. The flag comes first, the deadline second: see serve.
func (s *session) responseComplete() {
	s.complete.Store(true)
	_ = s.conn.SetReadDeadline(time.Unix(1, 0))
}

// setChunkSize announces and applies our outbound chunk size.
func (s *session) setChunkSize(n uint32) error {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], n)
	if err := s.send(csidControl, chunk.TypeSetChunkSize, 0, 0, p[:]); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.w.SetChunkSize(n)
}

// teardown releases the session's stream role and closes the socket. The
// socket is closed last so that goodbye messages queued for a player are
// not cut short by our own hand.
func (s *session) teardown() {
	s.dropDecision()
	switch s.role {
	case rolePublisher:
		s.stream.unpublish(s)
	case rolePlayer, roleFLVPlayer, roleRelay:
		s.stream.removePlayer(s.player)
		s.player.stop()
		if s.role != roleRelay {
			s.playDone()
		}
	}
	s.wmu.Lock()
	s.wclosed = true
	s.wmu.Unlock()
	s.conn.Close()
}
