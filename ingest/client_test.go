package ingest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
	"github.com/mediad/mediad/ingest/handshake"
)

// syncBuffer is a log sink safe for concurrent sessions.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer runs an in-process server on a free loopback port.
func startServer(t testing.TB, cfg Config) (*Server, string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = zerolog.New(logs)
	srv := NewServer(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return srv, ln.Addr().String(), logs
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testClient is a minimal RTMP client for driving the server in tests.
type testClient struct {
	t    testing.TB
	conn net.Conn
	r    *chunk.Reader
	w    *chunk.Writer
	buf  []byte
	in   []chunk.Message
	rbuf []byte
}

func dialClient(t testing.TB, addr string) *testClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testClient{t: t, conn: c, r: chunk.NewReader(0), w: chunk.NewWriter(), rbuf: make([]byte, 64<<10)}
}

func (c *testClient) handshake() {
	c.t.Helper()
	if err := handshake.Client(c.conn, rand.Reader, handshake.ClientOptions{}); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
}

func (c *testClient) send(m chunk.Message) error {
	c.buf = c.w.Append(c.buf[:0], &m)
	_, err := c.conn.Write(c.buf)
	return err
}

func (c *testClient) command(msid uint32, vals ...any) {
	c.t.Helper()
	p, err := amf0.AppendAll(nil, vals...)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.send(chunk.Message{CSID: 3, TypeID: chunk.TypeCommandAMF0, StreamID: msid, Payload: p}); err != nil {
		c.t.Fatalf("send %v: %v", vals[0], err)
	}
}

// next returns the next message from the server, or an error when the
// connection ends or nothing arrives in time.
func (c *testClient) next() (chunk.Message, error) {
	for len(c.in) == 0 {
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.conn.Read(c.rbuf)
		if n > 0 {
			if ferr := c.r.Feed(c.rbuf[:n], func(m *chunk.Message) error {
				c.in = append(c.in, *m)
				return nil
			}); ferr != nil {
				return chunk.Message{}, ferr
			}
		}
		if err != nil && len(c.in) == 0 {
			return chunk.Message{}, err
		}
	}
	m := c.in[0]
	c.in = c.in[1:]
	return m, nil
}

// expectCommand reads until a command named name arrives and returns its
// values.
func (c *testClient) expectCommand(name string) []any {
	c.t.Helper()
	for {
		m, err := c.next()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", name, err)
		}
		if m.TypeID != chunk.TypeCommandAMF0 {
			continue
		}
		vals, err := amf0.DecodeAll(m.Payload)
		if err != nil {
			c.t.Fatalf("decode reply: %v", err)
		}
		if vals[0] == name {
			return vals
		}
	}
}

// expectStatus reads until an onStatus arrives and returns its code.
func (c *testClient) expectStatus() string {
	c.t.Helper()
	vals := c.expectCommand("onStatus")
	obj, _ := vals[3].(amf0.Object)
	code, _ := obj.GetString("code")
	return code
}

// expectClosed reads until the server closes the connection.
func (c *testClient) expectClosed() {
	c.t.Helper()
	for {
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.conn.Read(c.rbuf)
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") {
			return
		}
		c.t.Fatalf("want the server to close the connection, got %v", err)
	}
}

func (c *testClient) connect(app string) {
	c.t.Helper()
	c.handshake()
	c.command(0, "connect", 1.0, amf0.Object{{Key: "app", Value: app}, {Key: "tcUrl", Value: "rtmp://127.0.0.1/" + app}})
	vals := c.expectCommand("_result")
	obj, _ := vals[3].(amf0.Object)
	if code, _ := obj.GetString("code"); code != "NetConnection.Connect.Success" {
		c.t.Fatalf("connect: %v", vals)
	}
}

func (c *testClient) createStream() uint32 {
	c.t.Helper()
	c.command(0, "createStream", 2.0, nil)
	vals := c.expectCommand("_result")
	id, _ := vals[3].(float64)
	return uint32(id)
}

// publish connects and publishes app/key, returning the message stream id
// and the status code the server answered with.
func (c *testClient) publish(app, key string) (uint32, string) {
	c.t.Helper()
	c.connect(app)
	msid := c.createStream()
	c.command(msid, "publish", 3.0, nil, key, "live")
	return msid, c.expectStatus()
}

func (c *testClient) play(app, key string) uint32 {
	c.t.Helper()
	c.connect(app)
	msid := c.createStream()
	c.command(msid, "play", 3.0, nil, key)
	for _, want := range []string{"NetStream.Play.Reset", "NetStream.Play.Start"} {
		if got := c.expectStatus(); got != want {
			c.t.Fatalf("play %s/%s: status %s, want %s", app, key, got, want)
		}
	}
	return msid
}

// Synthetic media: an AVC sequence header, keyframes and inter frames.
var (
	avcSeqHeader = []byte{0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 4, 0x68, 0xee, 0x3c, 0x80}
	aacSeqHeader = []byte{0xaf, 0, 0x12, 0x10}
)

func videoFrame(key bool, n int, seq int) []byte {
	p := make([]byte, 5+4+n)
	p[0] = 0x27
	if key {
		p[0] = 0x17
	}
	p[1] = 1
	p[5], p[6], p[7], p[8] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	for i := 9; i < len(p); i++ {
		p[i] = byte(seq + i)
	}
	return p
}

func (c *testClient) sendMedia(msid uint32, typ uint8, ts uint32, payload []byte) error {
	csid := uint32(6)
	if typ == chunk.TypeAudio {
		csid = 4
	}
	return c.send(chunk.Message{CSID: csid, TypeID: typ, StreamID: msid, Timestamp: ts, Payload: payload})
}

// recordingTags reads every tag of the single recording of app/key under
// dir, failing on anything but a clean end.
func recordingTags(t testing.TB, dir, app, key string) []flv.Tag {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, app, key, "*.flv"))
	if len(files) != 1 {
		t.Fatalf("recordings of %s/%s: %v, want one file", app, key, files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := flv.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var tags []flv.Tag
	for {
		tag, err := r.Next()
		if errors.Is(err, io.EOF) {
			return tags
		}
		if err != nil {
			t.Fatalf("recording %s ends badly: %v", files[0], err)
		}
		tags = append(tags, tag)
	}
}

func (c *testClient) String() string { return fmt.Sprintf("client %s", c.conn.LocalAddr()) }
