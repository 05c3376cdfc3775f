// Package media is the public HTTP listener for viewers: LL-HLS playlists
// and files, HTTP-FLV, and the pages that play them in a browser. It is
// separate from the admin listener, which stays on loopback.
package media

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest"
	"github.com/mediad/mediad/ingest/hls"
)

// Config bounds what viewers may hold.
type Config struct {
	// MaxBlocking is how many blocking playlist and part requests may wait
	// at once; past it a request gets 503 at once.
	MaxBlocking int
	// MaxConnsPerClient is how many connections one client address may
	// hold; past it a connection gets 429 and is closed. 0: no limit.
	MaxConnsPerClient int
	// WebDir holds the installed player code (web/node_modules); "" means
	// pages use the browser's native HLS only.
	WebDir string
	Log    zerolog.Logger
}

// Server answers viewers' requests.
type Server struct {
	cfg      Config
	ingest   *ingest.Server
	assets   http.Handler
	haveJS   bool
	blocking atomic.Int64
	// Requests answered after the streams moved to a new process end
	// their connection, so the client's next request reaches the new one.
	movedResponses atomic.Uint64

	mu    sync.Mutex
	conns map[string]int
}

// New returns the handler for the media listener.
func New(cfg Config, srv *ingest.Server) *Server {
	if cfg.MaxBlocking <= 0 {
		cfg.MaxBlocking = 10000
	}
	s := &Server{cfg: cfg, ingest: srv, conns: make(map[string]int)}
	if cfg.WebDir != "" {
		s.assets, s.haveJS = Assets(cfg.WebDir)
	}
	if !s.haveJS {
		cfg.Log.Info().Str("web_dir", cfg.WebDir).Msg("hls.js not installed (scripts/web-deps.sh): player pages use the browser's native HLS")
	}
	return s
}

// HTTPServer returns the media listener's server (HTTP1), with the
// timeouts a public listener needs: a client that sends its request
// slowly, or never reads the answer, is cut off rather than holding a
// goroutine and a buffer.
func (s *Server) HTTPServer() *HTTP1 {
	return NewHTTP1(s, HTTP1Config{
		ReadHeaderTimeout: 5 * time.Second,
		// Long enough for a blocking request (three target durations) and
		// its answer; HTTP-FLV connections are hijacked and set their own.
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  60 * time.Second,
		Adopt:        s.adopt,
		Log:          s.cfg.Log,
	})
}

// adopt counts a connection taken over from the old process against its
// client's limit. It is never refused: the client was admitted already.
func (s *Server) adopt(c net.Conn) net.Conn {
	if s.cfg.MaxConnsPerClient <= 0 {
		return c
	}
	host := clientHost(c.RemoteAddr())
	s.mu.Lock()
	s.conns[host]++
	s.mu.Unlock()
	return &countedConn{Conn: c, s: s, host: host}
}

// Listener applies the per-client connection limit to ln.
func (s *Server) Listener(ln net.Listener) net.Listener {
	if s.cfg.MaxConnsPerClient <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, s: s}
}

type limitListener struct {
	net.Listener
	s *Server
}

// SetDeadline reaches the listener's, so that a park can wake Accept.
func (l *limitListener) SetDeadline(t time.Time) error {
	if d, ok := l.Listener.(interface{ SetDeadline(time.Time) error }); ok {
		return d.SetDeadline(t)
	}
	return nil
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := clientHost(c.RemoteAddr())
		l.s.mu.Lock()
		n := l.s.conns[host]
		over := n >= l.s.cfg.MaxConnsPerClient
		if !over {
			l.s.conns[host] = n + 1
		}
		l.s.mu.Unlock()
		if !over {
			return &countedConn{Conn: c, s: l.s, host: host}, nil
		}
		l.s.cfg.Log.Warn().Str("client", host).Int("limit", l.s.cfg.MaxConnsPerClient).Msg("media: connection refused: too many from one client")
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 38\r\n\r\ntoo many connections from this client\n"))
		c.Close()
	}
}

// countedConn gives its slot back when closed, whoever closes it (the
// HTTP server, or HTTP-FLV after a hijack).
type countedConn struct {
	net.Conn
	s    *Server
	host string
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		if c.s.conns[c.host]--; c.s.conns[c.host] <= 0 {
			delete(c.s.conns, c.host)
		}
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// SyscallConn reaches the socket, so that an HTTP-FLV viewer can be handed
// to a new process in an upgrade.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	return sc.SyscallConn()
}

func clientHost(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, _ := net.SplitHostPort(a.String())
	return host
}

// Header values every answer of a kind carries, made once: a viewer's
// requests come by the ten thousand a second, and http.Header.Set makes a
// slice for each value. Assigned, never appended to in place (a length-1
// slice is copied by append).
var (
	hdrAnyOrigin = []string{"*"}
	hdrExpose    = []string{"Content-Length, Content-Range, Age"}
	hdrPlaylist  = []string{"application/vnd.apple.mpegurl"}
	hdrNoCache   = []string{"no-cache"}
	hdrMP4       = []string{"video/mp4"}
	hdrSegment   = []string{"video/iso.segment"}
	hdrMaxAge60  = []string{"max-age=60"}
	hdrBytes     = []string{"bytes"}
)

// ServeHTTP routes: / (streams), /APP/KEY/ (player), /APP/KEY/index.m3u8,
// /APP/KEY/<init, segment or part>, /APP/KEY.flv, /assets/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Access-Control-Allow-Origin"] = hdrAnyOrigin
	h["Access-Control-Expose-Headers"] = hdrExpose
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Range, Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == "/" {
		s.index(w)
		return
	}
	if strings.HasPrefix(p, "/assets/") {
		if s.assets == nil {
			http.Error(w, "player code not installed: run scripts/web-deps.sh", http.StatusNotFound)
			return
		}
		s.assets.ServeHTTP(w, r)
		return
	}
	// Names are checked element by element against the rules of stream
	// names, so "..", "%2e%2e" and empty elements never reach the disk.
	var buf [4]string
	parts := splitPath(strings.TrimPrefix(p, "/"), buf[:0])
	for _, el := range parts {
		if el == "." || el == ".." {
			http.Error(w, "bad path: no . or .. elements", http.StatusBadRequest)
			return
		}
	}
	switch {
	case len(parts) == 2 && strings.HasSuffix(parts[1], ".flv"):
		app, key := parts[0], strings.TrimSuffix(parts[1], ".flv")
		if !ingest.ValidName(app) || !ingest.ValidName(key) {
			http.Error(w, "bad stream name", http.StatusBadRequest)
			return
		}
		s.ingest.ServeFLV(w, r, app, key)
	case len(parts) == 3:
		app, key, file := parts[0], parts[1], parts[2]
		if !ingest.ValidName(app) || !ingest.ValidName(key) {
			http.Error(w, "bad stream name", http.StatusBadRequest)
			return
		}
		switch {
		case file == "":
			PlayerPage(w, app, key, s.haveJS)
		case file == "index.m3u8":
			s.playlist(w, r, app, key)
		case hls.ValidName(file):
			s.file(w, r, app, key, file)
		default:
			http.Error(w, "no such file", http.StatusNotFound)
		}
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func (s *Server) index(w http.ResponseWriter) {
	var links []StreamLink
	for _, st := range s.ingest.Registry().List() {
		if st.Live {
			links = append(links, StreamLink{App: st.App, Key: st.Key, Players: st.Players, Live: st.Live, BitrateKbps: st.Stats.BitrateKbps, DurationS: st.DurationS})
		}
	}
	IndexPage(w, links)
}

// splitPath is strings.Split(p, "/") into dst, which a short path fits
// without an allocation.
func splitPath(p string, dst []string) []string {
	for {
		el, rest, found := strings.Cut(p, "/")
		dst = append(dst, el)
		if !found {
			return dst
		}
		p = rest
	}
}

// muxer finds a live stream's muxer, answering the request itself when
// there is none.
func (s *Server) muxer(w http.ResponseWriter, app, key string) *hls.Muxer {
	m := s.ingest.Registry().HLS(app, key)
	if m == nil {
		http.Error(w, "no live stream "+app+"/"+key, http.StatusNotFound)
		return nil
	}
	if err := m.Unsupported(); err != nil {
		http.Error(w, "this stream cannot be played as HLS: "+err.Error(), http.StatusUnsupportedMediaType)
		return nil
	}
	return m
}

// parseDirectives reads _HLS_msn and _HLS_part (RFC 8216bis §6.2.5.2).
// The usual query (plain names and digits) is scanned in place; anything
// escaped goes through url.ParseQuery.
func parseDirectives(r *http.Request) (hls.Request, bool) {
	var msn, part string
	if q := r.URL.RawQuery; strings.ContainsAny(q, "%+;") {
		v := r.URL.Query()
		msn, part = v.Get("_HLS_msn"), v.Get("_HLS_part")
	} else {
		var haveMSN, havePart bool
		for q != "" {
			var kv string
			kv, q, _ = strings.Cut(q, "&")
			k, v, _ := strings.Cut(kv, "=")
			switch {
			case k == "_HLS_msn" && !haveMSN:
				msn, haveMSN = v, true
			case k == "_HLS_part" && !havePart:
				part, havePart = v, true
			}
		}
	}
	var req hls.Request
	if msn != "" {
		n, err := strconv.ParseUint(msn, 10, 63)
		if err != nil {
			return req, false
		}
		req.MSN, req.HasMSN = n, true
	}
	if part != "" {
		n, err := strconv.ParseUint(part, 10, 31)
		if err != nil || !req.HasMSN {
			return req, false
		}
		req.Part, req.HasPart = n, true
	}
	return req, true
}

// wait takes a slot for a request that may block, or answers 503.
func (s *Server) wait(w http.ResponseWriter) bool {
	if s.blocking.Add(1) > int64(s.cfg.MaxBlocking) {
		s.blocking.Add(-1)
		s.cfg.Log.Warn().Int("limit", s.cfg.MaxBlocking).Msg("media: blocking request refused: limit reached")
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many blocking requests", http.StatusServiceUnavailable)
		return false
	}
	return true
}

func (s *Server) playlist(w http.ResponseWriter, r *http.Request, app, key string) {
	req, ok := parseDirectives(r)
	if !ok {
		http.Error(w, "bad _HLS_msn or _HLS_part", http.StatusBadRequest)
		return
	}
	m := s.muxer(w, app, key)
	if m == nil {
		return
	}
	if !s.wait(w) {
		return
	}
	b, moved, err := m.Playlist(r.Context(), req)
	s.blocking.Add(-1)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	if moved {
		s.movedResponses.Add(1)
		h.Set("Connection", "close")
	}
	h["Content-Type"] = hdrPlaylist
	h["Cache-Control"] = hdrNoCache
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}

func (s *Server) file(w http.ResponseWriter, r *http.Request, app, key, name string) {
	m := s.muxer(w, app, key)
	if m == nil {
		return
	}
	if !s.wait(w) {
		return
	}
	f, err := m.Open(r.Context(), name)
	s.blocking.Add(-1)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	h := w.Header()
	if f.Moved {
		s.movedResponses.Add(1)
		h.Set("Connection", "close")
	}
	switch {
	case strings.HasSuffix(name, ".mp4"):
		h["Content-Type"] = hdrMP4
	default:
		h["Content-Type"] = hdrSegment
	}
	// A file never changes once listed: caches may keep it as long as
	// the playlist could list it.
	h["Cache-Control"] = hdrMaxAge60
	rh := r.Header
	if rh.Get("Range") != "" || rh.Get("If-Modified-Since") != "" || rh.Get("If-None-Match") != "" {
		http.ServeContent(w, r, "", f.ModTime, f.Reader())
		return
	}
	// The common case, a whole file or part, skips ServeContent's
	// content sniffing and header parsing: at a thousand viewers it is a
	// fifth of the server's CPU.
	h["Accept-Ranges"] = hdrBytes
	h["Content-Length"] = []string{strconv.FormatInt(f.Size, 10)}
	if !f.ModTime.IsZero() {
		h.Set("Last-Modified", f.ModTime.UTC().Format(http.TimeFormat))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = f.WriteTo(w)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, hls.ErrNotFound), errors.Is(err, hls.ErrEnded):
		status = http.StatusNotFound
	case errors.Is(err, hls.ErrTooFarAhead):
		status = http.StatusBadRequest
	case errors.Is(err, hls.ErrTimeout), errors.Is(err, hls.ErrStarting):
		w.Header().Set("Retry-After", "1")
		status = http.StatusServiceUnavailable
	case errors.Is(err, hls.ErrMoved):
		s.movedResponses.Add(1)
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "0")
		status = http.StatusServiceUnavailable
	case errors.Is(err, hls.ErrUnsupported):
		status = http.StatusUnsupportedMediaType
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return // the client left
	}
	if status == http.StatusInternalServerError {
		s.cfg.Log.Error().Err(err).Str("path", r.URL.Path).Msg("media request failed")
	}
	w.Header().Set("Cache-Control", "no-cache")
	http.Error(w, err.Error(), status)
}

// MovedResponses counts answers given after streams moved away.
func (s *Server) MovedResponses() uint64 { return s.movedResponses.Load() }

// Blocking is how many requests wait for a playlist update or a part.
func (s *Server) Blocking() int64 { return s.blocking.Load() }
