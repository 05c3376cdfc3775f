package ingest

// Push relays: for each live stream and each configured target, mediad
// connects to a downstream server as an RTMP client, publishes, and
// forwards the stream. A relay is a player in all but its direction of
// connect: the same fan-out queue (player.go), which drops whole GOPs when
// the target is slow, the same park, export and restore for an upgrade.
// What differs is who dialled: a pushLink per target owns the dialling, the
// reconnecting with backoff and the counters, and outlives each connection.
//
// Across an upgrade a connected plain-RTMP relay moves like a publisher
// (state.KindRelay): the downstream never sees a reconnect. A relay still
// connecting, and a TLS relay, whose session keys cannot move, stay out of
// the park; they are closed when the stream is handed over, and the new
// process connects afresh from the next keyframe. After a rollback
// everything carries on here untouched.
//
// Lock order: Stream.mu before pushLink.mu; a link never takes its
// stream's lock while holding its own.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/handshake"
	"github.com/mediad/mediad/ingest/relay"
	"github.com/mediad/mediad/state"
)

// Relay states, as /api/streams shows them.
const (
	relayConnecting = "connecting"
	relayConnected  = "connected"
	relayBackoff    = "backoff"
	relayStopped    = "stopped"
)

// Reconnect backoff after a target drops or refuses.
const (
	relayBackoffMin = time.Second
	relayBackoffMax = 30 * time.Second
)

// relayDialTimeout bounds one connect: TCP, TLS, handshake and the publish
// exchange.
const relayDialTimeout = 10 * time.Second

// RelayInfo describes one push target of a stream for the admin API.
type RelayInfo struct {
	URL        string    `json:"url"`
	State      string    `json:"state"`
	TLS        bool      `json:"tls"`
	BytesOut   uint64    `json:"bytes_out"`
	Drops      uint64    `json:"drops"`
	Reconnects uint64    `json:"reconnects"`
	LastError  string    `json:"last_error,omitempty"`
	Connected  time.Time `json:"connected,omitzero"`
}

// pushLink is one target of one live stream, for as long as the broadcast
// lasts in this process.
type pushLink struct {
	srv *Server
	st  *Stream
	url string
	ep  relay.Endpoint
	log zerolog.Logger

	ctx    context.Context // ends the dial in progress and the backoff
	cancel context.CancelFunc
	done   chan struct{}

	// mu is taken after Stream.mu, never before it: a move to a new
	// process and the stream list reach the links with the stream locked
	// (movePushLocked, relayInfoLocked).
	mu         sync.Mutex
	state      string
	sess       *session // the connection, once published
	bytesBase  uint64   // written by earlier connections
	dropsBase  uint64
	reconnects uint64
	lastErr    string
	connected  time.Time
	// ending: the broadcast ended; the relay writes what is queued and
	// does not reconnect. moved: the stream went to a new process; a
	// parked connection is not ours to close any more.
	ending, moved bool
}

// startPush starts the stream's relays, one per configured target that
// applies to its app. adopted holds relays restored from an old process,
// by URL: each is taken by the link of its URL; one whose target is no
// longer configured (a reload removed it) is closed.
func (st *Stream) startPush(srv *Server, adopted map[string]*session) {
	seen := make(map[string]bool)
	var links []*pushLink
	for _, t := range srv.cfg.Push {
		if !t.Applies(st.App) {
			continue
		}
		u := t.Expand(st.App, st.Key)
		if seen[u] {
			continue
		}
		seen[u] = true
		ep, err := relay.ParseEndpoint(u)
		if err != nil {
			// Validated at config load; an app or key can still make a
			// URL that does not parse.
			st.log.Error().Err(err).Str("url", u).Msg("relay: target URL does not parse for this stream; not pushed")
			continue
		}
		l := &pushLink{srv: srv, st: st, url: u, ep: ep, state: relayConnecting, done: make(chan struct{}),
			log: st.log.With().Str("relay", u).Logger()}
		l.ctx, l.cancel = context.WithCancel(srv.ctx)
		if sess := adopted[u]; sess != nil {
			delete(adopted, u)
			l.adopt(sess)
		}
		links = append(links, l)
	}
	for u, sess := range adopted {
		st.log.Info().Str("relay", u).Msg("relay target no longer configured: closing the relay")
		sess.conn.Close()
	}
	if len(links) == 0 {
		return
	}
	st.mu.Lock()
	if st.publisher == nil {
		// The broadcast ended before its relays started (a restored stream
		// whose publisher left at once): nothing to push.
		st.mu.Unlock()
		for _, l := range links {
			if l.sess != nil {
				l.sess.conn.Close()
			}
			l.cancel()
		}
		return
	}
	st.push = append(st.push, links...)
	st.mu.Unlock()
	for _, l := range links {
		srv.mu.Lock()
		if srv.closed {
			srv.mu.Unlock()
			l.cancel()
			close(l.done)
			continue
		}
		srv.wg.Add(1)
		srv.mu.Unlock()
		go func() {
			defer srv.wg.Done()
			l.run()
		}()
	}
}

// endPush tells the stream's relays that the broadcast ended: each writes
// what is queued for it and closes. st.mu is held.
func (st *Stream) endPushLocked() {
	for _, l := range st.push {
		l.end()
	}
	st.push = nil
}

// movePushLocked lets go of the stream's relays when the stream moves to a
// new process: parked connections are the new process's, the rest (TLS,
// connecting) are closed here. st.mu is held.
func (st *Stream) movePushLocked() {
	for _, l := range st.push {
		l.mu.Lock()
		l.moved = true
		l.mu.Unlock()
		l.cancel()
	}
	st.push = nil
}

// relayInfoLocked describes the stream's relays; st.mu is held.
func (st *Stream) relayInfoLocked() []RelayInfo {
	if len(st.push) == 0 {
		return nil
	}
	out := make([]RelayInfo, len(st.push))
	for i, l := range st.push {
		out[i] = l.info()
	}
	return out
}

func (l *pushLink) info() RelayInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	ri := RelayInfo{URL: l.url, State: l.state, TLS: l.ep.TLS, BytesOut: l.bytesBase, Drops: l.dropsBase,
		Reconnects: l.reconnects, LastError: l.lastErr, Connected: l.connected}
	if l.sess != nil {
		ri.BytesOut += l.sess.written.Load()
		ri.Drops += l.sess.player.dropCount()
	}
	return ri
}

// adopt takes a relay restored from an old process, with its counters.
func (l *pushLink) adopt(sess *session) {
	rs := sess.relayState
	sess.relayState = nil
	sess.push = l
	l.sess = sess
	l.state = relayConnected
	if rs != nil {
		l.bytesBase = rs.BytesOut
		l.dropsBase = rs.Drops
		l.reconnects = rs.Reconnects
		l.lastErr = rs.LastError
		if rs.Connected != 0 {
			l.connected = time.Unix(0, rs.Connected)
		}
	}
}

// end: the broadcast is over. A connected relay finishes its queue, then
// its session closes the connection; a dial or backoff in progress stops.
func (l *pushLink) end() {
	l.mu.Lock()
	l.ending = true
	sess := l.sess
	l.mu.Unlock()
	if sess != nil {
		// Not cancelled: that would cut the connection before the last
		// frames are written.
		sess.player.endOfStream()
		return
	}
	l.cancel()
}

// run connects, waits for the connection to end, and reconnects after a
// backoff, until the broadcast ends or moves.
func (l *pushLink) run() {
	defer close(l.done)
	defer l.cancel()
	backoff := relayBackoffMin
	for {
		l.mu.Lock()
		sess := l.sess
		l.mu.Unlock()
		if sess == nil {
			var err error
			sess, err = l.connect()
			if err != nil {
				if l.finished() {
					l.setStopped()
					return
				}
				l.failed(err, backoff)
				if !l.sleep(backoff) {
					l.setStopped()
					return
				}
				backoff = min(2*backoff, relayBackoffMax)
				continue
			}
			backoff = relayBackoffMin
		}
		select {
		case <-sess.done:
		case <-l.ctx.Done():
			l.mu.Lock()
			moved := l.moved
			l.mu.Unlock()
			// A parked connection is committed to the new process, which
			// carries on writing it; any other one (TLS, or connected
			// during the park) is closed, and its session ends.
			if !moved || sess.parkReq.Load() == nil {
				sess.conn.Close()
			}
			if moved {
				return
			}
			<-sess.done
		}
		if sess.movedOut.Load() {
			return
		}
		l.dropped(sess)
		if l.finished() {
			l.setStopped()
			return
		}
		if !l.sleep(backoff) {
			l.setStopped()
			return
		}
		backoff = min(2*backoff, relayBackoffMax)
	}
}

// finished reports that the link must not connect again.
func (l *pushLink) finished() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ending || l.moved || l.ctx.Err() != nil
}

func (l *pushLink) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !l.finished()
	case <-l.ctx.Done():
		return false
	}
}

func (l *pushLink) setStopped() {
	l.mu.Lock()
	l.state = relayStopped
	l.mu.Unlock()
}

func (l *pushLink) failed(err error, retry time.Duration) {
	l.mu.Lock()
	l.state = relayBackoff
	l.lastErr = err.Error()
	l.reconnects++
	l.mu.Unlock()
	l.log.Warn().Err(err).Dur("retry_in", retry).Msg("relay connect failed")
}

// dropped records the end of a connection that had been published.
func (l *pushLink) dropped(sess *session) {
	l.mu.Lock()
	l.bytesBase += sess.written.Load()
	l.dropsBase += sess.player.dropCount()
	l.sess = nil
	l.connected = time.Time{}
	ending := l.ending
	if !ending {
		l.state = relayBackoff
		l.reconnects++
		if sess.endErr != nil {
			l.lastErr = sess.endErr.Error()
		} else {
			l.lastErr = "closed"
		}
	}
	lastErr := l.lastErr
	l.mu.Unlock()
	if !ending {
		l.log.Warn().Str("error", lastErr).Msg("relay dropped")
	}
}

// connect dials the target and, once it accepted the publish, starts the
// relay as a session fed by the stream from its current keyframe.
func (l *pushLink) connect() (*session, error) {
	l.mu.Lock()
	l.state = relayConnecting
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(l.ctx, relayDialTimeout)
	defer cancel()
	c, err := relay.Dial(ctx, l.ep, relay.Options{ChunkSize: l.srv.cfg.ChunkSize, TLSConfig: l.srv.cfg.PushTLS})
	if err != nil {
		return nil, err
	}
	srv := l.srv
	sess := newSession(srv, c.NetConn, srv.nextID.Add(1))
	sess.log = l.log.With().Uint64("session", sess.id).Logger()
	sess.hs.Phase = handshake.PhaseDone
	sess.r, sess.w = c.Reader, c.Writer
	sess.connected = true
	sess.app, sess.tcURL = l.ep.App, l.ep.TCURL
	sess.ackWindow, sess.lastAck = c.AckWindow, c.LastAck
	sess.tlsRelay = l.ep.TLS
	sess.push = l
	sess.setRole(roleRelay)
	sess.stream = l.st
	sess.player = newPlayer(sess, c.StreamID)

	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		sess.player.stop()
		c.NetConn.Close()
		return nil, ErrServerClosed
	}
	srv.sessions[sess] = struct{}{}
	srv.wg.Add(1)
	srv.mu.Unlock()
	if !l.st.attachRelay(sess.player) {
		// The broadcast ended while we dialled: this link is done.
		l.mu.Lock()
		l.ending = true
		l.mu.Unlock()
		sess.player.stop()
		c.NetConn.Close()
		srv.mu.Lock()
		delete(srv.sessions, sess)
		srv.mu.Unlock()
		srv.wg.Done()
		return nil, errors.New("broadcast ended")
	}
	l.mu.Lock()
	l.sess = sess
	l.state = relayConnected
	l.connected = time.Now()
	reconnects := l.reconnects
	l.mu.Unlock()
	go func() {
		defer srv.wg.Done()
		sess.run()
		srv.mu.Lock()
		delete(srv.sessions, sess)
		srv.mu.Unlock()
	}()
	l.log.Info().Str("url", l.url).Str("app", l.st.App).Str("key", l.st.Key).Uint64("reconnects", reconnects).Bool("tls", l.ep.TLS).Msg("relay connected")
	return sess, nil
}

// attachRelay adds a relay's queue to the stream's fan-out, fed first with
// the metadata, the sequence headers and the current GOP, so that the
// downstream starts at a keyframe. It reports false if the stream is not
// live any more.
func (st *Stream) attachRelay(p *player) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.publisher == nil {
		return false
	}
	st.players = append(st.players, p)
	p.resync()
	st.sendConfigLocked(p)
	st.gop.replay(p)
	return true
}

// relayCommand handles what a downstream sends us while we publish: an
// error status ends the relay (it is reconnected), the rest is courtesy.
func (s *session) relayCommand(m *chunk.Message) error {
	c, err := decodeCommand(m)
	if err != nil {
		return err
	}
	if c.name != "onStatus" {
		return nil
	}
	info, _ := c.arg(1).(amf0.Object)
	level, _ := info.GetString("level")
	code, _ := info.GetString("code")
	if level == "error" {
		desc, _ := info.GetString("description")
		return fmt.Errorf("downstream refused: %s: %s", code, desc)
	}
	return nil
}

// exportRelay captures a connected relay: its session, its queue and its
// link's counters.
func (sess *session) exportRelay(ss state.Session) (state.Relay, error) {
	l := sess.push
	if l == nil {
		return state.Relay{}, errors.New("relay without a target")
	}
	pl := sess.player.export()
	rs := state.Relay{Session: ss, App: sess.stream.App, Key: sess.stream.Key, URL: l.url, Msid: pl.Msid,
		Queue: pl.Queue, WaitKey: pl.WaitKey}
	ri := l.info()
	rs.BytesOut, rs.Drops, rs.Reconnects, rs.LastError = ri.BytesOut, ri.Drops, ri.Reconnects, ri.LastError
	if !ri.Connected.IsZero() {
		rs.Connected = ri.Connected.UnixNano()
	}
	return rs, nil
}

// prepareRelay rebuilds a relay moved from an old process, its queue as it
// stood; attach joins it to its stream, and the stream's link adopts it at
// Start. It runs as a restore's worker.
func (r *Restored) prepareRelay(j *restoreJob) error {
	it := &j.it
	var rs state.Relay
	if err := state.Decode(it.Envelope, &rs); err != nil {
		return err
	}
	if len(it.Files) != 1 {
		return fmt.Errorf("%d descriptors, want 1", len(it.Files))
	}
	if !validName(rs.App) || !validName(rs.Key) {
		return fmt.Errorf("invalid stream name %q/%q", rs.App, rs.Key)
	}
	if _, err := relay.ParseEndpoint(rs.URL); err != nil {
		return fmt.Errorf("relay target: %w", err)
	}
	sess, err := r.srv.restoreSession(rs.Session, it.Files[0])
	if err != nil {
		return err
	}
	sess.log = sess.log.With().Str("key", rs.Key).Str("relay", rs.URL).Logger()
	sess.setRole(roleRelay)
	p := newPlayer(sess, rs.Msid)
	if err := p.restoreQueue(rs.Queue, rs.WaitKey, 0); err != nil {
		p.stop()
		sess.conn.Close()
		return err
	}
	sess.player = p
	sess.relayState = &rs
	j.sess, j.app, j.key = sess, rs.App, rs.Key
	return nil
}

// startPush starts the relays of the restored streams once the sessions
// run: connected relays are adopted by their links, the other targets are
// dialled now, from the next keyframe. A relay whose stream did not come
// along is closed.
func (r *Restored) startPush() {
	adopted := make(map[*Stream]map[string]*session)
	for _, sess := range r.relays {
		m := adopted[sess.stream]
		if m == nil {
			m = make(map[string]*session)
			adopted[sess.stream] = m
		}
		m[sess.relayState.URL] = sess
	}
	for _, st := range r.streams {
		if st.rec != nil {
			// Reported from here on: a segment closed by a rollback was
			// not done, the old process carries on with it.
			st.rec.SetOnSegmentDone(st.recordDone(r.srv))
		}
		st.startPush(r.srv, adopted[st])
		delete(adopted, st)
	}
	for _, m := range adopted {
		for u, sess := range m {
			sess.log.Warn().Str("relay", u).Msg("relay restored without its stream: closing it")
			sess.conn.Close()
		}
	}
}
