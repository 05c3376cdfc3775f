package relay

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/handshake"
)

// Chunk stream ids of what Dial sends: control where the specification puts
// it, commands where encoders put them. The writer opens every message with
// a full header, so a caller may reuse them without sharing any state.
const (
	csidControl = 2
	csidCommand = 3
)

// User control events (RTMP §7.1.7).
const (
	ucPingRequest  = 6
	ucPingResponse = 7
)

// readBufSize fits everything a server says during setup in a read or two.
const readBufSize = 8 << 10

// maxServerMessage bounds one message from the server. What a publisher
// receives is a few hundred bytes of commands; a corrupt or hostile length
// must cost an error, not memory.
const maxServerMessage = 1 << 20

// Transaction ids, in the order encoders number their calls.
const (
	txnConnect       = 1
	txnReleaseStream = 2
	txnFCPublish     = 3
	txnCreateStream  = 4
	txnPublish       = 5
)

// Status codes the exchange waits for.
const codePublishStart = "NetStream.Publish.Start"

// step is where the exchange stands: the reply it waits for.
type step uint8

const (
	stepHandshake step = iota
	stepConnect
	stepCreateStream
	stepPublish
	stepDone
)

func (s step) String() string {
	switch s {
	case stepHandshake:
		return "handshake"
	case stepConnect:
		return "connect"
	case stepCreateStream:
		return "createStream"
	}
	// What arrives after Publish.Start in the same read is still the
	// publish step's business.
	return "publish"
}

// exchange is the client side of the setup, over a connected (and, for
// rtmps, encrypted) net.Conn. It reads only when waiting for a reply and
// answers from inside the chunk reader's callback by queueing into wbuf,
// which is written once per read.
type exchange struct {
	nc        net.Conn
	ep        Endpoint
	chunkSize uint32
	flashVer  string

	r    *chunk.Reader
	w    *chunk.Writer
	rbuf []byte
	wbuf []byte // framed messages waiting for flush
	abuf []byte // AMF0 body being framed

	step      step
	msid      uint32
	ackWindow uint32
	lastAck   uint64
}

func newExchange(nc net.Conn, ep Endpoint, opts Options) *exchange {
	x := &exchange{
		nc:        nc,
		ep:        ep,
		chunkSize: opts.ChunkSize,
		flashVer:  opts.FlashVer,
		r:         chunk.NewReader(maxServerMessage),
		w:         chunk.NewWriter(),
		rbuf:      make([]byte, readBufSize),
	}
	if x.chunkSize == 0 {
		x.chunkSize = DefaultChunkSize
	}
	if x.flashVer == "" {
		x.flashVer = DefaultFlashVer
	}
	return x
}

// conn hands the finished exchange's state over.
func (x *exchange) conn() *Conn {
	return &Conn{NetConn: x.nc, Reader: x.r, Writer: x.w, StreamID: x.msid, AckWindow: x.ackWindow, LastAck: x.lastAck}
}

// run performs the exchange up to Publish.Start. On error x.step is the
// step that failed.
func (x *exchange) run() error {
	if err := handshake.Client(x.nc, rand.Reader, handshake.ClientOptions{}); err != nil {
		return err
	}
	x.step = stepConnect
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], x.chunkSize)
	// Set Chunk Size goes out framed at the old size, and everything
	// after it at the new one.
	x.queue(csidControl, chunk.TypeSetChunkSize, 0, size[:])
	if err := x.w.SetChunkSize(x.chunkSize); err != nil {
		return fmt.Errorf("chunk size: %w", err)
	}
	obj := amf0.Object{
		{Key: "app", Value: x.ep.App},
		{Key: "type", Value: "nonprivate"},
		{Key: "flashVer", Value: x.flashVer},
		{Key: "tcUrl", Value: x.ep.TCURL},
	}
	if err := x.command(0, "connect", float64(txnConnect), obj); err != nil {
		return err
	}
	if err := x.flush(); err != nil {
		return err
	}
	for {
		n, err := x.nc.Read(x.rbuf)
		if n > 0 {
			if ferr := x.r.Feed(x.rbuf[:n], x.handle); ferr != nil {
				return ferr
			}
			x.ack()
			if ferr := x.flush(); ferr != nil {
				return ferr
			}
		}
		if x.step == stepDone {
			// A read error that came with the status is the caller's to
			// find on its next read.
			return nil
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("server closed the connection: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
	}
}

// handle answers one message from the server.
func (x *exchange) handle(m *chunk.Message) error {
	switch m.TypeID {
	case chunk.TypeWindowAckSize:
		if len(m.Payload) < 4 {
			return fmt.Errorf("window acknowledgement size: %d-byte payload", len(m.Payload))
		}
		x.ackWindow = binary.BigEndian.Uint32(m.Payload)
	case chunk.TypeUserControl:
		if len(m.Payload) < 2 || binary.BigEndian.Uint16(m.Payload) != ucPingRequest {
			// StreamBegin and the rest tell a publisher nothing it needs.
			return nil
		}
		if len(m.Payload) < 6 {
			return fmt.Errorf("ping request: %d-byte payload", len(m.Payload))
		}
		var pong [6]byte
		binary.BigEndian.PutUint16(pong[:], ucPingResponse)
		copy(pong[2:], m.Payload[2:6])
		x.queue(csidControl, chunk.TypeUserControl, 0, pong[:])
	case chunk.TypeCommandAMF0, chunk.TypeCommandAMF3:
		cmd, err := decodeCommand(m)
		if err != nil {
			return err
		}
		switch cmd.name {
		case "_result", "_error":
			return x.onResult(&cmd)
		case "onStatus":
			return x.onStatus(&cmd)
		}
		// onBWDone, _checkbw, onFCPublish and the like: courtesy calls
		// that need no answer for publishing to work.
	}
	// Set Chunk Size and Abort are applied by the reader itself; Set Peer
	// Bandwidth, acknowledgements, data and media need no answer.
	return nil
}

// onResult follows a _result or _error answering one of our calls.
func (x *exchange) onResult(cmd *command) error {
	code, level, desc := cmd.status()
	refused := cmd.name == "_error" || level == "error"
	switch {
	case cmd.txn == txnConnect && x.step == stepConnect:
		if refused {
			return &RefusedError{Step: stepConnect.String(), Code: code, Description: desc}
		}
		x.step = stepCreateStream
		if err := x.command(0, "releaseStream", float64(txnReleaseStream), nil, x.ep.Name); err != nil {
			return err
		}
		if err := x.command(0, "FCPublish", float64(txnFCPublish), nil, x.ep.Name); err != nil {
			return err
		}
		return x.command(0, "createStream", float64(txnCreateStream), nil)
	case cmd.txn == txnCreateStream && x.step == stepCreateStream:
		if refused {
			return &RefusedError{Step: stepCreateStream.String(), Code: code, Description: desc}
		}
		id, ok := cmd.arg(1).(float64)
		if !ok || id != math.Trunc(id) || id < 1 || id > math.MaxUint32 {
			return fmt.Errorf("result carries stream id %v, want an integer in 1..2^32-1", cmd.arg(1))
		}
		x.msid = uint32(id)
		x.step = stepPublish
		return x.command(x.msid, "publish", float64(txnPublish), nil, x.ep.Name, "live")
	case cmd.txn == txnPublish && x.step >= stepPublish && refused:
		return &RefusedError{Step: stepPublish.String(), Code: code, Description: desc}
	}
	// Results for releaseStream and FCPublish, errors included: servers
	// answer these historical calls inconsistently, ffmpeg ignores them.
	return nil
}

// onStatus follows a status event: an error refuses the step we are at.
func (x *exchange) onStatus(cmd *command) error {
	code, level, desc := cmd.status()
	if level == "error" {
		return &RefusedError{Step: x.step.String(), Code: code, Description: desc}
	}
	if x.step == stepPublish && code == codePublishStart {
		x.step = stepDone
	}
	return nil
}

// ack queues an Acknowledgement once the server's window has been read.
func (x *exchange) ack() {
	read := x.r.BytesRead()
	if b, due := chunk.AckDue(read, x.lastAck, x.ackWindow); due {
		x.queue(csidControl, chunk.TypeAck, 0, b[:])
		x.lastAck = read
	}
}

func (x *exchange) queue(csid uint32, typ uint8, msid uint32, payload []byte) {
	x.wbuf = x.w.Append(x.wbuf, &chunk.Message{CSID: csid, TypeID: typ, StreamID: msid, Payload: payload})
}

// command queues an AMF0 command on message stream msid.
func (x *exchange) command(msid uint32, name string, vals ...any) error {
	var err error
	x.abuf, err = amf0.AppendAll(x.abuf[:0], name)
	if err == nil {
		x.abuf, err = amf0.AppendAll(x.abuf, vals...)
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	x.queue(csidCommand, chunk.TypeCommandAMF0, msid, x.abuf)
	return nil
}

func (x *exchange) flush() error {
	if len(x.wbuf) == 0 {
		return nil
	}
	_, err := x.nc.Write(x.wbuf)
	x.wbuf = x.wbuf[:0]
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// command is a decoded AMF command from the server.
type command struct {
	name string
	txn  float64
	args []any // after the transaction id; args[0] is the command object
}

func decodeCommand(m *chunk.Message) (command, error) {
	p := m.Payload
	if m.TypeID == chunk.TypeCommandAMF3 && len(p) > 0 {
		// An AMF3 command opens with a format byte; the command itself is
		// AMF0 in practice.
		p = p[1:]
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
		return command{}, fmt.Errorf("server command: name is %T, not a string", vals[0])
	}
	c := command{name: name}
	if len(vals) > 1 {
		c.txn, _ = vals[1].(float64)
		c.args = vals[2:]
	}
	return c, nil
}

func (c *command) arg(i int) any {
	if i < len(c.args) {
		return c.args[i]
	}
	return nil
}

// status returns the code, level and description of the first status
// object among the arguments: a _result to connect carries the server's
// properties first and the status second.
func (c *command) status() (code, level, desc string) {
	for _, a := range c.args {
		o, ok := a.(amf0.Object)
		if !ok {
			continue
		}
		_, hasCode := o.Get("code")
		_, hasLevel := o.Get("level")
		if hasCode || hasLevel {
			code, _ = o.GetString("code")
			level, _ = o.GetString("level")
			desc, _ = o.GetString("description")
			return code, level, desc
		}
	}
	return "", "", ""
}
