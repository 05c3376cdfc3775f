package media

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mediad/mediad/state"
)

// waitingHandler answers /wait only once release is closed, or gives up
// when the request's context ends (as a blocking reload does); every
// other path at once. It names the server that answered.
type waitingHandler struct {
	name    string
	release chan struct{}
	waits   atomic.Int32 // /wait requests that began waiting
}

func (h *waitingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/wait" {
		h.waits.Add(1)
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
	}
	fmt.Fprintf(w, "%s %s?%s", h.name, r.URL.Path, r.URL.RawQuery)
}

// parkWaiting parks s while a client's /wait request waits on it, and
// returns the client's connection and the park.
func parkWaiting(t *testing.T, s *HTTP1, h *waitingHandler, addr string) (net.Conn, *bufio.Reader, *ParkedConns) {
	t.Helper()
	c := dial(t, addr)
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	readAnswer(t, br, "first")
	fmt.Fprintf(c, "GET /wait?_HLS_msn=7 HTTP/1.1\r\nHost: media.test\r\nUser-Agent: ua\r\n\r\n")
	waitUntil(t, "the request waits", func() bool { return h.waits.Load() == 1 })
	p, err := s.Park(context.Background(), 7, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 1 {
		t.Fatalf("parked %d connections, want 1", len(p.Items))
	}
	return c, br, p
}

// moveTo is the new process's side of a park: a server for h, and its own
// descriptor of the parked connection, as SCM_RIGHTS gives it.
func moveTo(t *testing.T, s *HTTP1, p *ParkedConns, h http.Handler) (*HTTP1, *os.File) {
	t.Helper()
	nfd, err := unix.FcntlInt(uintptr(p.Items[0].Borrowed[0]), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	s2 := NewHTTP1(h, HTTP1Config{Log: s.cfg.Log})
	t.Cleanup(func() { s2.Close() })
	return s2, os.NewFile(uintptr(nfd), "moved")
}

// A request whose wait the park cut short goes with the connection, and
// a rollback answers it here, on the same connection.
func TestParkResumeAnswersCutRequest(t *testing.T) {
	h := &waitingHandler{name: "old", release: make(chan struct{})}
	addr, s := h1Serve(t, h)
	c, br, p := parkWaiting(t, s, h, addr)

	var st state.HTTPConn
	if err := state.Decode(p.Items[0].Envelope, &st); err != nil {
		t.Fatal(err)
	}
	head := string(st.Unread)
	if !strings.HasPrefix(head, "GET /wait?_HLS_msn=7 HTTP/1.1\r\n") || !strings.Contains(head, "Host: media.test\r\n") ||
		!strings.Contains(head, "User-Agent: ua\r\n") || !strings.HasSuffix(head, "\r\n\r\n") || st.Fresh {
		t.Fatalf("parked connection: fresh %v, unread %q", st.Fresh, head)
	}
	p.Resume()
	waitUntil(t, "the request waits again", func() bool { return h.waits.Load() == 2 })
	close(h.release)
	resp, body := readAnswer(t, br, "the cut request")
	if resp.StatusCode != 200 || body != "old /wait?_HLS_msn=7" || resp.Close {
		t.Fatalf("after the rollback: %s %q, close %v", resp.Status, body, resp.Close)
	}
	// Accepting resumed.
	c2 := dial(t, addr)
	fmt.Fprintf(c2, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := readAnswer(t, bufio.NewReader(c2), "a new connection"); body != "old /again?" {
		t.Fatalf("new connection after the rollback: %q", body)
	}
	_ = c
}

// A committed park moves the connection: the new server answers the cut
// request and the next ones on it, and the old one neither answers nor
// closes it, nor accepts any more.
func TestParkCommitMovesConnection(t *testing.T) {
	oldH := &waitingHandler{name: "old", release: make(chan struct{})}
	addr, s := h1Serve(t, oldH)
	c, br, p := parkWaiting(t, s, oldH, addr)
	newH := &waitingHandler{name: "new", release: make(chan struct{})}
	close(newH.release)
	s2, moved := moveTo(t, s, p, newH)
	rc := s2.NewRestoredConns()
	if err := s2.Restore(rc, p.Items[0].Envelope, moved); err != nil {
		t.Fatal(err)
	}
	p.Commit()
	rc.Start()

	resp, body := readAnswer(t, br, "the cut request")
	if resp.StatusCode != 200 || body != "new /wait?_HLS_msn=7" || resp.Close {
		t.Fatalf("after the commit: %s %q, close %v", resp.Status, body, resp.Close)
	}
	fmt.Fprintf(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := readAnswer(t, br, "the next request"); body != "new /next?" {
		t.Fatalf("next request: %q", body)
	}
	// The old server's listener is closed: a new client is refused (no
	// other process holds it here).
	if c3, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c3.Close()
		t.Fatalf("the old server still accepts after the commit")
	}
}

// A new process that reads less than version 7 gets no connection: they
// stay, and go on being served.
func TestParkOlderVersionMovesNothing(t *testing.T) {
	h := &waitingHandler{name: "old", release: make(chan struct{})}
	addr, s := h1Serve(t, h)
	c := dial(t, addr)
	fmt.Fprintf(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	readAnswer(t, br, "first")
	p, err := s.Park(context.Background(), 6, time.Second)
	if err != nil || len(p.Items) != 0 {
		t.Fatalf("park for v6: %d items, %v", len(p.Items), err)
	}
	p.Commit()
	fmt.Fprintf(c, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := readAnswer(t, br, "second"); body != "old /second?" {
		t.Fatalf("after a v6 park: %q", body)
	}
}

// A connection that cannot reach a request boundary in time (its client
// does not read a large answer) stays, and its answer is not cut.
func TestParkLeavesBusyConnection(t *testing.T) {
	big := strings.Repeat("x", 8<<20)
	writing := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(big)))
		close(writing)
		io.WriteString(w, big)
	})
	addr, s := h1Serve(t, h)
	c := dial(t, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	<-writing
	time.Sleep(50 * time.Millisecond) // the answer fills the socket's buffers
	p, err := s.Park(context.Background(), 7, 50*time.Millisecond)
	if err != nil || len(p.Items) != 0 {
		t.Fatalf("park: %d items, %v; want the busy connection left out", len(p.Items), err)
	}
	p.Resume()
	resp, body := readAnswer(t, bufio.NewReader(c), "the big answer")
	if resp.StatusCode != 200 || len(body) != len(big) {
		t.Fatalf("big answer: %s, %d bytes of %d", resp.Status, len(body), len(big))
	}
}

// A moved descriptor that cannot become a connection after the commit is
// dropped (its viewer dials again) without holding up the others, and a
// park that starts while restored connections are still being made
// waits for them and moves them too.
func TestRestoredConnsBadDescriptorAndNextPark(t *testing.T) {
	oldH := &waitingHandler{name: "old", release: make(chan struct{})}
	addr, s := h1Serve(t, oldH)
	c, br, p := parkWaiting(t, s, oldH, addr)
	defer c.Close()
	newH := &waitingHandler{name: "new", release: make(chan struct{})}
	s2, moved := moveTo(t, s, p, newH)
	rc := s2.NewRestoredConns()
	notSocket, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	env, err := state.Encode(state.KindHTTPConn, state.HTTPConn{ID: 1, Peer: "127.0.0.1:1", Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Restore(rc, env, notSocket); err != nil {
		t.Fatalf("restore only decodes, yet: %v", err)
	}
	if err := s2.Restore(rc, p.Items[0].Envelope, moved); err != nil {
		t.Fatal(err)
	}
	if n := s2.ParkFDs(); n != 0 {
		t.Fatalf("before Start the server counts %d descriptors", n)
	}
	p.Commit()
	rc.Start()
	// The moved request waits in the new server (not yet released): a
	// park now finds it, whether or not the opener had reached it.
	waitUntil(t, "the moved request waits", func() bool { return newH.waits.Load() == 1 })
	p2, err := s2.Park(context.Background(), 7, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Items) != 1 {
		t.Fatalf("the next park moved %d connections, want 1", len(p2.Items))
	}
	p2.Resume()
	close(newH.release)
	resp, body := readAnswer(t, br, "the cut request")
	if resp.StatusCode != 200 || body != "new /wait?_HLS_msn=7" {
		t.Fatalf("after the commit: %s %q", resp.Status, body)
	}
}
