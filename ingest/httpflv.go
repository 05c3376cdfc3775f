package ingest

// HTTP-FLV output: GET /APP/KEY.flv answers with an FLV file that lasts as
// long as the broadcast. A viewer is an RTMP player in all but its framing:
// the same fan-out queue (player.go), start at a keyframe with the GOP
// cache, skip-ahead and drop when slow, park, export and restore for an
// upgrade. What differs is the session around the queue, a hijacked HTTP
// connection that is only read to notice the client leaving, and the
// framing of a batch, FLV tags instead of RTMP chunks.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
	"github.com/mediad/mediad/ingest/webhook"
	"github.com/mediad/mediad/state"
)

// flvReadBufSize bounds what is read at once from an HTTP-FLV viewer. It
// sends nothing after its request, so this buffer only ever sees the
// client's close, or garbage to drop.
const flvReadBufSize = 512

// flvTagOverhead is the framing of one tag: its header and the
// PreviousTagSize after its payload.
const flvTagOverhead = flv.TagHeaderSize + 4

// flvResponseHeader starts every HTTP-FLV response. No Content-Length: the
// body ends when the broadcast does, with the connection.
const flvResponseHeader = "HTTP/1.1 200 OK\r\n" +
	"Content-Type: video/x-flv\r\n" +
	"Cache-Control: no-cache\r\n" +
	"Access-Control-Allow-Origin: *\r\n" +
	"Connection: close\r\n" +
	"\r\n"

// errParkedNow refuses to adopt a viewer while sessions are parked.
var errParkedNow = errors.New("sessions are parked for an upgrade")

// errNotServing turns a viewer away from a server that is stopping, or
// whose streams have gone to a new process.
var errNotServing = errors.New("server is stopping or has handed its streams to a new process")

// ServeFLV answers GET (or HEAD) /APP/KEY.flv: the live stream app/key as
// an FLV file, from the metadata, sequence headers and last keyframe on,
// until the broadcast ends. A stream that is not live gets 404. The
// connection is hijacked and belongs to the Server from then on: Park moves
// it to a new process, Shutdown ends it after its queue, Close cuts it.
// ServeFLV returns once the viewer is started; it does not wait for the
// broadcast to end.
func (s *Server) ServeFLV(w http.ResponseWriter, r *http.Request, app, key string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !validName(app) || !validName(key) {
		http.Error(w, "invalid stream name", http.StatusNotFound)
		return
	}
	// During an upgrade the streams are parked, not gone: wait for the
	// verdict rather than answer for a process that may be leaving.
	if err := s.awaitServing(r.Context()); err != nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "server unavailable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if !s.registry.live(app, key) {
		http.Error(w, fmt.Sprintf("stream %s/%s is not live", app, key), http.StatusNotFound)
		return
	}
	id := s.nextID.Add(1)
	if s.hooked(webhook.EventPlay) {
		// The viewer is not a session yet: its own request waits, nothing
		// else does.
		allowed, err := s.cfg.Hooks.Decide(r.Context(), webhook.EventPlay,
			webhook.Subject{App: app, Key: key, Query: r.URL.RawQuery, Addr: r.RemoteAddr, StreamID: id})
		if !allowed {
			s.log.Info().Err(err).Str("app", app).Str("key", key).Str("peer", r.RemoteAddr).Msg("http-flv: play refused by the on_play webhook")
			http.Error(w, "play refused", http.StatusForbidden)
			return
		}
	}
	if r.Method == http.MethodHead {
		h := w.Header()
		h.Set("Content-Type", "video/x-flv")
		h.Set("Cache-Control", "no-cache")
		h.Set("Access-Control-Allow-Origin", "*")
		w.WriteHeader(http.StatusOK)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "HTTP-FLV needs an HTTP/1.x connection", http.StatusHTTPVersionNotSupported)
		return
	}
	// Bytes the server buffered past the request are dropped with the
	// bufio.ReadWriter: a viewer has nothing more to say.
	conn, _, err := hj.Hijack()
	if err != nil {
		s.log.Warn().Err(err).Str("app", app).Str("key", key).Msg("http-flv: hijack failed")
		return
	}
	// The HTTP server's own timeouts do not apply to a body that lasts
	// as long as a broadcast.
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return
	}
	sess := newFLVSession(s, conn, id, app, key)
	sess.playQuery = r.URL.RawQuery
	for {
		err := s.adopt(sess)
		if errors.Is(err, errParkedNow) {
			err = s.awaitServing(r.Context())
			if err == nil {
				continue
			}
		}
		if err != nil {
			writeRawResponse(conn, http.StatusServiceUnavailable, "server unavailable: "+err.Error())
			conn.Close()
			return
		}
		break
	}
	go func() {
		defer s.wg.Done()
		sess.runFLV(key)
		s.mu.Lock()
		delete(s.sessions, sess)
		s.mu.Unlock()
	}()
}

func newFLVSession(srv *Server, c net.Conn, id uint64, app, key string) *session {
	s := &session{
		srv:  srv,
		conn: c,
		id:   id,
		log: srv.log.With().Uint64("session", id).Str("peer", c.RemoteAddr().String()).
			Str("proto", "http-flv").Str("app", app).Str("key", key).Logger(),
		app:  app,
		rbuf: make([]byte, flvReadBufSize),
		done: make(chan struct{}),
	}
	s.setRole(roleFLVPlayer)
	return s
}

// awaitServing waits while sessions are parked for an upgrade, until they
// resume here. It fails if the server is stopping or closed, if the parked
// sessions went to a new process, or if ctx ends first.
func (s *Server) awaitServing(ctx context.Context) error {
	for {
		s.mu.Lock()
		down, parked, gate := s.closed || s.stopping, s.parked, s.acceptGate
		s.mu.Unlock()
		switch {
		case down:
			return errNotServing
		case !parked:
			return nil
		}
		select {
		case <-gate:
		case <-s.moved:
			return errNotServing
		case <-s.ctx.Done():
			return errNotServing
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// adopt registers a new viewer's session with the server, so that Park,
// Shutdown and Close see it, unless sessions are parked (errParkedNow) or
// the server is going away.
func (s *Server) adopt(sess *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed || s.stopping:
		return errNotServing
	case s.parked:
		return errParkedNow
	}
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	return nil
}

// markMoved releases HTTP-FLV requests waiting for a park that has been
// committed.
func (s *Server) markMoved() { s.movedOnce.Do(func() { close(s.moved) }) }

// runFLV is the goroutine of a new viewer: it joins the stream, then
// serves the connection like any session until the client leaves, the
// broadcast ends or the session moves.
func (sess *session) runFLV(key string) {
	running := false // run closes sess.done; before it, this does
	defer func() {
		if v := recover(); v != nil {
			// One viewer's crash ends that viewer only.
			sess.log.Error().Interface("panic", v).Bytes("stack", debug.Stack()).Msg("http-flv viewer crashed; connection dropped")
			sess.conn.Close()
			if sess.stream != nil {
				sess.stream.removePlayer(sess.player)
			}
			if sess.player != nil {
				sess.player.stop()
			}
			if !running {
				close(sess.done)
			}
		}
	}()
	p := newPlayer(sess, 0)
	sess.player = p
	// The response header and FLV header are the first bytes out. They
	// wait in sess.out, like bytes left by a park, so that they travel
	// with the viewer should it move before its first write.
	st := sess.srv.registry.playLive(sess.app, key, p, func(video, audio bool) {
		sess.wmu.Lock()
		sess.out = flv.AppendFileHeader(append(sess.out[:0], flvResponseHeader...), audio, video)
		sess.wmu.Unlock()
	})
	if st == nil {
		// The broadcast ended between the request and now.
		sess.player = nil
		p.stop()
		writeRawResponse(sess.conn, http.StatusNotFound, fmt.Sprintf("stream %s/%s is not live", sess.app, key))
		sess.conn.Close()
		close(sess.done)
		return
	}
	sess.stream = st
	sess.log.Info().Msg("play started")
	running = true
	sess.run()
}

// writeRawResponse answers a hijacked connection that will not carry a
// stream, best effort: the connection is closed next either way.
func writeRawResponse(c net.Conn, code int, msg string) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	retry := ""
	if code == http.StatusServiceUnavailable {
		retry = "Retry-After: 1\r\n"
	}
	_, _ = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n%s\n",
		code, http.StatusText(code), len(msg)+1, retry, msg)
}

// live reports whether app/key has a publisher.
func (r *Registry) live(app, key string) bool {
	r.mu.Lock()
	st := r.streams[streamName(app, key)]
	r.mu.Unlock()
	if st == nil {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.publisher != nil
}

// playLive adds p to the live stream app/key, as play does for an RTMP
// player, and returns the stream; nil if it is not live. start runs
// first, under the stream's lock, with the tracks the stream announces
// (both when its sequence headers have not come yet), so that the FLV
// header it writes agrees with the tags that follow.
func (r *Registry) playLive(app, key string, p *player, start func(video, audio bool)) *Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.streams[streamName(app, key)]
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.publisher == nil {
		return nil
	}
	video, audio := st.videoSeq != nil, st.audioSeq != nil
	if !video && !audio {
		video, audio = true, true
	}
	start(video, audio)
	st.players = append(st.players, p)
	p.resync()
	// Under st.mu, as the fan-out: the live frames follow the cached GOP
	// with no gap and no repeat.
	st.sendConfigLocked(p)
	st.gop.replay(p)
	return st
}

// isFLVTag says whether an RTMP message type has an FLV tag type, which is
// the same number.
func isFLVTag(typ uint8) bool {
	return typ == chunk.TypeAudio || typ == chunk.TypeVideo || typ == chunk.TypeDataAMF0
}

// writeFLV sends a batch as FLV tags with one vectored write: each tag
// header, the shared payload, then its PreviousTagSize joined to the next
// tag's header; nothing copied.
func (p *player) writeFLV(batch []outMsg) error {
	s := p.sess
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if need := len(batch) * flvTagOverhead; cap(p.headers) < need {
		p.headers = make([]byte, 0, need)
	}
	// hdr never grows past its capacity, so the slices of it in iov stay
	// valid.
	hdr := p.headers[:0]
	iov := p.iov[:0]
	from := 0 // start of hdr's bytes not yet in iov
	for i := range batch {
		m := &batch[i]
		if !isFLVTag(m.typ) {
			continue
		}
		if len(m.payload) > flv.MaxDataSize {
			s.log.Warn().Uint8("type", m.typ).Int("bytes", len(m.payload)).Msg("http-flv: message too large for an FLV tag; not sent")
			continue
		}
		hdr = flv.AppendTagHeader(hdr, m.typ, m.ts, len(m.payload))
		iov = append(iov, hdr[from:], m.payload)
		from = len(hdr)
		hdr = binary.BigEndian.AppendUint32(hdr, uint32(flv.TagHeaderSize+len(m.payload)))
	}
	if from < len(hdr) {
		iov = append(iov, hdr[from:])
	}
	p.iov = iov
	err := s.writeLocked(net.Buffers(iov))
	clear(p.iov)
	return err
}

// flvState exports a parked viewer. Its publisher parked first, so the
// queue and ending no longer change.
func (sess *session) flvState() state.FLVPlayer {
	p := sess.player
	pl := p.export()
	p.mu.Lock()
	ending := p.ending
	p.mu.Unlock()
	sess.wmu.Lock()
	out := append([]byte(nil), sess.out...)
	sess.wmu.Unlock()
	return state.FLVPlayer{
		ID:      sess.id,
		Peer:    sess.conn.RemoteAddr().String(),
		App:     sess.stream.App,
		Key:     sess.stream.Key,
		Out:     out,
		Queue:   pl.Queue,
		WaitKey: pl.WaitKey,
		Skips:   pl.Skips,
		Ending:  ending,
	}
}

// prepareFLVPlayer rebuilds an HTTP-FLV viewer, its queue as it stood;
// attach joins it to its stream. It runs as a restore's worker.
func (r *Restored) prepareFLVPlayer(j *restoreJob) error {
	it := &j.it
	var fp state.FLVPlayer
	if err := state.Decode(it.Envelope, &fp); err != nil {
		return err
	}
	if len(it.Files) != 1 {
		return fmt.Errorf("%d descriptors, want 1", len(it.Files))
	}
	if !validName(fp.App) || !validName(fp.Key) {
		return fmt.Errorf("invalid stream name %q/%q", fp.App, fp.Key)
	}
	c, err := adoptConn(it.Files[0])
	if err != nil {
		return fmt.Errorf("connection from descriptor: %w", err)
	}
	r.srv.keepIDsAbove(fp.ID)
	sess := newFLVSession(r.srv, c, fp.ID, fp.App, fp.Key)
	sess.out = fp.Out
	p := newPlayer(sess, 0)
	if err := p.restoreQueue(fp.Queue, fp.WaitKey, fp.Skips); err != nil {
		p.stop()
		c.Close()
		return err
	}
	sess.player = p
	j.sess, j.app, j.key, j.ending = sess, fp.App, fp.Key, fp.Ending
	return nil
}
