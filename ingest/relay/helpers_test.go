package relay

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/handshake"
)

// script frames what a server sends after the handshake. The same scripts
// drive the fake servers and seed the fuzz target.
type script struct {
	tb testing.TB
	w  *chunk.Writer
	b  []byte
}

func newScript(tb testing.TB) *script { return &script{tb: tb, w: chunk.NewWriter()} }

func (s *script) bytes() []byte { return s.b }

func (s *script) msg(csid uint32, typ uint8, msid uint32, payload []byte) *script {
	s.b = s.w.Append(s.b, &chunk.Message{CSID: csid, TypeID: typ, StreamID: msid, Payload: payload})
	return s
}

func (s *script) u32(typ uint8, v uint32, extra ...byte) *script {
	p := binary.BigEndian.AppendUint32(nil, v)
	return s.msg(csidControl, typ, 0, append(p, extra...))
}

// chunkSize announces and applies a new chunk size, as the server would.
func (s *script) chunkSize(n uint32) *script {
	s.u32(chunk.TypeSetChunkSize, n)
	if err := s.w.SetChunkSize(n); err != nil {
		s.tb.Fatal(err)
	}
	return s
}

func (s *script) userControl(event uint16, v uint32) *script {
	p := binary.BigEndian.AppendUint16(nil, event)
	return s.msg(csidControl, chunk.TypeUserControl, 0, binary.BigEndian.AppendUint32(p, v))
}

func (s *script) cmd(msid uint32, vals ...any) *script {
	p, err := amf0.AppendAll(nil, vals...)
	if err != nil {
		s.tb.Fatal(err)
	}
	return s.msg(csidCommand, chunk.TypeCommandAMF0, msid, p)
}

func statusObj(level, code, desc string) amf0.Object {
	return amf0.Object{{Key: "level", Value: level}, {Key: "code", Value: code}, {Key: "description", Value: desc}}
}

// connected is what mediad and nginx-rtmp send for a connect.
func (s *script) connected() *script {
	s.u32(chunk.TypeWindowAckSize, 2_500_000)
	s.u32(chunk.TypeSetPeerBandwidth, 2_500_000, 2)
	s.chunkSize(4096)
	props := amf0.Object{{Key: "fmsVer", Value: "FMS/3,0,1,123"}, {Key: "capabilities", Value: 31.0}}
	return s.cmd(0, "_result", 1.0, props, statusObj("status", "NetConnection.Connect.Success", "Connection succeeded."))
}

// created answers releaseStream, FCPublish and createStream.
func (s *script) created(msid uint32) *script {
	s.cmd(0, "_result", 2.0, nil, amf0.Undefined{})
	s.cmd(0, "_result", 3.0, nil, amf0.Undefined{})
	return s.cmd(0, "_result", 4.0, nil, float64(msid))
}

func (s *script) published(msid uint32) *script {
	s.userControl(0, msid) // StreamBegin
	return s.cmd(msid, "onStatus", 0.0, nil, statusObj("status", codePublishStart, "live/key is now published"))
}

// accept is a whole successful exchange.
func (s *script) accept(msid uint32) *script { return s.connected().created(msid).published(msid) }

// serverHandshake is the server side of the handshake over rw.
func serverHandshake(rw io.ReadWriter) error {
	var hs handshake.Server
	c0c1 := make([]byte, handshake.C0C1Size)
	if _, err := io.ReadFull(rw, c0c1); err != nil {
		return fmt.Errorf("read C0C1: %w", err)
	}
	_, reply, err := hs.Feed(c0c1, rand.Reader, 0)
	if err != nil {
		return err
	}
	if _, err := rw.Write(reply); err != nil {
		return fmt.Errorf("write S0S1S2: %w", err)
	}
	c2 := make([]byte, handshake.C2Size)
	if _, err := io.ReadFull(rw, c2); err != nil {
		return fmt.Errorf("read C2: %w", err)
	}
	if _, _, err := hs.Feed(c2, rand.Reader, 0); err != nil {
		return err
	}
	return nil
}

// fakeConn is the server end of one connection to a fake server. A reader
// goroutine records every message the client sends.
type fakeConn struct {
	nc   net.Conn
	raw  bool          // no handshake: what the client sends is not parsed
	more chan struct{} // a message arrived (capacity 1)
	eof  chan struct{} // closed when the client side has ended

	mu      sync.Mutex
	msgs    []chunk.Message
	readErr error
}

func (c *fakeConn) read() {
	defer close(c.eof)
	r := chunk.NewReader(0)
	buf := make([]byte, 4096)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 && !c.raw {
			ferr := r.Feed(buf[:n], func(m *chunk.Message) error {
				c.mu.Lock()
				c.msgs = append(c.msgs, *m)
				c.mu.Unlock()
				select {
				case c.more <- struct{}{}:
				default:
				}
				return nil
			})
			if ferr != nil {
				err = ferr
			}
		}
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			return
		}
	}
}

func (c *fakeConn) write(b []byte) error {
	_, err := c.nc.Write(b)
	return err
}

// waitCommand waits for the client to send the command name.
func (c *fakeConn) waitCommand(name string) error {
	timeout := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, m := range c.msgs {
			if cmd, err := decodeCommand(&m); err == nil && cmd.name == name {
				c.mu.Unlock()
				return nil
			}
		}
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-c.eof:
			return fmt.Errorf("client ended before sending %s", name)
		case <-timeout:
			return fmt.Errorf("no %s from the client", name)
		}
	}
}

// fakeResult is what a fake server saw once its connection ended.
type fakeResult struct {
	msgs []chunk.Message // what the client sent after the handshake
	err  error           // from serve
}

// fakeServer accepts one connection on a loopback listener, completes the
// server handshake and runs serve on it. With raw there is no handshake,
// and serve has the connection to itself: it must not wait for c.eof. Once serve has
// returned and the client has closed its end, the result arrives on the
// channel; every goroutine of the server has ended by then.
func fakeServer(t *testing.T, raw bool, serve func(c *fakeConn) error) (addr string, result <-chan fakeResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan fakeResult, 1)
	go func() {
		nc, err := ln.Accept()
		ln.Close()
		if err != nil {
			out <- fakeResult{err: err}
			return
		}
		defer nc.Close()
		// A bound for a test gone wrong, far above any test's own.
		if err := nc.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
			out <- fakeResult{err: err}
			return
		}
		c := &fakeConn{nc: nc, raw: raw, more: make(chan struct{}, 1), eof: make(chan struct{})}
		if raw {
			// serve owns the connection; the reader only waits for the end.
			err = serve(c)
			go c.read()
		} else {
			if err := serverHandshake(nc); err != nil {
				out <- fakeResult{err: fmt.Errorf("handshake: %w", err)}
				return
			}
			go c.read()
			err = serve(c)
		}
		<-c.eof
		c.mu.Lock()
		defer c.mu.Unlock()
		out <- fakeResult{msgs: c.msgs, err: err}
	}()
	return ln.Addr().String(), out
}

// wait returns the fake server's result.
func wait(t *testing.T, result <-chan fakeResult) fakeResult {
	t.Helper()
	select {
	case r := <-result:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("the fake server did not finish")
		return fakeResult{}
	}
}

// CheckGoroutines fails the test if, once its cleanups have run, more
// goroutines are left than when it started. Register it first: cleanups
// run last to first.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines left, %d before the test:\n%s", runtime.NumGoroutine(), before, buf)
				return
			}
			runtime.Gosched()
			time.Sleep(time.Millisecond)
		}
	})
}

// commandsIn decodes the commands among msgs.
func commandsIn(msgs []chunk.Message) []command {
	var out []command
	for i := range msgs {
		if msgs[i].TypeID != chunk.TypeCommandAMF0 {
			continue
		}
		if cmd, err := decodeCommand(&msgs[i]); err == nil {
			out = append(out, cmd)
		}
	}
	return out
}

// refused returns the *RefusedError in err, or nil.
func refused(err error) *RefusedError {
	var re *RefusedError
	if errors.As(err, &re) {
		return re
	}
	return nil
}

// noSecrets checks that an error does not repeat the stream name or query.
func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q reveals %q", err, s)
		}
	}
}
