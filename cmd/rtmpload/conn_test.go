package main

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"testing"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
)

// tcpPair returns an rtmpConn past its handshake and the server's end of
// the same loopback connection.
func tcpPair(t testing.TB) (*rtmpConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	tc := nc.(*net.TCPConn)
	raw, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c := &rtmpConn{nc: tc, raw: raw, r: chunk.NewReader(maxInboundMessage), w: chunk.NewWriter(), rbuf: make([]byte, 4096)}
	c.feedFn = c.dispatch
	c.pollFn = c.pollRead
	c.onCommand = func(*command) error { return nil }
	c.onMessage = ignoreMessage
	t.Cleanup(func() { nc.Close(); srv.Close() })
	return c, srv
}

// readMessages reads from the server end until n messages arrived.
func readMessages(t *testing.T, srv net.Conn, n int) []chunk.Message {
	t.Helper()
	r := chunk.NewReader(0)
	var out []chunk.Message
	buf := make([]byte, 4096)
	for len(out) < n {
		k, err := srv.Read(buf)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if err := r.Feed(buf[:k], func(m *chunk.Message) error { out = append(out, *m); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// The client answers a ping with the same value and acknowledges once the
// server's window has been read, as RTMP §5.4.3 and §7.1.7 ask; it finds
// both through the non-blocking poll that publishers use.
func TestConnAnswersPingAndAcknowledges(t *testing.T) {
	c, srv := tcpPair(t)
	w := chunk.NewWriter()
	var out []byte
	win := binary.BigEndian.AppendUint32(nil, 200)
	out = w.Append(out, &chunk.Message{CSID: 2, TypeID: chunk.TypeWindowAckSize, Payload: win})
	ping := []byte{0, ucPingRequest, 0xCA, 0xFE, 0xBA, 0xBE}
	out = w.Append(out, &chunk.Message{CSID: 2, TypeID: chunk.TypeUserControl, Payload: ping})
	out = w.Append(out, &chunk.Message{CSID: 5, TypeID: chunk.TypeDataAMF0, StreamID: 1, Payload: make([]byte, 180)})
	if _, err := srv.Write(out); err != nil {
		t.Fatal(err)
	}
	// Poll until everything sent has been consumed; on loopback it is
	// there almost at once.
	for c.r.BytesRead() < uint64(len(out)) {
		if err := c.poll(); err != nil {
			t.Fatal(err)
		}
	}
	got := readMessages(t, srv, 2)
	pong := got[0]
	if pong.TypeID != chunk.TypeUserControl || string(pong.Payload) != string([]byte{0, ucPingResponse, 0xCA, 0xFE, 0xBA, 0xBE}) {
		t.Errorf("first reply type %d % x, want a ping response", pong.TypeID, pong.Payload)
	}
	ack := got[1]
	if ack.TypeID != chunk.TypeAck || binary.BigEndian.Uint32(ack.Payload) != uint32(len(out)) {
		t.Errorf("second reply type %d % x, want an ack of %d bytes", ack.TypeID, ack.Payload, len(out))
	}

	// Nothing pending: the poll returns at once with nothing done.
	if err := c.poll(); err != nil {
		t.Fatal(err)
	}
	// The server going away shows up in the poll.
	srv.Close()
	var err error
	for err == nil {
		err = c.poll()
	}
	if err.Error() != "server closed the connection" {
		t.Errorf("poll after close: %v", err)
	}
}

func TestConnRejectsHostileServer(t *testing.T) {
	c, srv := tcpPair(t)
	// A message claiming 16 MiB: over the client's limit.
	hdr := []byte{0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, chunk.TypeCommandAMF0, 0, 0, 0, 0}
	if _, err := srv.Write(hdr); err != nil {
		t.Fatal(err)
	}
	err := c.readOnce()
	if !errors.Is(err, chunk.ErrMessageTooLarge) {
		t.Fatalf("error %v, want ErrMessageTooLarge", err)
	}
}

// publisherOnPair sets up a publisher that streams into a loopback
// connection whose far end discards everything.
func publisherOnPair(b testing.TB, clip *Clip) *publisher {
	c, srv := tcpPair(b)
	go func() { _, _ = io.Copy(io.Discard, srv) }()
	if err := c.setChunkSize(4096); err != nil {
		b.Fatal(err)
	}
	p := &publisher{r: &runner{clip: clip}, rep: &PublisherReport{}, c: c, setup: setup{msid: 1}}
	p.hdr = make([]byte, 0, 4<<10)
	c.iov = make(net.Buffers, 0, 64)
	return p
}

// sendPass sends one pass of the body, a few tags per write as at real time.
func (p *publisher) sendPass(tb testing.TB) {
	for i := range p.r.clip.Body {
		t := &p.r.clip.Body[i]
		if !p.add(t, t.TS) {
			tb.Fatal("header space")
		}
		if i%2 == 1 {
			if err := p.flush(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := p.flush(); err != nil {
		tb.Fatal(err)
	}
}

// The publishing hot path — framing, hashing, vectored write — allocates
// nothing once its buffers exist.
func TestPublisherSteadyStateAllocations(t *testing.T) {
	clip := testClip(t)
	p := publisherOnPair(t, clip)
	passes := uint64(1)
	p.sendPass(t) // grows the buffers to their working size
	// AllocsPerRun counts the whole process's allocations, so the
	// goroutine draining the other end, or the runtime, can land one in a
	// pass on a busy machine; an allocation of the hot path shows in every
	// try, so the fewest of several tries is the hot path's.
	n := math.Inf(1)
	for range 5 {
		n = min(n, testing.AllocsPerRun(3, func() { p.sendPass(t); passes++ }))
	}
	if n != 0 {
		t.Errorf("%v allocations per pass of %d tags, fewest of 5 tries", n, len(clip.Body))
	}
	var video uint64
	for _, tag := range clip.Body {
		if tag.Type == flv.TagVideo {
			video++
		}
	}
	if p.rep.VideoFrames != passes*video {
		t.Errorf("%d video frames counted over %d passes of %d", p.rep.VideoFrames, passes, video)
	}
}

func BenchmarkPublisherPass(b *testing.B) {
	clip, err := Synthesize(SynthConfig{Bitrate: 2_000_000, AudioBitrate: 128_000, FPS: 30, GOP: 60})
	if err != nil {
		b.Fatal(err)
	}
	p := publisherOnPair(b, clip)
	b.SetBytes(int64(clip.BodyBytes()))
	b.ReportAllocs()
	for b.Loop() {
		p.sendPass(b)
	}
}
