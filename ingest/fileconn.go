package ingest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileConn is a TCP connection received from the old process, used through
// the *os.File the handoff made of its descriptor.
//
// net.FileConn would do, at a cost paid while every moved session waits:
// it duplicates the descriptor (the original then closed), registers the
// duplicate with the poller after os.NewFile registered the original, and
// sets the keep-alive options the socket already carries from its accept,
// nine system calls per session. os.NewFile has already made the socket
// pollable (it is non-blocking, as the old process left it), so reads,
// writes and deadlines work through the same poller as a net.Conn's, with
// one descriptor.
//
// Errors read as a net.Conn's would: a closed connection is net.ErrClosed,
// so that a session sees a server shutdown as one and not as a drop.
type fileConn struct {
	f     *os.File
	raddr net.Addr
	lonce sync.Once
	laddr net.Addr
	// closed: the poller ends a RawConn's wait on a closed file with its
	// own error ("use of closed file"), which is not os.ErrClosed.
	closed atomic.Bool
}

// adoptConn takes f, a connected TCP socket, as a connection; it owns f
// from the call on, success or not.
func adoptConn(f *os.File) (net.Conn, error) {
	// A socket left blocking (an older build that called Fd on it) is not
	// pollable as a file, which deadlines need: net.FileConn makes its
	// duplicate non-blocking.
	if err := f.SetReadDeadline(time.Time{}); errors.Is(err, os.ErrNoDeadline) {
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("adopt %s: %w", f.Name(), err)
		}
		return c, nil
	}
	c := &fileConn{f: f}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("adopt %s: %w", f.Name(), err)
	}
	// The peer's address is the one asked of the kernel here, on every
	// moved session while all of them wait: the local one waits until
	// someone asks.
	var sa unix.Sockaddr
	var serr error
	cerr := raw.Control(func(fd uintptr) { sa, serr = unix.Getpeername(int(fd)) })
	if err := errors.Join(cerr, serr); err != nil {
		f.Close()
		return nil, fmt.Errorf("adopt %s: %w", f.Name(), err)
	}
	if c.raddr = tcpAddr(sa); c.raddr == nil {
		f.Close()
		return nil, fmt.Errorf("adopt %s: not a TCP connection (%T)", f.Name(), sa)
	}
	return c, nil
}

func tcpAddr(sa unix.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *unix.SockaddrInet6:
		a := &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifc, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a.Zone = ifc.Name
			}
		}
		return a
	}
	return nil
}

func (c *fileConn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	return n, c.opError("read", err)
}

func (c *fileConn) Write(b []byte) (int, error) {
	n, err := c.f.Write(b)
	return n, c.opError("write", err)
}

func (c *fileConn) Close() error {
	c.closed.Store(true)
	return c.opError("close", c.f.Close())
}

// LocalAddr asks the kernel the first time; asked first after Close, it
// is the zero address.
func (c *fileConn) LocalAddr() net.Addr {
	c.lonce.Do(func() {
		if raw, err := c.f.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) {
				if sa, err := unix.Getsockname(int(fd)); err == nil {
					c.laddr = tcpAddr(sa)
				}
			})
		}
		if c.laddr == nil {
			c.laddr = &net.TCPAddr{}
		}
	})
	return c.laddr
}

func (c *fileConn) RemoteAddr() net.Addr          { return c.raddr }
func (c *fileConn) SetDeadline(t time.Time) error { return c.opError("set", c.f.SetDeadline(t)) }
func (c *fileConn) SetReadDeadline(t time.Time) error {
	return c.opError("set", c.f.SetReadDeadline(t))
}
func (c *fileConn) SetWriteDeadline(t time.Time) error {
	return c.opError("set", c.f.SetWriteDeadline(t))
}

func (c *fileConn) SyscallConn() (syscall.RawConn, error) {
	raw, err := c.f.SyscallConn()
	if err != nil {
		return nil, c.opError("raw-conn", err)
	}
	return fileRawConn{c: c, raw: raw}, nil
}

// opError wraps err as a net.Conn's method would; io.EOF stays as it is.
func (c *fileConn) opError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	inner := err
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		inner = pe.Err
	}
	if errors.Is(inner, os.ErrClosed) || c.closed.Load() && !errors.Is(inner, os.ErrDeadlineExceeded) {
		inner = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "tcp", Addr: c.raddr, Err: inner}
}

// fileRawConn is the socket's RawConn, its errors those of a net.Conn's.
type fileRawConn struct {
	c   *fileConn
	raw syscall.RawConn
}

func (r fileRawConn) Control(f func(fd uintptr)) error {
	return r.c.opError("raw-control", r.raw.Control(f))
}

func (r fileRawConn) Read(f func(fd uintptr) bool) error {
	return r.c.opError("raw-read", r.raw.Read(f))
}

func (r fileRawConn) Write(f func(fd uintptr) bool) error {
	return r.c.opError("raw-write", r.raw.Write(f))
}
