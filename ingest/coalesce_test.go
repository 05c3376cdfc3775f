package ingest

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/chunk"
)

// publisherSession is srv's publishing session (the tests here have one
// at most), nil if none.
func publisherSession(srv *Server) *session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for s := range srv.sessions {
		if role(s.roleA.Load()) == rolePublisher {
			return s
		}
	}
	return nil
}

// socketLowat is the SO_RCVLOWAT of sess's socket, as the kernel has it.
func socketLowat(t *testing.T, sess *session) int {
	t.Helper()
	raw := rawConnOf(sess.conn)
	if raw == nil {
		t.Fatal("session has no descriptor")
	}
	var v int
	var err error
	if cerr := raw.Control(func(fd uintptr) { v, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// coalescedPublisher publishes key on srv at about 250 KB/s for longer
// than the rate is measured over, with a player on it, and waits until the
// publisher's mark has risen. It returns the publisher, its stream id,
// the next timestamp, and the player's arrivals: each video timestamp as
// the player reads it.
func coalescedPublisher(t *testing.T, srv *Server, addr, key string) (*testClient, uint32, uint32, <-chan uint32) {
	t.Helper()
	pub := dialClient(t, addr)
	msid, code := pub.publish("live", key)
	if code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	pl := dialClient(t, addr)
	pl.play("live", key)
	arrivals := make(chan uint32, 4096)
	go func() {
		for {
			m, err := pl.next()
			if err != nil {
				return
			}
			if m.TypeID == chunk.TypeVideo {
				select {
				case arrivals <- m.Timestamp:
				default:
				}
			}
		}
	}()
	if err := pub.sendMedia(msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
		t.Fatal(err)
	}
	ts := uint32(0)
	var sess *session
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := pub.sendMedia(msid, chunk.TypeVideo, ts, videoFrame(ts%100 == 0, 1000, int(ts))); err != nil {
			t.Fatal(err)
		}
		ts += 4
		time.Sleep(4 * time.Millisecond)
		if sess == nil {
			sess = publisherSession(srv)
		}
		if sess != nil && sess.lowat.Load() > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the publisher's mark never rose above one byte")
		}
	}
	if got := socketLowat(t, sess); got <= 1 {
		t.Fatalf("the socket's SO_RCVLOWAT is %d; the session's mark says %d", got, sess.lowat.Load())
	}
	return pub, msid, ts, arrivals
}

// waitArrival waits for the player to read the frame with timestamp ts.
func waitArrival(t *testing.T, arrivals <-chan uint32, ts uint32, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	timeout := time.After(within)
	for {
		select {
		case got := <-arrivals:
			if got == ts {
				return time.Since(start)
			}
		case <-timeout:
			t.Fatalf("the frame at %d ms never reached the player (%s)", ts, within)
		}
	}
}

// TestReadCoalescingBoundsTheWait: a publisher whose rate falls leaves a
// frame below its mark, which the sweep lowers, so the frame goes on at
// once instead of when more media comes (here never) or at the idle
// timeout.
func TestReadCoalescingBoundsTheWait(t *testing.T) {
	const window = 50 * time.Millisecond
	srv, addr, _ := startServer(t, Config{ReadCoalesce: window, IdleTimeout: time.Minute})
	pub, msid, ts, arrivals := coalescedPublisher(t, srv, addr, "k")
	sess := publisherSession(srv)
	mark := sess.lowat.Load()
	// One small frame, far below the mark, and then nothing.
	if err := pub.sendMedia(msid, chunk.TypeVideo, ts, videoFrame(false, 20, int(ts))); err != nil {
		t.Fatal(err)
	}
	took := waitArrival(t, arrivals, ts, 5*time.Second)
	t.Logf("mark %d bytes; a %d-byte frame below it reached the player after %s (bound about 3 × %s)", mark, 20, took.Round(time.Millisecond), window)
	if got, kernel := sess.lowat.Load(), socketLowat(t, sess); got != 1 || kernel != 1 {
		t.Fatalf("after the sweep the mark is %d (the socket's SO_RCVLOWAT %d), want 1", got, kernel)
	}
}

// TestParkResetsReadMark: a socket leaves the process read at every byte,
// so that whatever build takes it reads as it would any socket.
func TestParkResetsReadMark(t *testing.T) {
	cfg := Config{ReadCoalesce: 50 * time.Millisecond, IdleTimeout: time.Minute}
	srv, addr, _ := startServer(t, cfg)
	pub, msid, ts, arrivals := coalescedPublisher(t, srv, addr, "k")
	old := publisherSession(srv)
	next := upgradeInProcess(t, srv, Config{IdleTimeout: time.Minute})
	srv.coalesce.mu.Lock()
	n := len(srv.coalesce.set)
	srv.coalesce.mu.Unlock()
	if n != 0 {
		t.Errorf("the old server still sweeps %d sessions that left it", n)
	}
	var sess *session
	waitFor(t, "the publisher in the new server", func() bool { sess = publisherSession(next); return sess != nil })
	if got := socketLowat(t, sess); got != 1 {
		t.Fatalf("the moved socket's SO_RCVLOWAT is %d, want 1 (the old session's mark was %d)", got, old.lowat.Load())
	}
	// The new server, coalescing off, reads a small frame at once.
	if err := pub.sendMedia(msid, chunk.TypeVideo, ts, videoFrame(false, 20, int(ts))); err != nil {
		t.Fatal(err)
	}
	waitArrival(t, arrivals, ts, 5*time.Second)
}

// TestUnpublishResetsReadMark: a connection that ends its publish and
// stays open reads every byte again, for the commands it sends next.
func TestUnpublishResetsReadMark(t *testing.T) {
	srv, addr, _ := startServer(t, Config{ReadCoalesce: 50 * time.Millisecond, IdleTimeout: time.Minute})
	pub, msid, _, _ := coalescedPublisher(t, srv, addr, "k")
	sess := publisherSession(srv)
	pub.command(msid, "deleteStream", 0.0, nil, float64(msid))
	waitFor(t, "the publish to end", func() bool { return publisherSession(srv) == nil })
	if got := socketLowat(t, sess); got != 1 {
		t.Fatalf("after the publish ended the socket's SO_RCVLOWAT is %d, want 1", got)
	}
	srv.coalesce.mu.Lock()
	_, swept := srv.coalesce.set[sess]
	srv.coalesce.mu.Unlock()
	if swept {
		t.Error("the sweep still holds a session that no longer publishes")
	}
}

// TestParkDrainsBelowTheMark: media waiting below a publisher's mark when
// an upgrade parks it reaches the viewers before the park, not after the
// upgrade.
func TestParkDrainsBelowTheMark(t *testing.T) {
	srv, addr, _ := startServer(t, Config{ReadCoalesce: 50 * time.Millisecond, IdleTimeout: time.Minute})
	pub, msid, ts, arrivals := coalescedPublisher(t, srv, addr, "k")
	// Far below the mark, and parked long before the sweep would lower it.
	if err := pub.sendMedia(msid, chunk.TypeVideo, ts, videoFrame(false, 20, int(ts))); err != nil {
		t.Fatal(err)
	}
	parked, err := srv.Park(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer parked.Resume()
	// Parked: nothing reads the socket now.
	waitArrival(t, arrivals, ts, 2*time.Second)
}
