package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/rs/zerolog"

	"github.com/mediad/mediad/handoff/upgrade"
	"github.com/mediad/mediad/ingest"
	"github.com/mediad/mediad/ingest/hls"
	mediapkg "github.com/mediad/mediad/ingest/media"
	"github.com/mediad/mediad/ingest/webhook"
)

// serve runs mediad until a signal stops it or an upgrade hands everything
// to a new process.
func serve(o options, log zerolog.Logger) error {
	// Signals first: until Notify, Go's default for SIGHUP is to exit, and a
	// supervisor may send one the moment the PID file names this process.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	started := time.Now()

	// tableflip owns the listeners: inherited from the old process on an
	// upgrade, opened here otherwise. The PID file follows the process that
	// serves (written at Ready).
	upg, err := tableflip.New(tableflip.Options{UpgradeTimeout: o.upgradeTimeout, PIDFile: o.pidfile})
	if err != nil {
		return fmt.Errorf("upgrader: %w", err)
	}
	defer upg.Stop()
	// A new process started by an upgrade collects nothing until it is
	// as large as the old one, or until its streams have caught up.
	releaseGC := func() {}
	// primed returns once the heap is warm; the take-over waits for it
	// before the park.
	primed := func() {}
	if upg.HasParent() {
		if floor := residentBytes(os.Getppid()); floor > 0 {
			releaseGC = holdGC(floor)
			log.Info().Int64("until_mib", floor>>20).Dur("at_most_after_ready", catchUpHold).Msg("garbage collection deferred while the sessions catch up")
			// What the restore allocates, a fraction of the old process's
			// size, comes from memory faulted in before the park, not
			// while every session waits. It is faulted in alongside the
			// start, the hello and the bases: before the hello, it held
			// the old process's upgrade up by its whole length, 0.26 to
			// 1.3 s at 10,000 streams.
			warm := make(chan struct{})
			go func() {
				defer close(warm)
				warmStart := time.Now()
				w := warmHeap(floor / warmHeapShare)
				log.Info().Int64("mib", w.Bytes>>20).Dur("took", time.Since(warmStart)).
					Float64("fault_us", float64(w.PerFault.Nanoseconds())/1e3).Bool("huge_pages", w.Huge).
					Msg("heap warmed for the sessions")
			}()
			// Every way out of serve waits for it.
			defer func() { <-warm }()
			primed = func() { <-warm }
		}
	}
	defer releaseGC()
	// Whatever stops a new process before it takes over goes back to the
	// old one as the reason, and the old one carries on.
	fail := func(err error) error {
		refuseTakeOver(upg, err)
		return err
	}
	cfg := ingest.Config{
		SegmentDuration:    o.segment,
		MaxMessageSize:     uint32(o.maxMessage),
		GOPCacheBytes:      int(o.gopCache),
		GOPCacheTotalBytes: int64(o.gopCacheTotal),
		HandshakeTimeout:   o.handshakeTO,
		IdleTimeout:        o.idleTO,
		ReadCoalesce:       o.readCoalesce,
		Logger:             log,
	}
	if o.recordDir != "" {
		dir, err := filepath.Abs(o.recordDir)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			return fail(fmt.Errorf("record dir: %w", err))
		}
		cfg.RecordDir = dir
	}
	if o.hls {
		dir, err := hlsRoot(o.hlsDir)
		if err != nil {
			return fail(err)
		}
		cfg.HLSDir = dir
		cfg.HLS = hls.Config{PartTarget: o.hlsPart, SegmentTarget: o.hlsSegment, Window: int(o.hlsWindow)}
	}
	if o.authFile != "" {
		a, err := ingest.LoadAuth(o.authFile)
		if err != nil {
			return fail(err)
		}
		cfg.Auth = a
	}
	if cfg.Push, err = o.push.targets(); err != nil {
		return fail(err)
	}
	hooks := newHooks(o, log)
	defer hooks.Close()
	cfg.Hooks = hooks
	ln, err := listen(upg, "rtmp", o.rtmpAddr, log)
	if err != nil {
		return fail(fmt.Errorf("rtmp listener: %w", err))
	}
	srv := ingest.NewServer(cfg)
	l := newLedger(started)
	u := newUpgrader(upg, srv, l, log, o.upgradeTimeout)
	u.hooks = hooks
	var ready, draining, tookOver atomic.Bool
	tookOver.Store(!upg.HasParent())
	st := adminState{
		srv: srv, upgrader: u, ledger: l, started: started, hooks: hooks,
		ready:    func() bool { return ready.Load() && !draining.Load() },
		serving:  ready.Load,
		tookOver: tookOver.Load,
		drain:    func() { draining.Store(true) },
	}

	var (
		admin       *http.Server
		adminServed *servedHTTP
	)
	if o.httpAddr != "" {
		hl, err := listen(upg, "admin", o.httpAddr, log)
		if err != nil {
			srv.Close()
			return fail(fmt.Errorf("admin listener: %w", err))
		}
		admin = &http.Server{Handler: adminHandler(st), ReadHeaderTimeout: 5 * time.Second}
		adminServed = serveHTTP(admin, hl, "admin", log)
		log.Info().Str("addr", hl.Addr().String()).Msg("admin HTTP listening")
	}

	// The media listener is bound (or inherited) now, but served only once
	// the streams are here: until then a viewer's request waits in the
	// accept queue, or is taken by the old process, rather than finding
	// no stream.
	var (
		media   *mediapkg.HTTP1
		mediaLn net.Listener
	)
	if o.mediaAddr != "" {
		mediaLn, err = listen(upg, "media", o.mediaAddr, log)
		if err != nil {
			srv.Close()
			return fail(fmt.Errorf("media listener: %w", err))
		}
		webDir := o.webDir
		if webDir == "" {
			webDir = mediapkg.FindWebDir()
		}
		ms := mediapkg.New(mediapkg.Config{MaxBlocking: int(o.mediaMaxBlock), MaxConnsPerClient: int(o.mediaMaxConns), WebDir: webDir, Log: log}, srv)
		media = ms.HTTPServer()
		mediaLn = ms.Listener(mediaLn)
		// The viewers' connections move with the sessions from now on.
		u.sessions.media.Store(media)
	}

	// A new process is fully able to serve before it asks for a session;
	// then it takes them over, and only after the commit accepts anything.
	var (
		child    *upgrade.Child
		restored *takenOver
	)
	if upg.HasParent() {
		child, restored, err = takeOver(upg, srv, media, log, o.upgradeTimeout, primed)
		if err != nil {
			return fmt.Errorf("take over from the old process: %w", err)
		}
		if proc := child.Process; proc != nil {
			// Before Ready and before any session runs: the counters go on
			// from where the old process left them.
			l.restore(*proc)
			srv.AddTotals(ingest.Totals{BytesIn: proc.BytesIn, BytesOut: proc.BytesOut, Sessions: proc.SessionsAccepted})
			if proc.Outbox != nil {
				hooks.Restore(*proc.Outbox)
			}
		}
		tookOver.Store(true)
	}
	if err := upg.Ready(); err != nil {
		if child != nil {
			child.Discard()
		}
		srv.Close()
		return fmt.Errorf("ready: %w", err)
	}
	readyAt := time.Now()
	gcHeld := time.AfterFunc(catchUpHold, releaseGC)
	defer gcHeld.Stop()
	ready.Store(true)
	notifyReady(log)
	hooks.Start()
	// The stall report and the SIGHUP triggers are this function's
	// goroutines: every way out of it ends and waits for them, before the
	// webhooks they notify are closed.
	reportCtx, stopReport := context.WithCancel(context.Background())
	defer stopReport()
	var owned sync.WaitGroup
	if child != nil {
		restored.Start()
		owned.Go(func() { reportUpgrade(reportCtx, child, srv, restored, l, hooks, readyAt, log) })
	}
	// A stop cancels an upgrade in flight, which resumes its sessions here
	// for the graceful stop to end, and waits for it.
	stopUpgrades := func() {
		ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		u.Stop(ctx)
		stopReport()
		owned.Wait()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if media != nil {
		go func() {
			if err := media.Serve(mediaLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Msg("media HTTP stopped")
			}
		}()
		log.Info().Str("addr", mediaLn.Addr().String()).Msg("media HTTP listening")
	}
	if o.pidfile != "" {
		// tableflip removes nothing on exit; a stopped service leaves no
		// stale PID behind.
		defer removeOwnPIDFile(o.pidfile)
	}
	svcStart, gen := l.Start()
	log.Info().Str("rtmp", ln.Addr().String()).Str("record_dir", cfg.RecordDir).Dur("segment", o.segment).
		Bool("upgraded", upg.HasParent()).Uint64("generation", gen).Time("service_start", svcStart).
		Str("config", o.config).Msg("mediad ready")

	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				owned.Go(func() { u.Upgrade("") })
				continue
			}
			log.Info().Str("signal", s.String()).Msg("stopping")
			ready.Store(false)
			stopUpgrades()
			return stop(srv, admin, media, hooks, o.shutdownTimeout, log, started)
		case err := <-serveErr:
			ready.Store(false)
			if errors.Is(err, ingest.ErrServerClosed) {
				err = nil
			}
			stopUpgrades()
			stop(srv, admin, media, hooks, o.shutdownTimeout, log, started)
			return err
		case <-upg.Exit():
			ready.Store(false)
			// The new process has every session. Let the upgrade finish
			// handing them over (it closes our copies and records the
			// verdict), finish HTTP requests, exit.
			// The admin listener closes at once, so that status requests
			// reach the new process only.
			ctx, cancel := context.WithTimeout(context.Background(), o.drainTimeout)
			defer cancel()
			exitFrom := time.Now()
			shut := make(chan struct{})
			go func() {
				defer close(shut)
				if adminServed != nil {
					adminServed.handOver(ctx)
				}
			}()
			// Viewers' requests in flight are answered (a blocked one with
			// the playlist this process last had, once its stream has
			// moved) and their connections closed; new ones reach the new
			// process.
			mshut := make(chan struct{})
			go func() {
				defer close(mshut)
				if media != nil {
					// It answers every request it accepted, even one
					// read after this began (net/http's Shutdown would
					// drop it).
					_ = media.Shutdown(ctx)
				}
			}()
			u.Wait(ctx)
			upgradeDone := time.Since(exitFrom)
			stopReport()
			owned.Wait()
			<-shut
			// The registry keeps the moved streams' muxers for the
			// requests still being answered; closing it forgets them.
			<-mshut
			drained := time.Since(exitFrom)
			srv.Close()
			// Where the time from the new process's Ready to this exit
			// goes, for whoever tunes it: the upgrade's own end (the
			// sessions let go, the verdict), the HTTP drain, and closing
			// the server.
			log.Info().Dur("uptime", time.Since(started)).Float64("upgrade_end_ms", upgrade.MS(upgradeDone)).
				Float64("drain_ms", upgrade.MS(drained-upgradeDone)).Float64("close_ms", upgrade.MS(time.Since(exitFrom)-drained)).
				Msg("old process exiting after upgrade")
			return nil
		}
	}
}

// listen returns the listener called name: inherited from the old process
// when it passed one, opened on addr otherwise. tableflip keys listeners by
// the address they were opened with, so two on "127.0.0.1:0" would be
// confused; the key here is the name.
//
// An upgrade is also a config reload: when the address configured now is
// not the inherited listener's, a new listener replaces it. Connections
// already established carry on; new ones must use the new address once the
// old process has gone.
func listen(upg *tableflip.Upgrader, name, addr string, log zerolog.Logger) (net.Listener, error) {
	ln, err := upg.Fds.Listener("tcp", name)
	if err != nil {
		return nil, fmt.Errorf("inherited %s listener: %w", name, err)
	}
	if ln != nil {
		if listensOn(ln.Addr(), addr) {
			return ln, nil
		}
		log.Info().Str("listener", name).Str("from", ln.Addr().String()).Str("to", addr).Msg("listen address changed: rebinding")
		// Bind first: if the new address is taken, the error goes back to
		// the old process and nothing is lost.
		nl, err := net.Listen("tcp", addr)
		if err != nil {
			ln.Close()
			return nil, err
		}
		ln.Close()
		ln = nl
	} else if ln, err = net.Listen("tcp", addr); err != nil {
		return nil, err
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil, fmt.Errorf("%s listener is a %T", name, ln)
	}
	if err := upg.Fds.AddListener("tcp", name, tl); err != nil {
		ln.Close()
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	return ln, nil
}

// listensOn says whether a listener bound to have serves the configured
// address want: an ephemeral port (":0") matches whatever was bound.
func listensOn(have net.Addr, want string) bool {
	ta, ok := have.(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(want)
	if err != nil {
		return false
	}
	if port != "0" && port != strconv.Itoa(ta.Port) {
		return false
	}
	switch host {
	case "":
		return ta.IP.IsUnspecified()
	case "localhost":
		return ta.IP.IsLoopback()
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.Equal(ta.IP) || ip.IsUnspecified() && ta.IP.IsUnspecified())
}

func stop(srv *ingest.Server, admin *http.Server, media *mediapkg.HTTP1, hooks *webhook.Hooks, timeout time.Duration, log zerolog.Logger, started time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// RTMP first: publishes end and recordings are finalised, players are
	// told and drain; the admin endpoint answers until then.
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Dur("shutdown_timeout", timeout).Msg("graceful stop forced")
	}
	// The ends of the broadcasts just reported get what is left of the
	// stop's time to reach their receivers; what does not is logged.
	hooks.Flush(ctx)
	hooks.Close()
	if media != nil {
		_ = media.Shutdown(ctx)
	}
	if admin != nil {
		_ = admin.Shutdown(ctx)
	}
	log.Info().Dur("uptime", time.Since(started)).Msg("mediad stopped")
	return nil
}

// removeOwnPIDFile removes the PID file only if it still names this
// process: after an upgrade it names the successor.
func removeOwnPIDFile(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

// hlsRoot makes this process's directory for LL-HLS files under base, or
// under $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=) or the temp
// directory. Each process has its own, so that two servers never share
// one; a stream that moves in an upgrade keeps the directory it had.
func hlsRoot(base string) (string, error) {
	if base == "" {
		base = os.Getenv("RUNTIME_DIRECTORY")
	}
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("hls dir: %w", err)
	}
	dir, err := os.MkdirTemp(base, "mediad-hls-")
	if err != nil {
		return "", fmt.Errorf("hls dir: %w", err)
	}
	return dir, nil
}

// newHooks makes the webhooks the settings name; with none it is the
// package's inert form.
func newHooks(o options, log zerolog.Logger) *webhook.Hooks {
	urls := make(map[webhook.Event]string)
	for _, ev := range hookEvents {
		if u := *o.hookURLs[ev.name]; u != "" {
			urls[webhook.Event(ev.event)] = u
		}
	}
	host, _ := os.Hostname()
	return webhook.New(webhook.Config{
		URLs: urls, Timeout: o.hookTimeout, FailOpen: o.hookFailOpen, Secret: o.hookSecret, RetryFor: o.hookRetryFor,
		ServerID: host, Log: log.With().Str("component", "webhook").Logger(),
	})
}
