package ingest

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// coalescer makes a publisher's socket wake its session only once about
// Config.ReadCoalesce of media waits in it, so that one wake-up and one
// read carry several messages instead of one. An encoder writes each frame
// as it makes it, about 75 messages a second at 30 fps with AAC, and every
// message was a wake-up of the session goroutine: Go's scheduler, its
// netpoller and sysmon cost as much per wake-up as the read itself (the
// read(2) and writev(2) counts match nginx-rtmp's; the context switches
// were three times its). The mark is the socket's SO_RCVLOWAT, sized from
// the publisher's own rate over the last second, so it follows each
// stream's bitrate.
//
// What it costs is latency: a frame waits at most until the mark is
// reached. A publisher whose rate falls below what its mark was sized for
// would wait longer, so a sweep every ReadCoalesce lowers the mark to one
// byte on every socket not read for twice ReadCoalesce; lowering it makes
// the kernel report the waiting bytes at once. A frame so waits at most
// about three times ReadCoalesce, and ReadCoalesce in steady state.
//
// A socket leaves the process (park) with the mark back at one byte: the
// process that takes it, whatever its build, starts as with any socket.
type coalescer struct {
	srv    *Server
	window time.Duration
	epoch  time.Time // monotonic base of session.readAt

	once sync.Once
	mu   sync.Mutex
	set  map[*session]struct{}
	quit chan struct{}
	// scratch for the sweep, which is its only user.
	stale []*session
}

const (
	// coalesceEvery is how often a publisher's rate, and so its mark, is
	// measured again.
	coalesceEvery = time.Second
	// maxLowat keeps the mark under half the read buffer: the read that
	// the mark wakes takes it and what came meanwhile.
	maxLowat = readBufSize / 2
)

func newCoalescer(srv *Server, window time.Duration) *coalescer {
	if window <= 0 {
		return nil
	}
	return &coalescer{srv: srv, window: window, epoch: time.Now(), set: make(map[*session]struct{}), quit: make(chan struct{})}
}

// account records a read of n bytes by a publishing session, on its
// goroutine inside its read callback (fd is its socket's descriptor), and
// moves the mark once a second.
func (c *coalescer) account(s *session, fd uintptr, n int) {
	now := s.lastRead
	s.readAt.Store(int64(now.Sub(c.epoch)))
	if s.lowered.Swap(false) {
		// The sweep found the rate fallen: measure it afresh, or the
		// second before the fall would raise the mark straight back.
		s.rateFrom, s.rateBytes = now, 0
		return
	}
	if s.rateFrom.IsZero() {
		s.rateFrom = now
		c.add(s)
		return
	}
	s.rateBytes += n
	elapsed := now.Sub(s.rateFrom)
	if elapsed < coalesceEvery {
		return
	}
	want := int(float64(s.rateBytes) * c.window.Seconds() / elapsed.Seconds())
	s.rateFrom, s.rateBytes = now, 0
	want = min(max(want, 1), maxLowat)
	s.lowatMu.Lock()
	defer s.lowatMu.Unlock()
	if s.lowered.Load() {
		// Lowered since this read began: the next read measures afresh.
		return
	}
	cur := int(s.lowat.Load())
	if d := want - cur; d < cur/8 && -d < cur/8 {
		return
	}
	if err := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, want); err != nil {
		// Not a TCP socket, or a kernel without it: read as before.
		s.log.Debug().Err(err).Msg("read coalescing off for this publisher")
		s.coalesceOff = true
		c.forget(s)
		return
	}
	s.lowat.Store(int32(want))
}

// reset puts the mark back at one byte, for a socket about to leave the
// process or a session that stops reading as a publisher. It reports
// whether the mark was above one byte: media may wait below it.
func (c *coalescer) reset(s *session) bool {
	s.lowatMu.Lock()
	defer s.lowatMu.Unlock()
	if s.lowat.Load() <= 1 {
		return false
	}
	// Set before the session joined the sweep, and never changed.
	raw := s.raw
	if raw == nil {
		return false
	}
	if err := markOneByte(raw); err != nil {
		// Closed meanwhile: nothing waits on it any more.
		s.log.Debug().Err(err).Msg("read coalescing: mark not reset")
		return false
	}
	s.lowat.Store(1)
	// The rate is measured afresh before the mark rises again.
	s.rateFrom, s.rateBytes = time.Time{}, 0
	return true
}

// drainBeforePark reads what waited below a publisher's mark, so that
// those frames reach the stream and its viewers before the park instead
// of after the upgrade (which would lengthen every stall by up to the
// coalescing wait). It runs on the session goroutine at its safe point
// and puts the mark back at one byte, so the socket leaves the process as
// it came. A protocol error ends the session, since its bytes are
// consumed; a read error or the peer's close is left for whichever
// process reads next.
func (s *session) drainBeforePark() error {
	c := s.srv.coalesce
	if c == nil || s.role != rolePublisher || !c.reset(s) {
		return nil
	}
	var perr error
	// Control, not Read: the park's read deadline in the past would make
	// Read fail before reading anything.
	_ = s.raw.Control(func(fd uintptr) {
		for {
			n, err := syscall.Read(int(fd), s.rbuf)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				return
			}
			if perr = s.received(s.rbuf[:n]); perr != nil || n < len(s.rbuf) {
				return
			}
		}
	})
	return perr
}

func (c *coalescer) add(s *session) {
	c.once.Do(c.start)
	c.mu.Lock()
	c.set[s] = struct{}{}
	c.mu.Unlock()
}

// forget takes a session out of the sweep: it ended or left the process.
func (c *coalescer) forget(s *session) {
	c.mu.Lock()
	delete(c.set, s)
	c.mu.Unlock()
}

// start runs the sweep, owned by the server: close stops it and Close
// waits for it.
func (c *coalescer) start() {
	srv := c.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return
	}
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		c.run()
	}()
}

func (c *coalescer) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.quit:
	default:
		close(c.quit)
	}
}

func (c *coalescer) run() {
	t := time.NewTicker(c.window)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
		}
		before := int64(time.Since(c.epoch) - 2*c.window)
		stale := c.stale[:0]
		c.mu.Lock()
		for s := range c.set {
			if s.lowat.Load() > 1 && s.readAt.Load() < before {
				stale = append(stale, s)
			}
		}
		c.mu.Unlock()
		for _, s := range stale {
			c.lower(s, before)
		}
		clear(stale)
		c.stale = stale
	}
}

// lower sets a stale session's mark to one byte, unless it was read or
// reset since the sweep looked.
func (c *coalescer) lower(s *session, before int64) {
	s.lowatMu.Lock()
	defer s.lowatMu.Unlock()
	if s.lowat.Load() <= 1 || s.readAt.Load() >= before {
		return
	}
	// Set before the session joined the sweep, and never changed.
	raw := s.raw
	if raw == nil {
		return
	}
	// Recorded first: lowering the mark wakes the session at once, and the
	// read it makes must not raise the mark again from the old rate. If
	// the socket was closed meanwhile, nothing reads it any more.
	s.lowered.Store(true)
	s.lowat.Store(1)
	_ = markOneByte(raw)
}

// markOneByte sets raw's SO_RCVLOWAT back to one byte, the default, which
// makes the kernel report any bytes waiting at once.
func markOneByte(raw syscall.RawConn) error {
	var err error
	if cerr := raw.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	}); cerr != nil {
		return cerr
	}
	return err
}

// coalesceState is a session's part of it: the mark as last set (lowat,
// changed under lowatMu), when it was last read (readAt, nanoseconds
// since the coalescer's epoch), whether the sweep lowered the mark since
// (lowered) and the rate being measured (its goroutine's alone).
type coalesceState struct {
	lowatMu   sync.Mutex
	lowat     atomic.Int32
	readAt    atomic.Int64
	lowered   atomic.Bool
	rateFrom  time.Time
	rateBytes int
}
