package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/handshake"
)

// Chunk stream ids: control, commands, audio, data and video each on their
// own, as encoders keep them.
const (
	csidControl = 2
	csidCommand = 3
	csidAudio   = 4
	csidData    = 5
	csidVideo   = 6
)

// User control events (RTMP §7.1.7).
const (
	ucStreamEOF       = 1
	ucSetBufferLength = 3
	ucPingRequest     = 6
	ucPingResponse    = 7
)

// Read buffer sizes. Publishers receive a few hundred bytes in their whole
// life; players read media through theirs.
const (
	publisherReadBuf = 2 << 10
	playerReadBuf    = 32 << 10
)

// maxInboundMessage bounds a message from the server. The server is under
// test, not trusted: a corrupt length must cost an error, not memory.
const maxInboundMessage = 8 << 20

// RefusedError is a server's explicit no: an _error result or an onStatus
// at level error.
type RefusedError struct {
	Command string
	Code    string
	Desc    string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s refused: %s (%s)", e.Command, e.Code, e.Desc)
}

// command is a decoded AMF0 command from the server.
type command struct {
	name string
	txn  float64
	args []any // after the transaction id; args[0] is the command object
}

// setup follows a client's connect and createStream, which players and
// publishers make alike.
type setup struct {
	connected bool
	created   bool
	msid      uint32
}

// reply applies a _result or _error answering connect (transaction
// connect) or createStream (transaction create). It reports whether cmd was
// such an answer; an _error is a refusal.
func (s *setup) reply(cmd *command, connect, create float64) (bool, error) {
	if cmd.name != "_result" && cmd.name != "_error" || cmd.txn != connect && cmd.txn != create {
		return false, nil
	}
	code, _, desc := cmd.info()
	what := "connect"
	if cmd.txn == create {
		what = "createStream"
	}
	if cmd.name == "_error" {
		return true, &RefusedError{Command: what, Code: code, Desc: desc}
	}
	if cmd.txn == connect {
		if code != "" && code != "NetConnection.Connect.Success" {
			return true, &RefusedError{Command: what, Code: code, Desc: desc}
		}
		s.connected = true
		return true, nil
	}
	id, ok := cmd.arg(1).(float64)
	if !ok || id < 0 || id > 1<<31 {
		return true, fmt.Errorf("createStream result: stream id %v", cmd.arg(1))
	}
	s.msid = uint32(id)
	s.created = true
	return true, nil
}

func (c *command) arg(i int) any {
	if i < len(c.args) {
		return c.args[i]
	}
	return nil
}

// info returns the code, level and description of a status object
// argument (onStatus, _result, _error).
func (c *command) info() (code, level, desc string) {
	for _, a := range c.args {
		if o, ok := a.(amf0.Object); ok {
			code, _ = o.GetString("code")
			level, _ = o.GetString("level")
			desc, _ = o.GetString("description")
			if code != "" {
				return code, level, desc
			}
		}
	}
	return "", "", ""
}

// rtmpConn is the client end of one RTMP connection. One goroutine drives
// it: it reads only when that goroutine asks (blocking during setup, polled
// without blocking while publishing), so no second goroutine is needed.
type rtmpConn struct {
	nc   *net.TCPConn
	raw  syscall.RawConn
	r    *chunk.Reader
	w    *chunk.Writer
	rbuf []byte
	wbuf []byte // framed small messages
	abuf []byte // AMF0 bodies of commands

	ackWindow uint32
	lastAck   uint64

	// Bytes and messages written after the handshake.
	bytesOut uint64
	msgsOut  uint64

	// onCommand and onMessage receive what the connection does not handle
	// itself (protocol control and user control are handled here). They are
	// set once per role, so dispatching allocates nothing.
	onCommand func(*command) error
	onMessage func(*chunk.Message) error
	feedFn    func(*chunk.Message) error

	// Non-blocking poll result, written by pollFn.
	pollFn  func(fd uintptr) bool
	pollN   int
	pollErr error

	iov net.Buffers // vectored media writes; reused
}

// dial connects and performs the simple handshake, all within the context
// and setup deadline.
func dial(ctx context.Context, addr string, deadline time.Time, readBuf int) (*rtmpConn, error) {
	d := net.Dialer{Deadline: deadline}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("dial: %T is not a TCP connection", nc)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &rtmpConn{
		nc:   tc,
		raw:  raw,
		r:    chunk.NewReader(maxInboundMessage),
		w:    chunk.NewWriter(),
		rbuf: make([]byte, readBuf),
	}
	c.feedFn = c.dispatch
	c.pollFn = c.pollRead
	if err := tc.SetDeadline(deadline); err != nil {
		nc.Close()
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	if err := handshake.Client(tc, rand.Reader, handshake.ClientOptions{}); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// Close closes the socket.
func (c *rtmpConn) Close() error { return c.nc.Close() }

// write sends framed bytes.
func (c *rtmpConn) write(b []byte) error {
	n, err := c.nc.Write(b)
	c.bytesOut += uint64(n)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// send frames and writes one small message.
func (c *rtmpConn) send(csid uint32, typ uint8, msid, ts uint32, payload []byte) error {
	c.wbuf = c.w.Append(c.wbuf[:0], &chunk.Message{CSID: csid, TypeID: typ, StreamID: msid, Timestamp: ts, Payload: payload})
	c.msgsOut++
	return c.write(c.wbuf)
}

// command sends an AMF0 command on message stream msid.
func (c *rtmpConn) command(msid uint32, vals ...any) error {
	var err error
	if c.abuf, err = amf0.AppendAll(c.abuf[:0], vals...); err != nil {
		return fmt.Errorf("encode %v: %w", vals[0], err)
	}
	if err := c.send(csidCommand, chunk.TypeCommandAMF0, msid, 0, c.abuf); err != nil {
		return fmt.Errorf("%v: %w", vals[0], err)
	}
	return nil
}

// setChunkSize announces and applies the outbound chunk size.
func (c *rtmpConn) setChunkSize(n uint32) error {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], n)
	if err := c.send(csidControl, chunk.TypeSetChunkSize, 0, 0, p[:]); err != nil {
		return fmt.Errorf("set chunk size: %w", err)
	}
	return c.w.SetChunkSize(n)
}

func (c *rtmpConn) userControl(event uint16, value uint32) error {
	var p [6]byte
	binary.BigEndian.PutUint16(p[:], event)
	binary.BigEndian.PutUint32(p[2:], value)
	return c.send(csidControl, chunk.TypeUserControl, 0, 0, p[:])
}

// setBufferLength tells the server how much a player buffers, as players
// do right after play.
func (c *rtmpConn) setBufferLength(msid uint32, ms uint32) error {
	var p [10]byte
	binary.BigEndian.PutUint16(p[:], ucSetBufferLength)
	binary.BigEndian.PutUint32(p[2:], msid)
	binary.BigEndian.PutUint32(p[6:], ms)
	return c.send(csidControl, chunk.TypeUserControl, 0, 0, p[:])
}

// readOnce blocks for inbound bytes and processes them. It returns io.EOF,
// unwrapped, when the server closed the connection.
func (c *rtmpConn) readOnce() error {
	n, err := c.nc.Read(c.rbuf)
	if n > 0 {
		if perr := c.consume(c.rbuf[:n]); perr != nil {
			return perr
		}
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("read: %w", err)
	}
	return nil
}

// until reads and processes messages until done reports true.
func (c *rtmpConn) until(done func() bool) error {
	for !done() {
		if err := c.readOnce(); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("server closed the connection")
			}
			return err
		}
	}
	return nil
}

// poll processes whatever the server has sent without waiting for more.
func (c *rtmpConn) poll() error {
	if err := c.raw.Read(c.pollFn); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	switch {
	case errors.Is(c.pollErr, syscall.EAGAIN), errors.Is(c.pollErr, syscall.EINTR):
		return nil
	case c.pollErr != nil:
		return fmt.Errorf("read: %w", c.pollErr)
	case c.pollN == 0:
		return errors.New("server closed the connection")
	}
	return c.consume(c.rbuf[:c.pollN])
}

// pollRead is the RawConn callback: one non-blocking read, never a wait.
func (c *rtmpConn) pollRead(fd uintptr) bool {
	c.pollN, c.pollErr = syscall.Read(int(fd), c.rbuf)
	return true
}

// drain half-closes the connection and reads until the server closes its
// side, so that the server sees an orderly end after everything we sent,
// and our unread replies do not turn our close into a reset.
func (c *rtmpConn) drain() error {
	if err := c.nc.CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	for {
		if err := c.readOnce(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (c *rtmpConn) consume(p []byte) error {
	if err := c.r.Feed(p, c.feedFn); err != nil {
		return err
	}
	// Acknowledge once the server's window is read.
	read := c.r.BytesRead()
	b, due := chunk.AckDue(read, c.lastAck, c.ackWindow)
	if !due {
		return nil
	}
	c.lastAck = read
	return c.send(csidControl, chunk.TypeAck, 0, 0, b[:])
}

// dispatch handles protocol and user control and hands the rest on.
func (c *rtmpConn) dispatch(m *chunk.Message) error {
	switch m.TypeID {
	case chunk.TypeSetChunkSize, chunk.TypeAbort, chunk.TypeAck, chunk.TypeSetPeerBandwidth:
		// The chunk reader applies the first two; the others need nothing.
		return nil
	case chunk.TypeWindowAckSize:
		if len(m.Payload) < 4 {
			return fmt.Errorf("window acknowledgement size: %d-byte payload", len(m.Payload))
		}
		c.ackWindow = binary.BigEndian.Uint32(m.Payload)
		return nil
	case chunk.TypeUserControl:
		if len(m.Payload) >= 6 && binary.BigEndian.Uint16(m.Payload) == ucPingRequest {
			return c.userControl(ucPingResponse, binary.BigEndian.Uint32(m.Payload[2:]))
		}
		return c.onMessage(m)
	case chunk.TypeCommandAMF0, chunk.TypeCommandAMF3:
		cmd, err := decodeCommand(m)
		if err != nil {
			return err
		}
		return c.onCommand(&cmd)
	}
	return c.onMessage(m)
}

func decodeCommand(m *chunk.Message) (command, error) {
	p := m.Payload
	if m.TypeID == chunk.TypeCommandAMF3 && len(p) > 0 {
		p = p[1:] // AMF3 command messages open with a format byte
	}
	vals, err := amf0.DecodeAll(p)
	if err != nil {
		return command{}, fmt.Errorf("server command: %w", err)
	}
	if len(vals) == 0 {
		return command{}, errors.New("server command: empty")
	}
	name, ok := vals[0].(string)
	if !ok {
		return command{}, fmt.Errorf("server command: name is %T", vals[0])
	}
	c := command{name: name}
	if len(vals) > 1 {
		c.txn, _ = vals[1].(float64)
		c.args = vals[2:]
	}
	return c, nil
}

// connect sends connect as an encoder or player does.
func (c *rtmpConn) connect(app, tcURL, flashVer string, publisher bool) error {
	obj := amf0.Object{
		{Key: "app", Value: app},
		{Key: "flashVer", Value: flashVer},
		{Key: "tcUrl", Value: tcURL},
	}
	if publisher {
		obj = append(obj, amf0.Property{Key: "type", Value: "nonprivate"})
	} else {
		obj = append(obj,
			amf0.Property{Key: "fpad", Value: false},
			amf0.Property{Key: "capabilities", Value: 15.0},
			amf0.Property{Key: "audioCodecs", Value: 4071.0},
			amf0.Property{Key: "videoCodecs", Value: 252.0},
			amf0.Property{Key: "videoFunction", Value: 1.0},
		)
	}
	return c.command(0, "connect", 1.0, obj)
}
