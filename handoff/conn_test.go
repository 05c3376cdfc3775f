package handoff

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediad/mediad/state"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- result{c, err}
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-accepted
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { cc.Close(); r.c.Close() })
	return cc.(*net.TCPConn), r.c.(*net.TCPConn)
}

// parentFlow runs the old process's side up to Prepared and returns the
// hello it got.
func parentFlow(t *testing.T, c *child, items []Item) Hello {
	t.Helper()
	h, err := c.conn.ReadHello(deadline())
	if err != nil {
		t.Fatalf("read hello: %v; child stderr:\n%s", err, c.stderr)
	}
	if h.PID != c.cmd.Process.Pid || h.Build != "test-child" || h.ReadsMin != 1 || h.ReadsMax != 3 || h.OpenFDs < 4 || h.NoFileLimit == 0 {
		t.Fatalf("hello %+v from pid %d", h, c.cmd.Process.Pid)
	}
	v, err := ChooseVersion(1, 3, h.ReadsMin, h.ReadsMax)
	if err != nil {
		t.Fatal(err)
	}
	nfds := 0
	for _, it := range items {
		nfds += it.NumFDs()
	}
	if err := CheckFDBudget(h, nfds); err != nil {
		t.Fatal(err)
	}
	if err := c.conn.SendPlan(Plan{Version: v, Items: len(items), FDs: nfds}); err != nil {
		t.Fatal(err)
	}
	if err := c.conn.SendItems(items); err != nil {
		t.Fatalf("send items: %v; child stderr:\n%s", err, c.stderr)
	}
	if err := c.conn.SendEnd(); err != nil {
		t.Fatal(err)
	}
	n, err := c.conn.WaitPrepared(deadline())
	if err != nil {
		t.Fatalf("wait prepared: %v; child stderr:\n%s", err, c.stderr)
	}
	if n != len(items) {
		t.Fatalf("prepared %d of %d", n, len(items))
	}
	return h
}

// The whole handoff between two processes: a live TCP connection and an
// open file cross, the child uses both after Commit, and neither process
// leaks a descriptor.
func TestHandoffProcess(t *testing.T) {
	client, server := tcpPair(t)
	sockFile, err := server.File()
	if err != nil {
		t.Fatal(err)
	}
	defer sockFile.Close()
	path := filepath.Join(t.TempDir(), "rec")
	rec, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	if _, err := rec.WriteString("parent\n"); err != nil {
		t.Fatal(err)
	}
	items := []Item{inodeItem(t, kindTCP, sockFile), inodeItem(t, kindFile, rec), blobItem(1000)}

	before := openFDs(t)
	c := startChild(t, "ok")
	h := parentFlow(t, c, items)

	// The child is parked in WaitCommit holding exactly what it received.
	if got, want := procFDCount(t, c.cmd.Process.Pid), h.OpenFDs+2; got != want {
		t.Errorf("child holds %d descriptors, %d at hello + 2 received = %d", got, h.OpenFDs, want)
	}
	if err := c.conn.Commit(); err != nil {
		t.Fatal(err)
	}
	// The child now reads what the client writes after the handoff.
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := client.SetReadDeadline(deadline()); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 9)
	if _, err := bufio.NewReader(client).Read(reply); err != nil {
		t.Fatal(err)
	}
	if string(reply) != "echo:ping" {
		t.Errorf("client got %q from the child", reply)
	}
	c.expectExit(t, exitOK)
	if b, err := os.ReadFile(path); err != nil || string(b) != "parent\nchild\n" {
		t.Errorf("recording holds %q, %v", b, err)
	}
	c.conn.Close()
	if after := openFDs(t); after != before {
		t.Errorf("parent holds %d descriptors after the handoff, %d before", after, before)
	}
}

// A 20 MiB envelope crosses as one frame of many packets.
func TestHandoffLargePayload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec")
	rec, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	items := []Item{blobItem(20 << 20), inodeItem(t, kindFile, rec)}
	before := openFDs(t)
	c := startChild(t, "ok")
	parentFlow(t, c, items)
	commitAndCount(t, c, before)
}

// 600 descriptors in one SendItems go out in batches of at most 250, and
// each arrives with its own item.
func TestHandoffManyFDs(t *testing.T) {
	const n = 600
	items := make([]Item, n)
	for i := range items {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		f := r
		if i%2 == 1 {
			f = w
		}
		items[i] = inodeItem(t, kindPipe, f)
		if i%3 == 0 {
			// Lent by number, as a parked session lends its connection:
			// the same file arrives, and nothing is duplicated here.
			fd, err := fileFD(f)
			if err != nil {
				t.Fatal(err)
			}
			items[i].Borrowed, items[i].Files = []int{fd}, nil
		}
	}
	before := openFDs(t)
	c := startChild(t, "ok")
	h := parentFlow(t, c, items)
	if got, want := procFDCount(t, c.cmd.Process.Pid), h.OpenFDs+n; got != want {
		t.Errorf("child holds %d descriptors, want %d at hello + %d", got, h.OpenFDs, n)
	}
	commitAndCount(t, c, before)
}

// commitAndCount commits, waits for the child's clean exit and checks that
// the parent holds as many descriptors as before the handoff.
func commitAndCount(t *testing.T, c *child, before int) {
	t.Helper()
	if err := c.conn.Commit(); err != nil {
		t.Fatal(err)
	}
	c.expectExit(t, exitOK)
	c.conn.Close()
	if after := openFDs(t); after != before {
		t.Errorf("parent holds %d descriptors, %d before", after, before)
	}
}

// Every way the handoff can fail ends with a clear error in the parent, the
// child's exit, and no descriptor left behind in either.
func TestHandoffFailures(t *testing.T) {
	tests := []struct {
		name     string
		scenario string
		items    int // pipe items to offer
		run      func(t *testing.T, c *child, items []Item) error
		exit     int
		check    func(t *testing.T, err error)
	}{
		{
			name: "child exits before hello", scenario: "exit-before-hello",
			run: func(t *testing.T, c *child, items []Item) error {
				_, err := c.conn.ReadHello(deadline())
				return err
			},
			exit:  exitScripted,
			check: wantPeerClosed,
		},
		{
			name: "child exits after plan", scenario: "exit-after-plan", items: 3,
			run:   sendAll,
			exit:  exitScripted,
			check: wantPeerClosed,
		},
		{
			name: "child exits mid-items", scenario: "exit-mid-items", items: 600,
			run:   sendAll,
			exit:  exitScripted,
			check: wantPeerClosed,
		},
		{
			name: "child rejects the plan and exits", scenario: "reject-early", items: 600,
			run:  sendAll,
			exit: exitFailed,
			check: func(t *testing.T, err error) {
				var re *RejectError
				if !errors.As(err, &re) || re.Reason != "plan refused" {
					t.Fatalf("error %v, want a *RejectError with the child's reason", err)
				}
			},
		},
		{
			name: "child rejects", scenario: "reject", items: 5,
			run:  sendAll,
			exit: exitFailed,
			check: func(t *testing.T, err error) {
				var re *RejectError
				if !errors.As(err, &re) || re.Reason != "scenario says no" {
					t.Fatalf("error %v, want a *RejectError with the child's reason", err)
				}
			},
		},
		{
			name: "parent refuses", scenario: "ok",
			run: func(t *testing.T, c *child, items []Item) error {
				h, err := c.conn.ReadHello(deadline())
				if err != nil {
					return err
				}
				_, verr := ChooseVersion(4, 5, h.ReadsMin, h.ReadsMax)
				if verr == nil {
					t.Fatal("versions 4..5 and 1..3 agreed")
				}
				return c.conn.SendRefuse(verr.Error())
			},
			exit: exitRefused,
		},
		{
			name: "parent aborts mid-items", scenario: "ok", items: 4,
			run: func(t *testing.T, c *child, items []Item) error {
				if _, err := c.conn.ReadHello(deadline()); err != nil {
					return err
				}
				if err := c.conn.SendPlan(Plan{Version: 3, Items: len(items), FDs: len(items)}); err != nil {
					return err
				}
				if err := c.conn.SendItems(items[:2]); err != nil {
					return err
				}
				return c.conn.Abort("parking failed")
			},
			exit: exitAborted,
		},
		{
			name: "parent aborts instead of commit", scenario: "ok", items: 4,
			run: func(t *testing.T, c *child, items []Item) error {
				if err := sendAll(t, c, items); err != nil {
					return err
				}
				return c.conn.Abort("changed my mind")
			},
			exit: exitAborted,
		},
		{
			name: "child never says hello", scenario: "silent",
			run: func(t *testing.T, c *child, items []Item) error {
				_, err := c.conn.ReadHello(time.Now().Add(100 * time.Millisecond))
				if err != nil {
					c.conn.Close() // the silent child leaves when the parent does
				}
				return err
			},
			exit: exitScripted,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("error %v, want a deadline", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items := make([]Item, tc.items)
			for i := range items {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				defer w.Close()
				items[i] = inodeItem(t, kindPipe, r)
			}
			before := openFDs(t)
			c := startChild(t, tc.scenario)
			err := tc.run(t, c, items)
			t.Logf("parent: %v", err)
			if tc.check != nil {
				tc.check(t, err)
			} else if err != nil {
				t.Fatalf("parent: %v; child stderr:\n%s", err, c.stderr)
			}
			c.expectExit(t, tc.exit)
			c.conn.Close()
			if after := openFDs(t); after != before {
				t.Errorf("parent holds %d descriptors, %d before", after, before)
			}
		})
	}
}

// sendAll runs the parent's side from hello to Prepared and returns the
// first error.
func sendAll(t *testing.T, c *child, items []Item) error {
	if _, err := c.conn.ReadHello(deadline()); err != nil {
		return err
	}
	if err := c.conn.SendPlan(Plan{Version: 3, Items: len(items), FDs: len(items)}); err != nil {
		return err
	}
	if err := c.conn.SendItems(items); err != nil {
		return err
	}
	if err := c.conn.SendEnd(); err != nil {
		return err
	}
	_, err := c.conn.WaitPrepared(deadline())
	return err
}

func wantPeerClosed(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("error %v, want ErrPeerClosed", err)
	}
}

// inProcess returns both ends of a handoff socket in this process.
func inProcess(t *testing.T) (parent, child *Conn) {
	t.Helper()
	p, end, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	// Both ends live in this process: the parent must not replace the
	// child's descriptor as a leftover copy of the child end.
	p.childIno = 0
	c, err := FromFile(end)
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(); c.Close() })
	return p, c
}

// devNulls opens n files to send.
func devNulls(t *testing.T, n int) []int {
	t.Helper()
	fds := make([]int, n)
	for i := range fds {
		fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
		t.Cleanup(func() { unix.Close(fd) })
	}
	return fds
}

// Descriptors that came with a malformed frame are closed, whatever is
// wrong with it.
func TestMalformedFramesCloseDescriptors(t *testing.T) {
	batch := func(nfiles int) []byte {
		return []byte("\x81\xa5items\x91\x82\xa3env\x81\xa4kind\xa1k\xa6nfiles" + string(rune(nfiles)))
	}
	tests := []struct {
		name string
		send func(p *Conn, fds []int) error
		want string
	}{
		{"bad magic", func(p *Conn, fds []int) error {
			return p.writeRaw([]byte("XXXX\x01\x04\x00\x03\x00\x00\x00\x01"), []byte{0x80}, fds)
		}, "bad magic"},
		{"count mismatch", func(p *Conn, fds []int) error {
			return p.writeRaw(appendHeader(nil, header{typ: typeBatch, nfds: 2, length: 1}), []byte{0x80}, fds)
		}, "announces 2 descriptors, 3 arrived"},
		{"unknown type", func(p *Conn, fds []int) error {
			return p.writeRaw(appendHeader(nil, header{typ: 99, nfds: 3, length: 1}), []byte{0x80}, fds)
		}, "unknown message"},
		{"items do not account for them", func(p *Conn, fds []int) error {
			body := batch(1)
			return p.writeRaw(appendHeader(nil, header{typ: typeBatch, nfds: 3, length: len(body)}), body, fds)
		}, "account for 1 descriptors, 3 arrived"},
		{"descriptors on a continuation packet", func(p *Conn, fds []int) error {
			body := batch(1)
			if err := p.writeRaw(appendHeader(nil, header{typ: typeBatch, nfds: 1, length: len(body)}), body[:5], fds[:1]); err != nil {
				return err
			}
			return p.writeRaw(nil, body[5:], fds[1:])
		}, "on a continuation packet"},
		{"packet longer than allowed", func(p *Conn, fds []int) error {
			return p.writeRaw(appendHeader(nil, header{typ: typeBatch, nfds: 3, length: MaxPacket}), make([]byte, MaxPacket), fds)
		}, "packet longer"},
		{"peer dies mid-frame", func(p *Conn, fds []int) error {
			body := batch(3)
			if err := p.writeRaw(appendHeader(nil, header{typ: typeBatch, nfds: 3, length: len(body)}), body[:5], fds); err != nil {
				return err
			}
			return p.Close()
		}, "cut short"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, c := inProcess(t)
			fds := devNulls(t, 3)
			before := openFDs(t)
			if err := tc.send(p, fds); err != nil {
				t.Fatal(err)
			}
			_, _, err := c.recv(deadline())
			if !errorContains(err, tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.name == "peer dies mid-frame" {
				before-- // the parent's own socket
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open after the bad frame, %d before", after, before)
			}
		})
	}
}

// A control message cut short by the kernel (MSG_CTRUNC) is an error, and
// the descriptors that did arrive are closed.
func TestTruncatedControlMessage(t *testing.T) {
	p, c := inProcess(t)
	c.oob = make([]byte, unix.CmsgSpace(2*4))
	fds := devNulls(t, 10)
	before := openFDs(t)
	body := []byte{0x80}
	if err := p.writeRaw(appendHeader(nil, header{typ: typeBatch, nfds: 10, length: 1}), body, fds); err != nil {
		t.Fatal(err)
	}
	_, _, err := c.recv(deadline())
	if !errorContains(err, "control message truncated") {
		t.Fatalf("error %v", err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open, %d before", after, before)
	}
}

// ReadItems closes what earlier batches brought when a later frame fails.
func TestReadItemsClosesOnError(t *testing.T) {
	p, c := inProcess(t)
	files := make([]*os.File, 3)
	for i := range files {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files[i] = f
	}
	items := []Item{
		{Envelope: state.Envelope{Kind: "a"}, Files: files[:2]},
		{Envelope: state.Envelope{Kind: "b"}, Files: files[2:]},
	}
	before := openFDs(t)
	if err := p.SendPlan(Plan{Version: 1, Items: 3, FDs: 4}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadPlan(deadline()); err != nil {
		t.Fatal(err)
	}
	if err := p.SendItems(items); err != nil {
		t.Fatal(err)
	}
	if err := p.writeRaw([]byte("garbage, not a header"), nil, nil); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReadItems(deadline())
	if !errorContains(err, "bad magic") || got != nil {
		t.Fatalf("got %d items, error %v", len(got), err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d descriptors open, %d before", after, before)
	}
}

// The child holds the parent to its plan, in both directions.
func TestPlanIsEnforced(t *testing.T) {
	t.Run("more than planned", func(t *testing.T) {
		p, c := inProcess(t)
		if err := p.SendPlan(Plan{Version: 1, Items: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadPlan(deadline()); err != nil {
			t.Fatal(err)
		}
		// The sender refuses to exceed its own plan…
		two := []Item{blobItem(100), blobItem(100)}
		if err := p.SendItems(two); !errorContains(err, "exceed the plan") {
			t.Fatalf("SendItems: %v", err)
		}
		// …and the receiver refuses a sender that does.
		p.plan.Items = 2 // as if the sender had planned for two
		if err := p.SendItems(two); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadItems(deadline()); !errorContains(err, "past the plan") {
			t.Fatalf("ReadItems: %v", err)
		}
	})
	t.Run("fewer than planned", func(t *testing.T) {
		p, c := inProcess(t)
		if err := p.SendPlan(Plan{Version: 1, Items: 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadPlan(deadline()); err != nil {
			t.Fatal(err)
		}
		if err := p.SendItems([]Item{blobItem(100)}); err != nil {
			t.Fatal(err)
		}
		if err := p.SendEnd(); !errorContains(err, "plan promised 2") {
			t.Fatalf("SendEnd: %v", err)
		}
		if err := p.send(endMsg{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadItems(deadline()); !errorContains(err, "plan promised 2") {
			t.Fatalf("ReadItems: %v", err)
		}
	})
	t.Run("version outside the hello's range", func(t *testing.T) {
		p, c := inProcess(t)
		if err := c.SendHello(Hello{ReadsMin: 2, ReadsMax: 3}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ReadHello(deadline()); err != nil {
			t.Fatal(err)
		}
		if err := p.SendPlan(Plan{Version: 4}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadPlan(deadline()); !errorContains(err, "reads v2..v3") {
			t.Fatalf("ReadPlan: %v", err)
		}
	})
}

func TestSendItemsChecksBeforeSending(t *testing.T) {
	p, _ := inProcess(t)
	if err := p.SendItems([]Item{blobItem(100)}); !errorContains(err, "before SendPlan") {
		t.Fatalf("no plan: %v", err)
	}
	if err := p.SendPlan(Plan{Version: 1, Items: 10, FDs: 1000}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		item Item
		want string
	}{
		{"no kind", Item{}, "has no kind"},
		{"nil file", Item{Envelope: state.Envelope{Kind: "x"}, Files: []*os.File{nil}}, "file 0 is nil"},
		{"too many files", Item{Envelope: state.Envelope{Kind: "x"}, Files: make([]*os.File, MaxFDsPerFrame+1)}, "251 descriptors"},
		{"too many, lent and owned", Item{Envelope: state.Envelope{Kind: "x"}, Borrowed: make([]int, MaxFDsPerFrame), Files: []*os.File{os.Stdin}}, "251 descriptors"},
		{"negative lent descriptor", Item{Envelope: state.Envelope{Kind: "x"}, Borrowed: []int{3, -1}}, "borrowed descriptor 1 is -1"},
		{"too large", Item{Envelope: state.Envelope{Kind: "x", Payload: make([]byte, MaxFrameSize)}}, "limit"},
	}
	for _, tc := range tests {
		if err := p.SendItems([]Item{blobItem(100), tc.item}); !errorContains(err, tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if p.sentItems != 0 {
		t.Errorf("%d items sent despite the errors", p.sentItems)
	}
}

// Close unblocks a read waiting without a deadline.
func TestCloseUnblocks(t *testing.T) {
	p, _ := inProcess(t)
	done := make(chan error, 1)
	go func() {
		_, err := p.ReadHello(time.Time{})
		done <- err
	}()
	p.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadHello after Close: %v, want net.ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestFromFileChecksTheSocket(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromFile(f); !errorContains(err, "not a socket") {
		t.Fatalf("FromFile(/dev/null): %v", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	if _, err := FromFile(os.NewFile(uintptr(fds[1]), "stream")); !errorContains(err, "want AF_UNIX SOCK_SEQPACKET") {
		t.Fatalf("FromFile(stream socket): %v", err)
	}
}

// dupAdder keeps a dup of each file, the way tableflip's Fds.AddFile does.
type dupAdder map[string]*os.File

// highDupAdder keeps its dup at a number of 1,000 or more.
type highDupAdder struct{ dupAdder }

func (d highDupAdder) AddFile(name string, f *os.File) error {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 1000)
	if err != nil {
		return err
	}
	d.dupAdder[name] = os.NewFile(uintptr(fd), name)
	return nil
}

func (d dupAdder) AddFile(name string, f *os.File) error {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d[name] = os.NewFile(uintptr(fd), name)
	return nil
}

func (d dupAdder) File(name string) (*os.File, error) {
	f := d[name]
	if f == nil {
		return nil, nil
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Offer leaves the registry's dup as the only copy of the child end; Close
// turns it into /dev/null, so a failed attempt holds no reference to the
// socket, and the registry can still close its file safely.
func TestOfferReleasesChildEnd(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reg   FileAdder
		known bool // Offer knows the registry's copy by its number
	}{
		// As tableflip does: its dup takes the lowest free number.
		{"registry dups to the lowest number", dupAdder{}, true},
		// Any other number is found by looking through every descriptor.
		{"registry dups elsewhere", highDupAdder{dupAdder{}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := openFDs(t)
			c, err := Offer(tc.reg)
			if err != nil {
				t.Fatal(err)
			}
			copies, err := socketCopies(c.childIno, -1)
			if err != nil {
				t.Fatal(err)
			}
			var held *os.File
			switch r := tc.reg.(type) {
			case dupAdder:
				held = r[FileName]
			case highDupAdder:
				held = r.dupAdder[FileName]
			}
			if fd := int(held.Fd()); len(copies) != 1 || copies[0] != fd {
				t.Fatalf("copies of the child end %v, want only the registry's %d", copies, fd)
			}
			if known := c.copies != nil; known != tc.known {
				t.Errorf("Offer knew the copy's number: %v, want %v", known, tc.known)
			}
			// Once gone, always gone: the Close after ChildGone finds
			// nothing more to do.
			if err := c.ChildGone(); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if copies, err := socketCopies(c.childIno, -1); err != nil || len(copies) != 0 {
				t.Fatalf("copies after Close: %v, %v", copies, err)
			}
			if target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(held.Fd()))); err != nil || target != os.DevNull {
				t.Fatalf("the registry's descriptor now names %q, %v", target, err)
			}
			if err := held.Close(); err != nil {
				t.Fatal(err)
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open, %d before", after, before)
			}
		})
	}
}

// Accept in the new process leaves the Conn as the only reference to its
// end: the registry's inherited copy becomes /dev/null.
func TestAcceptReleasesInheritedCopy(t *testing.T) {
	if _, err := Accept(dupAdder{}); !errors.Is(err, ErrNoHandoff) {
		t.Fatalf("Accept with nothing inherited: %v", err)
	}
	p, end, err := NewPair()
	if err != nil {
		t.Fatal(err)
	}
	p.childIno = 0 // the child end lives in this process
	defer p.Close()
	reg := dupAdder{FileName: end} // as inherited
	c, err := Accept(reg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer end.Close()
	ino, err := socketInode(connFD(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if copies, err := socketCopies(ino, connFD(t, c)); err != nil || len(copies) != 0 {
		t.Fatalf("other copies of the child end: %v, %v", copies, err)
	}
	// The parent sees the child's Close as end of stream.
	c.Close()
	if _, err := p.ReadHello(deadline()); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("ReadHello after the child closed: %v", err)
	}
}

func connFD(t *testing.T, c *Conn) int {
	t.Helper()
	fd, err := fileFD(c.f)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

// BenchmarkHandoff moves 100 sessions of 4 KiB state and one descriptor
// each through a fresh socketpair, as one upgrade would.
func BenchmarkHandoff(b *testing.B) {
	const n = 100
	f, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{Envelope: state.Envelope{Kind: "publisher", Version: 1, Payload: make([]byte, 4096)}, Files: []*os.File{f}}
	}
	b.ReportAllocs()
	b.SetBytes(n * 4096)
	for b.Loop() {
		p, end, err := NewPair()
		if err != nil {
			b.Fatal(err)
		}
		p.childIno = 0
		c, err := FromFile(end)
		if err != nil {
			b.Fatal(err)
		}
		sent := make(chan error, 1)
		go func() {
			err := p.SendPlan(Plan{Version: 1, Items: n, FDs: n})
			if err == nil {
				err = p.SendItems(items)
			}
			if err == nil {
				err = p.SendEnd()
			}
			sent <- err
		}()
		if _, err := c.ReadPlan(time.Time{}); err != nil {
			b.Fatal(err)
		}
		got, err := c.ReadItems(time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		if err := <-sent; err != nil {
			b.Fatal(err)
		}
		CloseItems(got)
		p.Close()
		c.Close()
	}
}

// An open plan lets the parent send sessions before it knows how many
// there will be; End brings the totals, and the child holds it to them.
func TestOpenPlan(t *testing.T) {
	devNull := func(t *testing.T) *os.File {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	// greet runs the hello and an open plan with a budget of fds.
	greet := func(t *testing.T, open bool, fds int) (p, c *Conn, err error) {
		p, c = inProcess(t)
		if err := c.SendHello(Hello{ReadsMin: 1, ReadsMax: 3, NoFileLimit: uint64(fds + 20 + FDReserve), OpenFDs: 20, OpenPlan: open}); err != nil {
			t.Fatal(err)
		}
		h, err := p.ReadHello(deadline())
		if err != nil {
			t.Fatal(err)
		}
		plan := OpenPlanFor(3, h)
		if plan.FDs != fds {
			t.Fatalf("open plan for %+v allows %d descriptors, want %d", h, plan.FDs, fds)
		}
		return p, c, p.SendPlan(plan)
	}
	t.Run("batches as they come", func(t *testing.T) {
		p, c, err := greet(t, true, 10)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := c.ReadPlan(deadline())
		if err != nil || !plan.Open {
			t.Fatalf("plan %+v, %v", plan, err)
		}
		done := make(chan error, 1)
		var got [][]Item
		// built runs at the Sync, after the first batch and before the
		// second, and Sync returns only once it has.
		var builtAfter atomic.Int64
		go func() {
			done <- c.ReadBatches(deadline(), func(b []Item) error {
				got = append(got, b)
				return nil
			}, func() error {
				time.Sleep(20 * time.Millisecond)
				builtAfter.Store(int64(len(got)))
				return nil
			})
		}()
		first := blobItem(100)
		first.Files = []*os.File{devNull(t), devNull(t)}
		if err := p.SendItems([]Item{first}); err != nil {
			t.Fatal(err)
		}
		if err := p.Sync(deadline()); err != nil {
			t.Fatal(err)
		}
		if n := builtAfter.Load(); n != 1 {
			t.Fatalf("Sync returned with the child built after %d batches, want 1", n)
		}
		if err := p.SendItems([]Item{blobItem(200), blobItem(300)}); err != nil {
			t.Fatal(err)
		}
		if err := p.SendEnd(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || len(got[0]) != 1 || len(got[1]) != 2 || len(got[0][0].Files) != 2 {
			t.Fatalf("batches %v", got)
		}
		for _, b := range got {
			CloseItems(b)
		}
	})
	t.Run("not for a process that did not ask", func(t *testing.T) {
		if _, _, err := greet(t, false, 10); !errorContains(err, "did not say it takes one") {
			t.Fatalf("SendPlan: %v", err)
		}
	})
	t.Run("no more descriptors than the budget", func(t *testing.T) {
		p, _, err := greet(t, true, 1)
		if err != nil {
			t.Fatal(err)
		}
		it := blobItem(100)
		it.Files = []*os.File{devNull(t), devNull(t)}
		if err := p.SendItems([]Item{it}); !errorContains(err, "exceed the plan") {
			t.Fatalf("SendItems: %v", err)
		}
	})
	for _, row := range []struct {
		name string
		end  endMsg
		want string
	}{
		{"an end without totals", endMsg{}, "without its totals"},
		{"an end that counts more than came", endMsg{open: true, items: 2}, "the plan promised 2 and 0"},
		{"an end that counts fewer descriptors", endMsg{open: true, items: 1, fds: 1}, "the plan promised 1 and 1"},
	} {
		t.Run(row.name, func(t *testing.T) {
			p, c, err := greet(t, true, 10)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadPlan(deadline()); err != nil {
				t.Fatal(err)
			}
			if err := p.SendItems([]Item{blobItem(100)}); err != nil {
				t.Fatal(err)
			}
			if err := p.send(row.end); err != nil {
				t.Fatal(err)
			}
			if _, err := c.ReadItems(deadline()); !errorContains(err, row.want) {
				t.Fatalf("ReadItems: %v", err)
			}
		})
	}
	t.Run("a child that did not ask refuses one", func(t *testing.T) {
		p, c := inProcess(t)
		if err := c.SendHello(Hello{ReadsMin: 1, ReadsMax: 3}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ReadHello(deadline()); err != nil {
			t.Fatal(err)
		}
		if err := p.send(Plan{Version: 3, Open: true, Items: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ReadPlan(deadline()); !errorContains(err, "did not say it takes") {
			t.Fatalf("ReadPlan: %v", err)
		}
	})
}
