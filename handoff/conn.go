package handoff

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrPeerClosed reports that the other process closed its end of the
// handoff socket, normally because it exited.
var ErrPeerClosed = errors.New("peer closed the handoff socket")

// Conn is one end of a handoff. Its methods follow the protocol's order and
// are not safe for concurrent use, except Close, which may be called at any
// time to abandon the handoff and unblock a pending call.
type Conn struct {
	f  *os.File // non-blocking, registered with the runtime poller
	rc syscall.RawConn

	pkt []byte // first packet of each received frame
	oob []byte // control messages
	hdr [headerLen]byte
	buf bytes.Buffer // outgoing bodies, reused
	// parts are the pieces of the outgoing Batch, reused (sendBatch).
	parts [][]byte

	// Parent side: the inode of the child's end of the socketpair, whose
	// copies ReadHello and Close remove from this process (ChildGone).
	// copies are their numbers when Offer found them (nil: not known), so
	// that ChildGone need not look through every descriptor; dropped says
	// it is done.
	childIno uint64
	copyMu   sync.Mutex
	copies   []int
	dropped  bool

	// Parent side: the child's hello, what was promised and what was sent.
	peer      *Hello
	plan      *Plan
	sentItems int
	sentFDs   int

	// Child side: the hello sent, and the plan received.
	hello *Hello
	got   *Plan

	// noWait makes reads take only what is already queued (peerError).
	noWait bool

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// NewPair creates the socketpair for one upgrade attempt: parent is the
// old process's end; childEnd is handed to the new process (through
// tableflip's Fds, or exec.Cmd.ExtraFiles) and must then be closed here.
// Both ends are close-on-exec: the child end crosses exec only as an
// explicitly inherited descriptor.
func NewPair() (parent *Conn, childEnd *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("handoff: socketpair: %w", err)
	}
	ino, err := socketInode(fds[1])
	if err == nil {
		// Only the parent's end is non-blocking. The child's end stays
		// blocking so that the os.File that tableflip wraps around its dup
		// is a plain file, not registered with this process's poller.
		err = unix.SetNonblock(fds[0], true)
	}
	if err != nil {
		closeFDs(fds[:])
		return nil, nil, fmt.Errorf("handoff: socketpair: %w", err)
	}
	parent, err = newConn(fds[0])
	if err != nil {
		_ = unix.Close(fds[1])
		return nil, nil, err
	}
	parent.childIno = ino
	return parent, os.NewFile(uintptr(fds[1]), "handoff-child"), nil
}

// FromFile makes the new process's Conn from the descriptor it inherited.
// It takes ownership of f, closing it in every case, and checks that f is a
// unix SOCK_SEQPACKET socket. Any other descriptor of this process referring
// to the same socket (tableflip keeps the inherited original in its Fds for
// the process's lifetime) is replaced by /dev/null, so the Conn holds the
// only reference and the old process sees end of stream when it closes.
func FromFile(f *os.File) (*Conn, error) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("handoff: inherited socket: %w", err)
	}
	fd := -1
	var dupErr error
	err = rc.Control(func(u uintptr) {
		fd, dupErr = unix.FcntlInt(u, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return nil, fmt.Errorf("handoff: inherited socket: dup: %w", err)
	}
	if err := checkSocket(fd); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	ino, err := socketInode(fd)
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("handoff: inherited socket: %w", err)
	}
	c, err := newConn(fd)
	if err != nil {
		return nil, err
	}
	_ = f.Close() // before the scan, so that only foreign copies remain
	if err := dropCopies(ino, fd); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func checkSocket(fd int) error {
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("handoff: inherited descriptor is not a socket: %w", err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("handoff: inherited socket: %w", err)
	}
	if domain != unix.AF_UNIX || typ != unix.SOCK_SEQPACKET {
		return fmt.Errorf("handoff: inherited socket is domain %d type %d, want AF_UNIX SOCK_SEQPACKET", domain, typ)
	}
	return nil
}

// newConn wraps a non-blocking, close-on-exec socket; it closes fd on error.
func newConn(fd int) (*Conn, error) {
	f := os.NewFile(uintptr(fd), "handoff")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("handoff: socket: %w", err)
	}
	return &Conn{
		f:   f,
		rc:  rc,
		oob: make([]byte, unix.CmsgSpace(253*4)), // SCM_MAX_FD: all a packet can carry
	}, nil
}

// Close closes the connection; it is idempotent. On the parent side it also
// removes any copy of the child's end still held in this process (see
// ReadHello), so that a failed attempt leaves no descriptor behind.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.closeErr = c.f.Close()
		if err := c.ChildGone(); err != nil && c.closeErr == nil {
			c.closeErr = err
		}
	})
	return c.closeErr
}

// ChildGone drops the parent's copies of the child end. ReadHello calls it
// once the child has spoken (the child holds its own; ours would only hide
// its death). Call it when the new process has exited, or was never
// started, before its Hello was read: a pending or later ReadHello then
// returns what the child sent before it died (a Reject naming why it could
// not take over) and then end of stream, instead of blocking until its
// deadline. Unlike Close, it loses nothing already in the socket.
func (c *Conn) ChildGone() error {
	if c.childIno == 0 {
		return nil
	}
	c.copyMu.Lock()
	defer c.copyMu.Unlock()
	if c.dropped {
		return nil
	}
	var err error
	if c.copies != nil {
		err = replaceCopies(c.childIno, c.copies)
	} else {
		err = dropCopies(c.childIno, -1)
	}
	c.dropped = err == nil
	return err
}

// readPacket implements packetReader over recvmsg. MSG_CMSG_CLOEXEC makes
// every received descriptor close-on-exec from its first instant.
func (c *Conn) readPacket(p []byte) (int, []int, error) {
	var n, oobn, flags int
	var rerr error
	recv := func(fd uintptr) bool {
		for reset := false; ; {
			n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), p, c.oob, unix.MSG_CMSG_CLOEXEC)
			switch {
			case rerr == unix.EINTR:
				continue
			case rerr == unix.ECONNRESET && !reset:
				// A peer that exited with unread data leaves ECONNRESET
				// pending, reported (and cleared) ahead of what it sent
				// before exiting: take that first, then the end of stream.
				reset = true
				continue
			}
			return rerr != unix.EAGAIN
		}
	}
	var err error
	if c.noWait {
		err = c.rc.Control(func(fd uintptr) { recv(fd) })
	} else {
		err = c.rc.Read(recv)
	}
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, nil, c.ioError(err)
	}
	fds, perr := parseRights(c.oob[:oobn])
	switch {
	case perr != nil:
		err = perr
	case flags&unix.MSG_CTRUNC != 0:
		err = fmt.Errorf("control message truncated, %d descriptors kept of more sent", len(fds))
	case flags&unix.MSG_TRUNC != 0:
		err = fmt.Errorf("packet longer than the %d bytes expected", len(p))
	case n == 0:
		err = ErrPeerClosed
	}
	if err != nil {
		closeFDs(fds)
		return 0, nil, err
	}
	return n, fds, nil
}

// parseRights returns the descriptors in SCM_RIGHTS control messages. Any
// other control message is an error, after the descriptors found are
// collected so that the caller can close them.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	var bad error
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("unexpected control message level %d type %d", m.Header.Level, m.Header.Type)
			continue
		}
		got, err := unix.ParseUnixRights(m)
		if err != nil {
			bad = fmt.Errorf("SCM_RIGHTS: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

// writePacket implements packetWriter over sendmsg.
func (c *Conn) writePacket(parts [][]byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	var n int
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		n, werr = unix.SendmsgBuffers(int(fd), parts, oob, nil, unix.MSG_NOSIGNAL)
		return werr != unix.EAGAIN && werr != unix.EINTR
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return c.ioError(err)
	}
	if n != size {
		return fmt.Errorf("sent %d of a %d-byte packet", n, size)
	}
	return nil
}

// writeRaw sends hdr and data as one packet, as they are (tests forge
// frames with it).
func (c *Conn) writeRaw(hdr, data []byte, fds []int) error {
	return c.writePacket([][]byte{hdr, data}, fds)
}

// ioError maps socket errors to the package's: a peer that went away is
// ErrPeerClosed whichever way the kernel reports it, and a call cut short
// by Close is net.ErrClosed.
func (c *Conn) ioError(err error) error {
	switch {
	case c.closed.Load():
		return net.ErrClosed
	case errors.Is(err, unix.EPIPE), errors.Is(err, unix.ECONNRESET):
		return fmt.Errorf("%w (%v)", ErrPeerClosed, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return os.ErrDeadlineExceeded
	}
	return fmt.Errorf("socket: %w", err)
}

// send encodes m and sends it as one frame.
func (c *Conn) send(m message) error {
	c.buf.Reset()
	if err := encodeBody(&c.buf, m); err != nil {
		return err
	}
	return writeFrame(c, c.hdr[:], m.msgType(), c.buf.Bytes(), nil)
}

// recv reads and decodes the next message before deadline (zero: none).
// fds are the descriptors of a Batch; for any other message, or on error,
// none are returned open.
func (c *Conn) recv(deadline time.Time) (message, []int, error) {
	if err := c.f.SetReadDeadline(deadline); err != nil {
		return nil, nil, c.ioError(err)
	}
	if c.pkt == nil {
		c.pkt = make([]byte, MaxPacket)
	}
	fr, err := readFrame(c, c.pkt)
	if err != nil {
		return nil, nil, err
	}
	m, err := decodeBody(fr.typ, fr.body, len(fr.fds))
	if err != nil {
		closeFDs(fr.fds)
		return nil, nil, err
	}
	return m, fr.fds, nil
}

func unexpected(want string, m message) error {
	return fmt.Errorf("handoff: expected %s, got %s", want, m.msgType())
}

// SetWriteDeadline bounds every later send (zero: no bound). A peer that
// stops reading otherwise blocks a send once the socket buffer is full.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if err := c.f.SetWriteDeadline(t); err != nil {
		return fmt.Errorf("handoff: set write deadline: %w", c.ioError(err))
	}
	return nil
}
