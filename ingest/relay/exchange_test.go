package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
)

func mustEndpoint(tb testing.TB, raw string) Endpoint {
	tb.Helper()
	ep, err := ParseEndpoint(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return ep
}

// TestDialExchange runs the exchange against a server that sends
// everything servers send unasked, and checks both what Dial answered and
// the state it hands over.
func TestDialExchange(t *testing.T) {
	CheckGoroutines(t)
	s := newScript(t)
	s.u32(chunk.TypeWindowAckSize, 100)
	s.u32(chunk.TypeSetPeerBandwidth, 5_000_000, 2)
	s.chunkSize(300)
	s.userControl(0, 0) // StreamBegin 0
	s.userControl(ucPingRequest, 1234)
	s.u32(chunk.TypeAbort, 9)
	s.cmd(0, "onBWDone", 0.0, nil)
	amf3, err := amf0.AppendAll([]byte{0}, "_checkbw", 0.0, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.msg(csidCommand, chunk.TypeCommandAMF3, 0, amf3)
	// A connect result longer than the chunk size, so that it arrives in
	// chunks of the size just announced.
	props := amf0.Object{{Key: "fmsVer", Value: "FMS/3,5,7,7009"}, {Key: "padding", Value: strings.Repeat("x", 700)}}
	s.cmd(0, "_result", 1.0, props, statusObj("status", "NetConnection.Connect.Success", "ok"))
	// Some servers refuse releaseStream; nginx-rtmp announces FCPublish
	// with the code publish uses. Neither is the answer to publish.
	s.cmd(0, "_error", 2.0, nil, statusObj("error", "NetConnection.Call.Failed", "releaseStream"))
	s.cmd(0, "onFCPublish", 0.0, nil, statusObj("status", codePublishStart, "FCPublish"))
	s.cmd(0, "_result", 3.0, nil, amf0.Undefined{})
	s.cmd(0, "_result", 4.0, nil, 7.0)
	s.published(7)
	// The status arrives with the start of a message the caller finishes.
	split := len(s.bytes()) + 5
	s.cmd(7, "onStatus", 0.0, nil, statusObj("status", "NetStream.Publish.Note", "after"))
	first, rest := s.bytes()[:split], s.bytes()[split:]

	release := make(chan struct{})
	addr, result := fakeServer(t, false, func(c *fakeConn) error {
		if err := c.write(first); err != nil {
			return err
		}
		<-release
		return c.write(rest)
	})
	// Short, so the test can wait it out: the deadline must not outlive
	// Dial.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := Dial(ctx, mustEndpoint(t, "rtmp://"+addr+"/live/key?token=x"), Options{})
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.StreamID != 7 || conn.AckWindow != 100 || conn.Reader.ChunkSize() != 300 || conn.Writer.ChunkSize() != DefaultChunkSize {
		t.Errorf("conn: stream %d, window %d, inbound chunk size %d, outbound %d; want 7, 100, 300, %d",
			conn.StreamID, conn.AckWindow, conn.Reader.ChunkSize(), conn.Writer.ChunkSize(), DefaultChunkSize)
	}
	if read := conn.Reader.BytesRead(); read != uint64(split) || conn.LastAck == 0 || read-conn.LastAck >= 100 {
		t.Errorf("read %d bytes (sent %d), acknowledged %d with a window of 100", read, split, conn.LastAck)
	}

	<-ctx.Done()
	close(release)
	var after []string
	buf := make([]byte, 1024)
	for len(after) == 0 {
		n, err := conn.NetConn.Read(buf)
		if err != nil {
			t.Fatalf("read after Dial: %v", err)
		}
		if err := conn.Reader.Feed(buf[:n], func(m *chunk.Message) error {
			cmd, err := decodeCommand(m)
			if err != nil {
				return err
			}
			code, _, _ := cmd.status()
			after = append(after, code)
			return nil
		}); err != nil {
			t.Fatalf("feed after Dial: %v", err)
		}
	}
	if after[0] != "NetStream.Publish.Note" {
		t.Errorf("after Dial the reader completed %q", after)
	}
	conn.Close()

	r := wait(t, result)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.msgs) == 0 || r.msgs[0].TypeID != chunk.TypeSetChunkSize || binary.BigEndian.Uint32(r.msgs[0].Payload) != DefaultChunkSize {
		t.Fatalf("first message %+v, want Set Chunk Size %d", r.msgs[0], DefaultChunkSize)
	}
	var pongs, acks []uint32
	for _, m := range r.msgs {
		switch {
		case m.TypeID == chunk.TypeUserControl && binary.BigEndian.Uint16(m.Payload) == ucPingResponse:
			pongs = append(pongs, binary.BigEndian.Uint32(m.Payload[2:]))
		case m.TypeID == chunk.TypeAck:
			acks = append(acks, binary.BigEndian.Uint32(m.Payload))
		}
	}
	if len(pongs) != 1 || pongs[0] != 1234 {
		t.Errorf("ping responses %v, want [1234]", pongs)
	}
	if len(acks) == 0 || acks[len(acks)-1] != uint32(conn.LastAck) {
		t.Errorf("acknowledgements %v, want the last to be LastAck %d", acks, conn.LastAck)
	}

	cmds := commandsIn(r.msgs)
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	if strings.Join(names, " ") != "connect releaseStream FCPublish createStream publish" {
		t.Fatalf("commands %q", names)
	}
	obj, _ := cmds[0].arg(0).(amf0.Object)
	want := amf0.Object{{Key: "app", Value: "live"}, {Key: "type", Value: "nonprivate"}, {Key: "flashVer", Value: DefaultFlashVer}, {Key: "tcUrl", Value: "rtmp://" + addr + "/live"}}
	if !equalObjects(obj, want) {
		t.Errorf("connect object %v, want %v", obj, want)
	}
	for i, txn := range []float64{txnConnect, txnReleaseStream, txnFCPublish, txnCreateStream, txnPublish} {
		if cmds[i].txn != txn {
			t.Errorf("%s: transaction %v, want %v", cmds[i].name, cmds[i].txn, txn)
		}
	}
	for _, c := range cmds[1:3] {
		if name, _ := c.arg(1).(string); name != "key?token=x" {
			t.Errorf("%s %q, want key?token=x", c.name, name)
		}
	}
	pub := cmds[4]
	if name, _ := pub.arg(1).(string); name != "key?token=x" || pub.arg(2) != "live" {
		t.Errorf("publish %v, want key?token=x live", pub.args)
	}
	for _, m := range r.msgs {
		if m.TypeID == chunk.TypeCommandAMF0 {
			if c, _ := decodeCommand(&m); c.name == "publish" && m.StreamID != 7 {
				t.Errorf("publish on message stream %d, want 7", m.StreamID)
			}
		}
	}
}

func equalObjects(a, b amf0.Object) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDialOptions checks that the options and an app with slashes reach
// the server.
func TestDialOptions(t *testing.T) {
	CheckGoroutines(t)
	accept := newScript(t).accept(1).bytes()
	addr, result := fakeServer(t, false, func(c *fakeConn) error { return c.write(accept) })
	conn, err := Dial(context.Background(), mustEndpoint(t, "rtmp://"+addr+"/a/b/key"), Options{ChunkSize: 60000, FlashVer: "test/1.0", Dialer: &net.Dialer{}})
	if err != nil {
		t.Fatal(err)
	}
	if conn.Writer.ChunkSize() != 60000 || conn.StreamID != 1 {
		t.Errorf("outbound chunk size %d, stream %d", conn.Writer.ChunkSize(), conn.StreamID)
	}
	conn.Close()
	r := wait(t, result)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := binary.BigEndian.Uint32(r.msgs[0].Payload); r.msgs[0].TypeID != chunk.TypeSetChunkSize || got != 60000 {
		t.Errorf("first message type %d announcing %d, want Set Chunk Size 60000", r.msgs[0].TypeID, got)
	}
	obj, _ := commandsIn(r.msgs)[0].arg(0).(amf0.Object)
	app, _ := obj.GetString("app")
	tcURL, _ := obj.GetString("tcUrl")
	flashVer, _ := obj.GetString("flashVer")
	if app != "a/b" || tcURL != "rtmp://"+addr+"/a/b" || flashVer != "test/1.0" {
		t.Errorf("connect app %q, tcUrl %q, flashVer %q", app, tcURL, flashVer)
	}

	addr, result = fakeServer(t, false, func(c *fakeConn) error { return nil })
	_, err = Dial(context.Background(), mustEndpoint(t, "rtmp://"+addr+"/live/key"), Options{ChunkSize: 1 << 31})
	if err == nil || !errors.Is(err, chunk.ErrBadChunkSize) || !strings.Contains(err.Error(), ": connect: chunk size:") {
		t.Errorf("chunk size 2^31: %v", err)
	}
	wait(t, result)
}

// TestDialRefused checks that each way a server says no is a
// *RefusedError for the right step, carrying the server's code.
func TestDialRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script func(s *script)
		want   RefusedError
	}{
		{"connect _error", func(s *script) {
			s.cmd(0, "_error", 1.0, nil, statusObj("error", "NetConnection.Connect.Rejected", "go away"))
		}, RefusedError{"connect", "NetConnection.Connect.Rejected", "go away"}},
		{"connect _result at level error", func(s *script) {
			s.cmd(0, "_result", 1.0, nil, statusObj("error", "NetConnection.Connect.Failed", "full"))
		}, RefusedError{"connect", "NetConnection.Connect.Failed", "full"}},
		{"onStatus error before connect's result", func(s *script) {
			s.cmd(0, "onStatus", 0.0, nil, statusObj("error", "NetConnection.Connect.Rejected", "no"))
		}, RefusedError{"connect", "NetConnection.Connect.Rejected", "no"}},
		{"connect _error without status", func(s *script) {
			s.cmd(0, "_error", 1.0, nil)
		}, RefusedError{Step: "connect"}},
		{"createStream _error", func(s *script) {
			s.connected().cmd(0, "_error", 4.0, nil, statusObj("error", "NetConnection.Call.Failed", "no streams"))
		}, RefusedError{"createStream", "NetConnection.Call.Failed", "no streams"}},
		{"publish BadName", func(s *script) {
			s.connected().created(1).cmd(1, "onStatus", 0.0, nil, statusObj("error", "NetStream.Publish.BadName", "busy"))
		}, RefusedError{"publish", "NetStream.Publish.BadName", "busy"}},
		{"publish _error", func(s *script) {
			s.connected().created(1).cmd(0, "_error", 5.0, nil, statusObj("error", "NetStream.Publish.Unauthorized", "who"))
		}, RefusedError{"publish", "NetStream.Publish.Unauthorized", "who"}},
		{"error right after Publish.Start", func(s *script) {
			s.accept(1).cmd(1, "onStatus", 0.0, nil, statusObj("error", "NetStream.Publish.Denied", "changed my mind"))
		}, RefusedError{"publish", "NetStream.Publish.Denied", "changed my mind"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			CheckGoroutines(t)
			s := newScript(t)
			tc.script(s)
			b := s.bytes()
			addr, result := fakeServer(t, false, func(c *fakeConn) error { return c.write(b) })
			_, err := Dial(context.Background(), mustEndpoint(t, "rtmp://"+addr+"/live/s3cretkey?t0ken=1"), Options{})
			re := refused(err)
			if re == nil || *re != tc.want {
				t.Fatalf("Dial: %v, want a refusal %+v", err, tc.want)
			}
			prefix := "relay: rtmp://" + addr + "/live: " + tc.want.Step + " refused: "
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q, want it to start %q", err, prefix)
			}
			noSecrets(t, err, "s3cretkey", "t0ken")
			if r := wait(t, result); r.err != nil {
				t.Error(r.err)
			}
		})
	}
}

// TestDialFailures checks that servers that send garbage, close, or say
// nothing make Dial fail quickly, naming the step, with everything closed.
func TestDialFailures(t *testing.T) {
	type testCase struct {
		name    string
		raw     bool          // no server handshake
		timeout time.Duration // of ctx; 0 means 10 s, which must not be reached
		serve   func(c *fakeConn, cancel context.CancelFunc) error
		step    string
		is      error  // errors.Is target, if any
		text    string // in the message, if any
	}
	writeAndWait := func(b []byte) func(*fakeConn, context.CancelFunc) error {
		return func(c *fakeConn, _ context.CancelFunc) error {
			if err := c.write(b); err != nil {
				return err
			}
			<-c.eof
			return nil
		}
	}
	writeAndClose := func(b []byte) func(*fakeConn, context.CancelFunc) error {
		return func(c *fakeConn, _ context.CancelFunc) error {
			err := c.write(b)
			c.nc.Close()
			return err
		}
	}
	random := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	hugeHeader := []byte{0x03, 0, 0, 0, 0xff, 0xff, 0xff, chunk.TypeCommandAMF0, 0, 0, 0, 0}
	connected := newScript(t).connected().bytes()
	s := newScript(t)
	s.msg(csidCommand, chunk.TypeCommandAMF0, 0, []byte{0xff, 0xff})
	badAMF := s.bytes()
	badID := func(id any) []byte { return newScript(t).connected().cmd(0, "_result", 4.0, nil, id).bytes() }
	cases := []testCase{
		{name: "garbage after the handshake", serve: writeAndWait(bytes.Repeat([]byte{0xff}, 64)), step: "connect", is: chunk.ErrNoPreviousHeader},
		{name: "random bytes, then close", serve: writeAndClose(random), step: "connect"},
		{name: "a 16 MiB message", serve: writeAndWait(hugeHeader), step: "connect", is: chunk.ErrMessageTooLarge},
		{name: "a command that is not AMF0", serve: writeAndWait(badAMF), step: "connect", text: "server command"},
		{name: "chunk size 0", serve: writeAndWait(newScript(t).u32(chunk.TypeSetChunkSize, 0).bytes()), step: "connect", is: chunk.ErrBadChunkSize},
		{name: "short window acknowledgement size", serve: writeAndWait(newScript(t).msg(csidControl, chunk.TypeWindowAckSize, 0, []byte{1, 2}).bytes()), step: "connect", text: "window acknowledgement size: 2-byte payload"},
		{name: "short ping", serve: writeAndWait(newScript(t).msg(csidControl, chunk.TypeUserControl, 0, []byte{0, 6, 1}).bytes()), step: "connect", text: "ping request: 3-byte payload"},
		{name: "stream id -1", serve: writeAndWait(badID(-1.0)), step: "createStream", text: "result carries stream id -1"},
		{name: "stream id 1.5", serve: writeAndWait(badID(1.5)), step: "createStream", text: "stream id 1.5"},
		{name: "stream id 2^32", serve: writeAndWait(badID(float64(1 << 32))), step: "createStream", text: "stream id"},
		{name: "stream id a string", serve: writeAndWait(badID("1")), step: "createStream", text: "stream id 1"},
		{name: "stream id missing", serve: writeAndWait(newScript(t).connected().cmd(0, "_result", 4.0).bytes()), step: "createStream", text: "stream id <nil>"},
		{name: "not an RTMP server", raw: true, serve: func(c *fakeConn, _ context.CancelFunc) error {
			reply := append([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"), make([]byte, 4096)...)
			return c.write(reply)
		}, step: "handshake", text: "S0 version 0x48"},
		{name: "closes during the handshake", raw: true, serve: func(c *fakeConn, _ context.CancelFunc) error {
			// All of C0C1, so that closing is an orderly end, not a reset.
			if _, err := io.ReadFull(c.nc, make([]byte, 1537)); err != nil {
				return err
			}
			return writeAndClose([]byte{3, 0, 0, 0})(c, nil)
		}, step: "handshake", is: io.ErrUnexpectedEOF},
		{name: "closes after connect", serve: func(c *fakeConn, _ context.CancelFunc) error {
			if err := c.waitCommand("connect"); err != nil {
				return err
			}
			return writeAndClose(connected[:len(connected)-10])(c, nil)
		}, step: "connect", is: io.ErrUnexpectedEOF, text: "server closed the connection"},
		{name: "closes after createStream", serve: func(c *fakeConn, _ context.CancelFunc) error {
			if err := c.write(connected); err != nil {
				return err
			}
			if err := c.waitCommand("createStream"); err != nil {
				return err
			}
			c.nc.Close()
			return nil
		}, step: "createStream", text: "server closed the connection"},
		{name: "never answers connect", timeout: 300 * time.Millisecond, serve: writeAndWait(nil), step: "connect", is: context.DeadlineExceeded},
		{name: "never answers the handshake", raw: true, timeout: 300 * time.Millisecond, serve: func(c *fakeConn, _ context.CancelFunc) error {
			_, err := io.Copy(io.Discard, c.nc)
			return err
		}, step: "handshake", is: context.DeadlineExceeded},
		{name: "never answers publish", timeout: 300 * time.Millisecond, serve: writeAndWait(newScript(t).connected().created(1).bytes()), step: "publish", is: context.DeadlineExceeded},
		{name: "cancelled", serve: func(c *fakeConn, cancel context.CancelFunc) error {
			if err := c.waitCommand("connect"); err != nil {
				return err
			}
			cancel()
			<-c.eof
			return nil
		}, step: "connect", is: context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			CheckGoroutines(t)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			addr, result := fakeServer(t, tc.raw, func(c *fakeConn) error { return tc.serve(c, cancel) })
			start := time.Now()
			conn, err := Dial(ctx, mustEndpoint(t, "rtmp://"+addr+"/live/s3cretkey?t0ken=1"), Options{})
			elapsed := time.Since(start)
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded")
			}
			t.Logf("%v after %v", err, elapsed.Round(time.Millisecond))
			if limit := min(timeout, 3*time.Second) + 2*time.Second; elapsed > limit {
				t.Errorf("Dial took %v", elapsed)
			}
			if prefix := "relay: rtmp://" + addr + "/live: " + tc.step + ": "; !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q, want it to start %q", err, prefix)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not mention %q", err, tc.text)
			}
			if refused(err) != nil {
				t.Errorf("error %q is a refusal", err)
			}
			noSecrets(t, err, "s3cretkey", "t0ken")
			if r := wait(t, result); r.err != nil {
				t.Errorf("server: %v", r.err)
			}
		})
	}
}

func TestDialUnreachable(t *testing.T) {
	CheckGoroutines(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(context.Background(), mustEndpoint(t, "rtmp://"+addr+"/live/key"), Options{})
	if err == nil || !strings.HasPrefix(err.Error(), "relay: rtmp://"+addr+"/live: dial: ") {
		t.Errorf("Dial to a closed port: %v", err)
	}
	if _, err := Dial(context.Background(), Endpoint{}, Options{}); err == nil {
		t.Error("Dial of the zero Endpoint succeeded")
	}
}
