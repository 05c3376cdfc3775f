package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// servedHTTP is a net/http server on a listener that an upgrade shares
// with the new process (the admin listener). It exists for handOver.
//
// http.Server.Shutdown is wrong for the old process after an upgrade:
// net/http drops, with no answer, any request it reads once shutdown has
// begun, and until Shutdown closes this process's copy of the shared
// listener a client's connection may still be accepted here. The media
// listener met it first (a viewer redials the moment it is told its
// stream moved: an empty reply, seen in CI as hlsload's "playlist EOF");
// its own server (media.HTTP1) answers such requests, and this does the
// same for the admin listener's status and health requests.
type servedHTTP struct {
	srv *http.Server
	ln  net.Listener

	open   atomic.Int64  // connections accepted and not yet closed or hijacked
	closed chan struct{} // a token after each close or hijack
	served chan struct{} // closed when Serve has returned
	ending atomic.Bool   // the listener was closed on purpose
}

// serveHTTP serves srv on ln until srv is closed or handed over. what names
// the server in the log.
func serveHTTP(srv *http.Server, ln net.Listener, what string, log zerolog.Logger) *servedHTTP {
	s := &servedHTTP{srv: srv, ln: ln, closed: make(chan struct{}, 1), served: make(chan struct{})}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.open.Add(1)
		case http.StateHijacked, http.StateClosed:
			s.open.Add(-1)
			select {
			case s.closed <- struct{}{}:
			default:
			}
		}
		if prev != nil {
			prev(c, st)
		}
	}
	go func() {
		defer close(s.served)
		err := srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !s.ending.Load() {
			log.Error().Err(err).Msg(what + " HTTP stopped")
		}
	}()
	return s
}

// handOver ends this process's part after an upgrade without dropping a
// request it accepted. Every answer from now on says Connection: close
// and idle connections close (a client's request racing that close is
// one HTTP/1.1 clients retry: nothing of it was read). The listener
// closes, so new connections reach the new process only. What was
// accepted is answered; when ctx ends first, what is left is cut.
func (s *servedHTTP) handOver(ctx context.Context) {
	s.srv.SetKeepAlivesEnabled(false)
	s.ending.Store(true)
	_ = s.ln.Close()
	// Serve counts a connection before it returns: once it has, open
	// holds every connection there will be.
	select {
	case <-s.served:
	case <-ctx.Done():
	}
	for s.open.Load() > 0 {
		select {
		case <-s.closed:
		case <-ctx.Done():
			_ = s.srv.Close()
			return
		}
	}
	_ = s.srv.Close()
}
