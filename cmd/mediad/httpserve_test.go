package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// A request on a connection accepted before the hand-over, read only
// after it began, is answered; net/http's Shutdown drops such a request
// with no reply, which is what a viewer redialling during an upgrade hit.
func TestHandOverAnswersAcceptedRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	})}
	s := serveHTTP(srv, ln, "test", zerolog.Nop())

	// idle: a keep-alive connection with one request answered.
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleR := bufio.NewReader(idle)
	if _, err := io.WriteString(idle, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(idleR, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	// fresh: accepted, its request not sent yet.
	fresh, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	waitFor(t, "both connections accepted", 5*time.Second, func() bool { return s.open.Load() == 2 })

	done := make(chan struct{})
	go func() {
		defer close(done)
		s.handOver(context.Background())
	}()
	waitFor(t, "the listener closed", 5*time.Second, func() bool {
		select {
		case <-s.served:
			return true
		default:
			return false
		}
	})
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("a new connection was accepted after the hand-over began")
	}

	_ = fresh.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(fresh, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(fresh), nil)
	if err != nil {
		t.Fatalf("request read after the hand-over began: %v (want an answer)", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok /late" || !resp.Close {
		t.Errorf("answer: %d %q, Connection: close %v; want 200 \"ok /late\" and close", resp.StatusCode, body, resp.Close)
	}

	// The idle connection was closed by the server, not left open.
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idleR.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle keep-alive connection: read %d, %v; want EOF", n, err)
	}

	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handOver did not return after every connection closed")
	}
}

// A connection that never sends its request holds the hand-over only
// until its context ends.
func TestHandOverCutsAtDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	s := serveHTTP(srv, ln, "test", zerolog.Nop())
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the connection accepted", 5*time.Second, func() bool { return s.open.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s.handOver(ctx)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("silent connection after the deadline: %v; want EOF (closed by the server)", err)
	}
}
