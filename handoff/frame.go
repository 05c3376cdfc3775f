package handoff

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// Wire constants. The header layout (magic, then the version byte) is
// frozen for good: whatever a later protocol looks like, its first packet
// starts the same way, so two builds can always tell each other apart.
const (
	// ProtocolVersion is the handoff protocol this build speaks; a peer
	// speaking another one is refused at its first frame.
	ProtocolVersion = 1

	// MaxPacket bounds one SOCK_SEQPACKET packet, header included. It is
	// well under the default unix socket send buffer (wmem_default, 208 KiB),
	// so a packet always fits in one sendmsg.
	MaxPacket = 64 << 10

	// MaxFrameSize bounds a frame's body. The decoder refuses a larger
	// length before it allocates anything.
	MaxFrameSize = 256 << 20

	// MaxFDsPerFrame bounds the descriptors one frame carries. They all
	// ride on the frame's first packet, and the kernel takes at most
	// SCM_MAX_FD (253) per message.
	MaxFDsPerFrame = 250

	headerLen = 12
	magic     = "MDHO"
)

// msgType is the frame header's type byte. The values are part of the wire
// format and never change meaning.
type msgType uint8

const (
	typeHello    msgType = 1  // child → parent
	typePlan     msgType = 2  // parent → child
	typeRefuse   msgType = 3  // parent → child
	typeBatch    msgType = 4  // parent → child, carries descriptors
	typeEnd      msgType = 5  // parent → child
	typePrepared msgType = 6  // child → parent
	typeReject   msgType = 7  // child → parent
	typeCommit   msgType = 8  // parent → child
	typeAbort    msgType = 9  // parent → child
	typeReport   msgType = 10 // child → parent, after commit
	typeSync     msgType = 11 // parent → child, between batches
	typeSynced   msgType = 12 // child → parent, answers Sync
)

func (t msgType) String() string {
	switch t {
	case typeHello:
		return "Hello"
	case typePlan:
		return "Plan"
	case typeRefuse:
		return "Refuse"
	case typeBatch:
		return "Batch"
	case typeEnd:
		return "End"
	case typePrepared:
		return "Prepared"
	case typeReject:
		return "Reject"
	case typeCommit:
		return "Commit"
	case typeReport:
		return "Report"
	case typeAbort:
		return "Abort"
	case typeSync:
		return "Sync"
	case typeSynced:
		return "Synced"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

func (t msgType) known() bool { return t >= typeHello && t <= typeSynced }

// header is the fixed start of a frame's first packet:
//
//	0..3   magic "MDHO"
//	4      protocol version
//	5      message type
//	6..7   number of descriptors attached to this packet (big-endian)
//	8..11  body length in bytes (big-endian), excluding the header
type header struct {
	typ    msgType
	nfds   int
	length int
}

func appendHeader(dst []byte, h header) []byte {
	dst = append(dst, magic...)
	dst = append(dst, ProtocolVersion, byte(h.typ))
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.nfds))
	return binary.BigEndian.AppendUint32(dst, uint32(h.length))
}

func parseHeader(b []byte) (header, error) {
	if len(b) < headerLen {
		return header{}, fmt.Errorf("frame: %d-byte packet is shorter than a header", len(b))
	}
	if string(b[:4]) != magic {
		return header{}, fmt.Errorf("frame: bad magic %q", b[:4])
	}
	if b[4] != ProtocolVersion {
		return header{}, fmt.Errorf("frame: peer speaks protocol %d, this build speaks %d", b[4], ProtocolVersion)
	}
	h := header{
		typ:    msgType(b[5]),
		nfds:   int(binary.BigEndian.Uint16(b[6:8])),
		length: int(binary.BigEndian.Uint32(b[8:12])),
	}
	if !h.typ.known() {
		return header{}, fmt.Errorf("frame: unknown message %s", h.typ)
	}
	if h.nfds > MaxFDsPerFrame {
		return header{}, fmt.Errorf("frame: %d descriptors, limit %d", h.nfds, MaxFDsPerFrame)
	}
	if h.nfds > 0 && h.typ != typeBatch {
		return header{}, fmt.Errorf("frame: %s carries %d descriptors", h.typ, h.nfds)
	}
	if h.length > MaxFrameSize {
		return header{}, fmt.Errorf("frame: %s body of %d bytes, limit %d", h.typ, h.length, MaxFrameSize)
	}
	return h, nil
}

// packetReader is the receiving half of a packet transport: the socket in
// production, a byte slice in the fuzz target.
type packetReader interface {
	// readPacket reads one packet into p and returns its length and the
	// descriptors that came with it. A packet that does not fit in p is an
	// error, and so is an empty packet: the end of the stream, an error
	// wrapping ErrPeerClosed. On error no descriptor is returned open.
	readPacket(p []byte) (n int, fds []int, err error)
}

// packetWriter is the sending half. writePacket sends the parts, one
// after the other, as one packet with fds attached.
type packetWriter interface {
	writePacket(parts [][]byte, fds []int) error
}

// frame is one received message before its body is decoded. Until the
// frame is handed on, its fds are owned by the receiver, who must close
// them on every error path.
type frame struct {
	typ  msgType
	body []byte
	fds  []int
}

// readFrame reads one frame. pkt is scratch space for the first packet and
// must hold MaxPacket bytes. On error every descriptor received is closed.
func readFrame(r packetReader, pkt []byte) (frame, error) {
	n, fds, err := r.readPacket(pkt)
	if err != nil {
		return frame{}, err
	}
	fail := func(err error) (frame, error) {
		closeFDs(fds)
		return frame{}, err
	}
	h, err := parseHeader(pkt[:n])
	if err != nil {
		return fail(err)
	}
	if h.nfds != len(fds) {
		return fail(fmt.Errorf("frame: %s announces %d descriptors, %d arrived", h.typ, h.nfds, len(fds)))
	}
	first := pkt[headerLen:n]
	if len(first) > h.length {
		return fail(fmt.Errorf("frame: %s packet holds %d bytes past its %d-byte body", h.typ, len(first)-h.length, h.length))
	}
	// The length is the peer's claim. Up to trustedBody, which every batch
	// an honest sender makes fits, the body is allocated once at its size:
	// growing it by doubling copied each batch about twice over, into
	// memory a new process touches for the first time, while every
	// session waits (a third of the new process's CPU in an upgrade at
	// 1,000 streams). Beyond it, memory grows with the bytes that really
	// arrive, so a lying header costs at most twice what was sent.
	body := make([]byte, len(first), min(h.length, max(len(first), trustedBody)))
	copy(body, first)
	for len(body) < h.length {
		want := min(MaxPacket, h.length-len(body))
		body = reserve(body, want, h.length)
		n, more, err := r.readPacket(body[len(body) : len(body)+want])
		if err != nil {
			return fail(fmt.Errorf("frame: %s cut short at %d of %d bytes: %w", h.typ, len(body), h.length, err))
		}
		if len(more) > 0 {
			closeFDs(more)
			return fail(fmt.Errorf("frame: %d descriptors on a continuation packet of %s", len(more), h.typ))
		}
		body = body[:len(body)+n]
	}
	return frame{typ: h.typ, body: body, fds: fds}, nil
}

// trustedBody is the body size readFrame allocates on the header's word:
// twice what SendItems aims a batch at, so that a batch of one item just
// over the aim is covered too.
const trustedBody = 2 * batchBytes

// reserve makes room for want more bytes in b, doubling up to limit.
func reserve(b []byte, want, limit int) []byte {
	if cap(b)-len(b) >= want {
		return b
	}
	c := min(max(2*cap(b), len(b)+want), limit)
	nb := make([]byte, len(b), c)
	copy(nb, b)
	return nb
}

// writeFrame sends body as one frame of type t, split into packets of at
// most MaxPacket bytes, with fds on the first packet. hdr is scratch space
// of at least headerLen bytes.
func writeFrame(w packetWriter, hdr []byte, t msgType, body []byte, fds []int) error {
	return writeFrameParts(w, hdr, t, [][]byte{body}, fds)
}

// writeFrameParts sends the concatenation of body's parts as one frame:
// a batch's envelopes go from where the sessions exported them straight
// to the kernel, with no copy into one buffer first (memory the old
// process would touch for the first time while every session waits).
func writeFrameParts(w packetWriter, hdr []byte, t msgType, body [][]byte, fds []int) error {
	if len(fds) > MaxFDsPerFrame {
		return fmt.Errorf("handoff: send %s: %d descriptors, limit %d", t, len(fds), MaxFDsPerFrame)
	}
	total := 0
	for _, b := range body {
		total += len(b)
	}
	if total > MaxFrameSize {
		return fmt.Errorf("handoff: send %s: %d-byte body, limit %d", t, total, MaxFrameSize)
	}
	hdr = appendHeader(hdr[:0], header{typ: t, nfds: len(fds), length: total})
	var room [64][]byte
	pkt := append(room[:0], hdr)
	space := MaxPacket - headerLen
	off, queued := 0, 0 // body bytes sent, and in pkt
	send := func() error {
		if err := w.writePacket(pkt, fds); err != nil {
			if off == 0 {
				return fmt.Errorf("handoff: send %s: %w", t, err)
			}
			return fmt.Errorf("handoff: send %s at byte %d of %d: %w", t, off, total, err)
		}
		off += queued
		queued, fds, pkt, space = 0, nil, pkt[:0], MaxPacket
		return nil
	}
	for _, b := range body {
		for len(b) > 0 {
			// A packet may be short of MaxPacket (the reader takes
			// any size): one of many small parts ends at maxParts.
			if space == 0 || len(pkt) == maxParts {
				if err := send(); err != nil {
					return err
				}
			}
			n := min(len(b), space)
			pkt = append(pkt, b[:n])
			b, space, queued = b[n:], space-n, queued+n
		}
	}
	// The last packet; for an empty body, the header alone.
	if queued > 0 || off == 0 {
		return send()
	}
	return nil
}

// maxParts bounds the parts of one packet, below the kernel's IOV_MAX
// (1,024) for sendmsg.
const maxParts = 512

// closeFDs closes descriptors received from the peer that nobody will own.
func closeFDs(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}
