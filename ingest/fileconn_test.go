package ingest

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// movedSocket returns the server side of a loopback TCP connection as the
// handoff gives it to a new process (a descriptor of its own in an
// *os.File, the original closed), and the client side.
func movedSocket(t *testing.T, blocking bool) (*os.File, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := rawFD(server.(syscall.Conn), "server")
	if err != nil {
		t.Fatal(err)
	}
	if blocking {
		// What an older build's Fd() left behind: the flag belongs to the
		// open file description, which every copy shares.
		if err := syscall.SetNonblock(fd, false); err != nil {
			t.Fatal(err)
		}
	}
	// os.NewFile of a copy, as the handoff makes of a received descriptor.
	f, err := dupFile(uintptr(fd), "moved")
	if err != nil {
		t.Fatal(err)
	}
	server.Close()
	return f, client
}

func TestAdoptConnBehavesAsTCPConn(t *testing.T) {
	for _, blocking := range []bool{false, true} {
		name := "non-blocking"
		if blocking {
			name = "left blocking by an older build"
		}
		t.Run(name, func(t *testing.T) {
			f, client := movedSocket(t, blocking)
			c, err := adoptConn(f)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := c.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Errorf("RemoteAddr %s, want %s", got, want)
			}
			if got, want := c.LocalAddr().String(), client.RemoteAddr().String(); got != want {
				t.Errorf("LocalAddr %s, want %s", got, want)
			}
			// Data both ways.
			if _, err := client.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("read %q, %v", buf, err)
			}
			if _, err := c.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("client read %q, %v", buf, err)
			}
			// A deadline in the past ends a read as a net.Conn's does.
			if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
				t.Fatal(err)
			}
			_, err = c.Read(buf)
			var ne net.Error
			if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("read past deadline: %v, want a timeout", err)
			}
			// The raw path the publishers read through.
			raw, err := c.(syscall.Conn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			err = raw.Read(func(uintptr) bool { return false })
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("raw read past deadline: %v", err)
			}
			if err := c.SetReadDeadline(time.Time{}); err != nil {
				t.Fatal(err)
			}
			// The peer's close is EOF.
			client.Close()
			if _, err := c.Read(buf); err != io.EOF {
				t.Errorf("read after the peer closed: %v, want EOF", err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			// Closed here: net.ErrClosed, which tells a session a shutdown
			// from a drop.
			if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
				t.Errorf("read after close: %v, want net.ErrClosed", err)
			}
			if !blocking {
				if err := raw.Read(func(uintptr) bool { return true }); !errors.Is(err, net.ErrClosed) {
					t.Errorf("raw read after close: %v, want net.ErrClosed", err)
				}
			}
		})
	}
}

func TestAdoptConnRefusesWhatIsNotATCPConnection(t *testing.T) {
	regular, err := os.Create(filepath.Join(t.TempDir(), "file"))
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[1])
	for name, f := range map[string]*os.File{
		"regular file": regular,
		"pipe":         r,
		"unix socket":  os.NewFile(uintptr(fds[0]), "unix"),
	} {
		if c, err := adoptConn(f); err == nil {
			c.Close()
			t.Errorf("%s adopted as a connection", name)
		}
		// adoptConn closed it.
		if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("%s left open: %v", name, err)
		}
	}
}
