package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest/hls"
	"github.com/mediad/mediad/ingest/relay"
	"github.com/mediad/mediad/ingest/webhook"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("ingest: server closed")

// Config sets up a Server. Every zero value means the documented default.
type Config struct {
	// RecordDir is where broadcasts are recorded as
	// <RecordDir>/<APP>/<KEY>/<UTC start>.flv. Empty disables recording.
	RecordDir string
	// SegmentDuration cuts a recording at the first keyframe after this much
	// media time. Zero means one file per broadcast.
	SegmentDuration time.Duration
	// MaxMessageSize bounds one inbound RTMP message; checked before any
	// allocation. Zero means 16 MiB.
	MaxMessageSize uint32
	// HandshakeTimeout bounds the handshake and the connect command. Zero
	// means 10 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a publisher that sends nothing for this long. Zero
	// means 30 s.
	IdleTimeout time.Duration
	// ReadCoalesce lets a publisher's media wait up to about this long in
	// its socket, so that one wake-up reads several messages
	// (coalesce.go). Zero reads every message as it comes.
	ReadCoalesce time.Duration
	// WriteTimeout drops a client whose socket accepts nothing for this long.
	// Zero means 10 s.
	WriteTimeout time.Duration
	// PlayerQueueBytes is how much media may wait for one player before it
	// is skipped ahead to the next keyframe. Zero means 4 MiB.
	PlayerQueueBytes int
	// MaxSkips drops a player after it has been skipped ahead this many
	// times in a row without catching up. Zero means 5.
	MaxSkips int
	// ChunkSize is the outbound chunk size announced to every client. Zero
	// means 4096.
	ChunkSize uint32
	// GOPCacheBytes bounds each stream's GOP cache: the messages since the
	// last keyframe, from which a joining player starts at once instead of
	// waiting for the next keyframe (gopcache.go). A GOP larger than this
	// is not cached. Zero disables the cache.
	GOPCacheBytes int
	// GOPCacheTotalBytes bounds all streams' GOP caches together; a stream
	// whose GOP would pass it caches nothing until its next keyframe. Zero
	// means 256 MiB.
	GOPCacheTotalBytes int64
	// HLSDir is where this process puts the LL-HLS files of the streams it
	// starts; "" turns HLS off. Streams that arrive in an upgrade keep the
	// directory they had.
	HLSDir string
	HLS    hls.Config
	// Auth decides who may publish. Nil allows everyone.
	Auth *Auth
	// Push lists the relay targets (push.go): every live stream of an app
	// a target applies to is published there too.
	Push []relay.Target
	// PushTLS is the base TLS configuration of rtmps targets; nil means
	// the system's roots. The server name always comes from the URL.
	PushTLS *tls.Config
	// Hooks calls the webhooks (hooks.go); nil calls none. The caller
	// owns it: starts it, hands its outbox over in an upgrade, closes it.
	Hooks *webhook.Hooks
	// Logger receives one line per session event. The zero Logger is silent.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 16 << 20
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PlayerQueueBytes == 0 {
		c.PlayerQueueBytes = 4 << 20
	}
	if c.MaxSkips == 0 {
		c.MaxSkips = 5
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = 4096
	}
	if c.GOPCacheTotalBytes == 0 {
		c.GOPCacheTotalBytes = 256 << 20
	}
}

// Server accepts RTMP connections and runs one session per connection.
type Server struct {
	cfg      Config
	log      zerolog.Logger
	registry *Registry

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	closed    bool
	stopping  bool
	// While parked for an upgrade no Serve loop accepts; acceptGate
	// closes when they may go on.
	parked          bool
	acceptGate      chan struct{}
	acceptCond      *sync.Cond
	acceptorsPaused int
	// moved closes when a Park is committed: the streams now live in the
	// new process, and HTTP-FLV requests waiting for the park to end are
	// turned away (httpflv.go).
	moved     chan struct{}
	movedOnce sync.Once

	stallMu sync.Mutex
	stalls  []time.Duration

	nextID atomic.Uint64
	// hangups reports publishers' closes (hangup.go).
	hangups *hangups
	// coalesce sizes publishers' read marks (coalesce.go); nil when off.
	coalesce *coalescer
	// Totals over the service's life, carried across upgrades.
	bytesIn, bytesOut, accepted atomic.Uint64
}

// Totals counts what the service moved over RTMP since it first started.
type Totals struct {
	BytesIn  uint64 // read from clients
	BytesOut uint64 // written to clients
	Sessions uint64 // connections accepted
}

// Totals returns the service's totals so far.
func (s *Server) Totals() Totals {
	return Totals{BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(), Sessions: s.accepted.Load()}
}

// AddTotals adds the totals of the processes before this one, so that
// counters continue across upgrades.
func (s *Server) AddTotals(t Totals) {
	s.bytesIn.Add(t.BytesIn)
	s.bytesOut.Add(t.BytesOut)
	s.accepted.Add(t.Sessions)
}

// NewServer returns a server ready to Serve listeners.
func NewServer(cfg Config) *Server {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		registry:  newRegistry(int64(cfg.GOPCacheBytes), cfg.GOPCacheTotalBytes),
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
		moved:     make(chan struct{}),
	}
	s.acceptCond = sync.NewCond(&s.mu)
	s.hangups = newHangups(s)
	s.coalesce = newCoalescer(s, cfg.ReadCoalesce)
	return s
}

// Registry is the server's stream registry.
func (s *Server) Registry() *Registry { return s.registry }

// Serve accepts connections on ln until Close. It always returns a non-nil
// error; after Close it is ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			if !s.acceptPaused(ln) {
				return ErrServerClosed
			}
			if s.wasPauseWake(err) {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				s.mu.Lock()
				stopping := s.stopping
				s.mu.Unlock()
				if stopping {
					return ErrServerClosed
				}
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			// Running out of fds or memory passes; the listener stays and
			// the kernel keeps queueing connections meanwhile.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		s.accepted.Add(1)
		s.startSession(c)
	}
}

func (s *Server) startSession(c net.Conn) {
	sess := newSession(s, c, s.nextID.Add(1))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		sess.run()
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
	}()
}

// wasPauseWake reports a timeout: the deadline Park sets to wake Accept,
// which no real accept error resembles.
func (s *Server) wasPauseWake(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Close stops accepting, closes every connection and waits for every
// session to finish, finalising recordings. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	s.cancel()
	s.acceptCond.Broadcast()
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for sess := range s.sessions {
		sess.conn.Close()
	}
	s.mu.Unlock()
	s.hangups.close()
	if s.coalesce != nil {
		s.coalesce.close()
	}
	s.wg.Wait()
	// Files of broadcasts that ended go now; those of streams that moved
	// belong to the new process.
	s.registry.closePast()
	return errors.Join(errs...)
}

func (s *Server) recordStall(d time.Duration) {
	s.stallMu.Lock()
	s.stalls = append(s.stalls, d)
	s.stallMu.Unlock()
}

// Stalls returns the stalls measured since the last restore: for each
// moved session, the time from the old process's last read to the first
// read here.
func (s *Server) Stalls() []time.Duration {
	s.stallMu.Lock()
	defer s.stallMu.Unlock()
	return append([]time.Duration(nil), s.stalls...)
}

// SessionCount is the number of connections being served.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}
