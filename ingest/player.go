package ingest

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/relay"
)

// msgKind tells the fan-out what it may drop.
type msgKind uint8

const (
	// kindMedia is a frame: dropped while a player skips ahead.
	kindMedia msgKind = iota
	// kindConfig is metadata or a sequence header: never dropped, since
	// every later frame depends on it.
	kindConfig
	// kindControl is a status or user control message for the player:
	// never dropped, always in order with the frames.
	kindControl
)

// outMsg is one message queued for a player. Payloads are shared by every
// player and never modified.
type outMsg struct {
	typ     uint8
	kind    msgKind
	key     bool
	ts      uint32
	csid    uint32 // 0: chosen from typ
	msid0   bool   // sent on message stream 0 (user control)
	payload []byte
}

func (m *outMsg) size() int { return len(m.payload) }

// player is the fan-out end of one playing session: a queue filled by the
// publisher's goroutine without blocking, drained by a writer goroutine
// that owns the socket's write side for media. RTMP players and HTTP-FLV
// viewers share all of it but the framing of a batch (write, writeFLV).
type player struct {
	sess  *session
	msid  uint32
	limit int
	max   int
	// flv frames the queue as FLV tags (an HTTP-FLV viewer, httpflv.go)
	// instead of RTMP chunks.
	flv bool
	// relay publishes the queue to a downstream server (push.go): no
	// status messages, metadata as @setDataFrame, never dropped for
	// being slow, only its GOPs are.
	relay bool

	// mu is last in the lock order registry, stream, player (see
	// Registry.mu): the publisher's goroutine enqueues with Stream.mu held.
	mu      sync.Mutex
	queue   []outMsg
	spare   []outMsg
	queued  int
	waitKey bool // drop frames until the next video keyframe
	skips   int  // skip-aheads since the queue last drained
	stopped bool
	// ending: the stream ended for an HTTP-FLV viewer; once its queue is
	// written the response is complete and nothing more is queued.
	ending bool
	// exported is set while the player's queue has been taken for an
	// upgrade; fedLate records that the publisher added to it since.
	exported bool
	fedLate  bool
	writing  bool // a batch taken from the queue is being written
	// drops counts skip-aheads over the player's life: GOPs a relay's
	// target lost for being too slow.
	drops uint64

	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	pauseC  chan chan struct{}
	resumeC chan struct{}
	pausing atomic.Bool

	// Writer scratch, reused across batches: the writer goroutine's, and
	// the publisher's for a direct write (deliverLocked), both with the
	// session's wmu held.
	iov     [][]byte
	headers []byte
	iovecs  []unix.Iovec
	// raw is the connection's descriptor for direct writes, nil where
	// there is none to use (TLS, HTTP-FLV, relays).
	raw syscall.RawConn
	// writeFn is writevNow, bound once; wn and werr are its result.
	writeFn func(uintptr) bool
	wn      int
	werr    error
	// outPending: a direct write left bytes in the session's output for
	// the writer goroutine to finish. Guarded by mu.
	outPending bool
}

func newPlayer(s *session, msid uint32) *player {
	p := &player{
		sess:    s,
		msid:    msid,
		limit:   s.srv.cfg.PlayerQueueBytes,
		max:     s.srv.cfg.MaxSkips,
		flv:     s.role == roleFLVPlayer,
		relay:   s.role == roleRelay,
		waitKey: true,
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		pauseC:  make(chan chan struct{}),
		resumeC: make(chan struct{}),
	}
	if !p.flv && !p.relay {
		p.raw = rawConnOf(s.conn)
	}
	go p.run()
	return p
}

// resync makes the player wait for the next keyframe, as at its start.
func (p *player) resync() {
	p.mu.Lock()
	p.waitKey = true
	p.mu.Unlock()
}

// enqueue adds m without blocking. A player that has fallen more than its
// limit behind loses its queued frames and resumes at the next keyframe; one
// that keeps falling behind is disconnected.
func (p *player) enqueue(m outMsg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.ending {
		return
	}
	if p.exported {
		p.fedLate = true
	}
	if m.kind == kindMedia {
		if p.waitKey {
			if !m.key {
				return
			}
			p.waitKey = false
		}
		if p.queued+m.size() > p.limit {
			p.skipLocked()
			if p.stopped || !m.key {
				return
			}
			p.waitKey = false
		}
	}
	if p.deliverLocked(m) {
		return
	}
	p.queue = append(p.queue, m)
	p.queued += m.size()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// deliverLocked writes m to the player at once when nothing is queued
// before it and the writer goroutine is idle: the caller's goroutine (the
// publisher's, in the fan-out) frames it and hands it to the socket with
// one writev that never waits. That saves the writer goroutine's wake-up,
// its switch and its write deadline, per message and player. It reports
// false, having written nothing, when m must be queued instead: a socket
// that takes nothing now, a write in progress, a park on its way. A write
// the socket takes in part leaves the rest in the session's output, where
// the writer goroutine (woken) or a park finds it, so the stream of chunks
// stays whole. p.mu is held; the session's wmu is only tried, never waited
// for.
func (p *player) deliverLocked(m outMsg) bool {
	if p.raw == nil || len(p.queue) > 0 || p.writing || p.outPending || p.exported || p.pausing.Load() {
		return false
	}
	s := p.sess
	if s.parkReq.Load() != nil || !s.wmu.TryLock() {
		return false
	}
	defer s.wmu.Unlock()
	if s.wclosed || s.parking || len(s.out) > 0 {
		return false
	}
	batch := [1]outMsg{m}
	iov := p.frame(batch[:])
	total := 0
	vecs := p.iovecs[:0]
	for _, b := range iov {
		var v unix.Iovec
		v.Base = unsafe.SliceData(b)
		v.SetLen(len(b))
		vecs = append(vecs, v)
		total += len(b)
	}
	p.iovecs = vecs
	if p.writeFn == nil {
		// Made once: a closure made per call would be allocated per write.
		p.writeFn = p.writevNow
	}
	p.wn, p.werr = 0, nil
	err := p.raw.Write(p.writeFn)
	n, werr := p.wn, p.werr
	p.werr = nil
	clear(p.iovecs)
	if err == nil {
		err = werr
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, os.ErrDeadlineExceeded) {
		// Full, or a past write deadline still set (a park that resumed
		// leaves one until the next queued write moves it): queued.
		n, err = 0, nil
	}
	if err != nil {
		clear(p.iov)
		// As the writer goroutine does: the session's read loop ends on
		// the closed socket and tears the player down.
		p.sess.log.Warn().Err(err).Msg("player write failed")
		p.stopped = true
		s.conn.Close()
		return true
	}
	if n == 0 {
		clear(p.iov)
		return false
	}
	s.srv.bytesOut.Add(uint64(n))
	s.written.Add(uint64(n))
	p.skips = 0
	if n < total {
		// The rest, copied: the payload's slices are not ours to keep.
		for _, b := range iov {
			if n >= len(b) {
				n -= len(b)
				continue
			}
			s.out = append(s.out, b[n:]...)
			n = 0
		}
		p.outPending = true
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	clear(p.iov)
	return true
}

// writevNow is deliverLocked's RawConn.Write callback: one writev of
// p.iovecs that never waits for the socket (what it did not take goes to
// the writer goroutine), its count and error in p.wn and p.werr.
func (p *player) writevNow(fd uintptr) bool {
	for {
		r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p.iovecs))), uintptr(len(p.iovecs)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			p.werr = e
		} else {
			p.wn = int(r)
		}
		return true
	}
}

// enqueueGOP queues a cached GOP, keyframe first, for a player that has
// just joined and waits for a keyframe. It queues nothing when the GOP
// (payload bytes in all) would pass the player's queue limit.
func (p *player) enqueueGOP(msgs []outMsg, payload int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.ending || !p.waitKey || len(msgs) == 0 || !msgs[0].key || p.queued+payload > p.limit {
		return
	}
	if p.exported {
		p.fedLate = true
	}
	p.waitKey = false
	p.queue = append(p.queue, msgs...)
	p.queued += payload
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *player) skipLocked() {
	kept := p.queue[:0]
	for _, q := range p.queue {
		if q.kind != kindMedia {
			kept = append(kept, q)
		}
	}
	clear(p.queue[len(kept):])
	p.queue = kept
	p.queued = 0
	for _, q := range kept {
		p.queued += q.size()
	}
	p.waitKey = true
	p.skips++
	p.drops++
	if p.relay {
		// A relay's target may be slow for a while; it loses GOPs, never
		// the connection, and never holds anyone else up.
		p.sess.log.Warn().Uint64("drops", p.drops).Msg("relay target too slow: dropped the queued GOP, resuming at the next keyframe")
		return
	}
	p.sess.log.Warn().Int("skips", p.skips).Msg("player too slow: skipped ahead to the next keyframe")
	if p.skips > p.max {
		p.sess.log.Warn().Msg("player dropped: it never caught up")
		p.stopped = true
		// Closing the socket ends the session's read loop, which tears the
		// player down.
		p.sess.conn.Close()
	}
}

// enqueueStatus and enqueueUserControl queue RTMP control messages, which
// an FLV body has no place for: an HTTP-FLV viewer gets none.
func (p *player) enqueueStatus(code, desc string) {
	if p.flv || p.relay {
		return
	}
	payload, err := amf0.AppendAll(nil, "onStatus", 0.0, nil, statusObject("status", code, desc))
	if err != nil {
		return
	}
	p.enqueue(outMsg{typ: chunk.TypeCommandAMF0, kind: kindControl, csid: csidCommand, payload: payload})
}

func (p *player) enqueueUserControl(event uint16) {
	if p.flv || p.relay {
		return
	}
	payload := make([]byte, 6)
	binary.BigEndian.PutUint16(payload, event)
	binary.BigEndian.PutUint32(payload[2:], p.msid)
	p.enqueue(outMsg{typ: chunk.TypeUserControl, kind: kindControl, csid: csidControl, msid0: true, payload: payload})
}

// endOfStream ends an HTTP-FLV viewer's response once what is queued for
// it is written, as a file ends. An RTMP player is told in-band instead
// and stays for the next publish, so this does nothing to it.
func (p *player) endOfStream() {
	if !p.flv && !p.relay {
		return
	}
	p.mu.Lock()
	p.ending = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// stop ends the writer goroutine and waits for it. Messages still queued
// are dropped: the connection is going away.
func (p *player) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.done
}

func (p *player) run() {
	defer close(p.done)
	// A bug in one client's framing must not take the process, and every
	// other stream, down with it: the client is dropped instead.
	defer func() {
		if v := recover(); v != nil {
			p.sess.log.Error().Interface("panic", v).Bytes("stack", debug.Stack()).Msg("player writer crashed; client dropped")
			p.sess.conn.Close()
		}
	}()
	for {
		select {
		case <-p.wake:
		case ack := <-p.pauseC:
			close(ack)
			select {
			case <-p.resumeC:
			case <-p.quit:
				return
			}
		case <-p.quit:
			return
		}
		// A park request stops the writer before its session gets to
		// pause it: the queue then travels as messages, shared, rather
		// than as bytes copied into the session's output.
		for !p.pausing.Load() && p.sess.parkReq.Load() == nil {
			p.mu.Lock()
			// Double buffering: the queue takes the spare array and the
			// spare slot stays empty until this batch is written, so the
			// publisher never appends into an array being written.
			batch := p.queue
			p.queue, p.spare = p.spare[:0], nil
			p.queued = 0
			flush := p.outPending
			p.outPending = false
			p.writing = len(batch) > 0 || flush
			if len(batch) == 0 {
				p.skips = 0
			}
			ended := len(batch) == 0 && p.ending
			p.mu.Unlock()
			if ended {
				p.sess.responseComplete()
			}
			if !p.writing {
				p.mu.Lock()
				p.spare = batch[:0]
				p.mu.Unlock()
				break
			}
			err := p.write(batch)
			clear(batch)
			p.mu.Lock()
			p.spare = batch[:0]
			p.writing = false
			p.mu.Unlock()
			if err != nil {
				p.sess.log.Warn().Err(err).Msg("player write failed")
				p.sess.conn.Close()
				return
			}
		}
	}
}

// pause stops the writer at its next safe point for an upgrade. A write in
// flight is cut short; its unwritten bytes stay in the session's output.
func (p *player) pause() {
	p.pausing.Store(true)
	_ = p.sess.conn.SetWriteDeadline(time.Unix(1, 0))
	ack := make(chan struct{})
	select {
	case p.pauseC <- ack:
		<-ack
	case <-p.done:
	}
}

// fedAfterExport reports whether anything was queued since export.
func (p *player) fedAfterExport() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fedLate
}

// dropCount is how many times the player was skipped ahead.
func (p *player) dropCount() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drops
}

// resume restarts a paused writer.
func (p *player) resume() {
	p.mu.Lock()
	p.exported, p.fedLate = false, false
	p.mu.Unlock()
	p.pausing.Store(false)
	// The pause set a write deadline in the past: the next write sets it.
	p.sess.wmu.Lock()
	p.sess.wdl = time.Time{}
	p.sess.wmu.Unlock()
	select {
	case p.resumeC <- struct{}{}:
	case <-p.done:
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// write sends a batch with one vectored write: chunk headers interleaved
// with the shared payloads, nothing copied. An empty batch writes what
// waits in the session's output.
func (p *player) write(batch []outMsg) error {
	if p.flv {
		return p.writeFLV(batch)
	}
	s := p.sess
	s.wmu.Lock()
	defer s.wmu.Unlock()
	iov := p.frame(batch)
	err := s.writeLocked(net.Buffers(iov))
	clear(p.iov)
	return err
}

// frame lays a batch out as chunks in p.iov, headers in p.headers, and
// returns it. The session's wmu is held: the chunk writer is shared.
func (p *player) frame(batch []outMsg) [][]byte {
	s := p.sess
	need := 0
	for i := range batch {
		need += s.w.HeaderSpace(len(batch[i].payload))
	}
	if cap(p.headers) < need {
		p.headers = make([]byte, 0, need)
	}
	hdr := p.headers[:0]
	iov := p.iov[:0]
	for i := range batch {
		m := &batch[i]
		csid := m.csid
		if csid == 0 {
			switch m.typ {
			case chunk.TypeAudio:
				csid = csidAudio
			case chunk.TypeVideo:
				csid = csidVideo
			default:
				csid = csidData
			}
		}
		msid := p.msid
		if m.msid0 {
			msid = 0
		}
		payload := m.payload
		if p.relay && m.typ == chunk.TypeDataAMF0 && m.kind == kindConfig {
			// A publisher sets metadata with @setDataFrame; what the
			// stream keeps is the frame without the setter.
			payload = relay.SetDataFrame(payload)
		}
		iov, hdr = s.w.Buffers(iov, hdr, &chunk.Message{CSID: csid, Timestamp: m.ts, TypeID: m.typ, StreamID: msid, Payload: payload})
	}
	p.iov = iov
	return iov
}
