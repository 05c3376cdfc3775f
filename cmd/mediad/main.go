// Command mediad is a live RTMP ingest server: it accepts publishers,
// records every broadcast and relays it to players.
//
//	go run ./cmd/mediad
//	ffmpeg -re -i in.flv -c copy -f flv rtmp://127.0.0.1/live/test
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest"
)

// version is the build version, set with
// -ldflags "-X main.version=v1.2.3"; otherwise the module's VCS info.
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

type options struct {
	rtmpAddr        string
	httpAddr        string
	recordDir       string
	segment         time.Duration
	pidfile         string
	authFile        string
	maxMessage      uint
	handshakeTO     time.Duration
	idleTO          time.Duration
	shutdownTimeout time.Duration
	logFormat       string
	logLevel        string
	showVersion     bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mediad", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.rtmpAddr, "rtmp", ":1935", "RTMP listen address")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:8080", "admin HTTP listen address (empty disables)")
	fs.StringVar(&o.recordDir, "record-dir", "recordings", "directory for recordings (empty disables recording)")
	fs.DurationVar(&o.segment, "segment", time.Hour, "cut recordings at a keyframe after this long (0: one file per broadcast)")
	fs.StringVar(&o.pidfile, "pidfile", "", "write the PID to this file")
	fs.StringVar(&o.authFile, "auth-file", "", "file of APP/KEY pairs or \"APP secret=S\" lines allowed to publish (empty: anyone may publish)")
	fs.UintVar(&o.maxMessage, "max-message-size", 16<<20, "largest RTMP message accepted, in bytes")
	fs.DurationVar(&o.handshakeTO, "handshake-timeout", 10*time.Second, "close clients that do not finish handshake and connect in this time")
	fs.DurationVar(&o.idleTO, "idle-timeout", 30*time.Second, "close publishers that send nothing for this long")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "longest graceful stop")
	fs.StringVar(&o.logFormat, "log-format", "auto", "json, console, or auto (console on a terminal)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.segment < 0 {
		return o, fmt.Errorf("-segment must not be negative, got %s", o.segment)
	}
	if o.maxMessage == 0 || o.maxMessage > 1<<30 {
		return o, fmt.Errorf("-max-message-size must be between 1 and 1 GiB, got %d", o.maxMessage)
	}
	return o, nil
}

func newLogger(format, level string, w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("log level: %w", err)
	}
	switch format {
	case "auto":
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
		}
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: true}
	case "json":
	default:
		return zerolog.Logger{}, fmt.Errorf("log format %q: want json, console or auto", format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mediad:", err)
		return 2
	}
	if o.showVersion {
		fmt.Fprintln(stdout, "mediad", buildVersion())
		return 0
	}
	log, err := newLogger(o.logFormat, o.logLevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mediad:", err)
		return 2
	}
	log = log.With().Str("version", buildVersion()).Int("pid", os.Getpid()).Logger()
	if err := serve(o, log); err != nil {
		log.Error().Err(err).Msg("mediad stopped with an error")
		return 1
	}
	return 0
}

func serve(o options, log zerolog.Logger) error {
	cfg := ingest.Config{
		SegmentDuration:  o.segment,
		MaxMessageSize:   uint32(o.maxMessage),
		HandshakeTimeout: o.handshakeTO,
		IdleTimeout:      o.idleTO,
		Logger:           log,
	}
	if o.recordDir != "" {
		dir, err := filepath.Abs(o.recordDir)
		if err != nil {
			return fmt.Errorf("record dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("record dir: %w", err)
		}
		cfg.RecordDir = dir
	}
	if o.authFile != "" {
		a, err := ingest.LoadAuth(o.authFile)
		if err != nil {
			return err
		}
		cfg.Auth = a
	}
	ln, err := net.Listen("tcp", o.rtmpAddr)
	if err != nil {
		return fmt.Errorf("rtmp listener: %w", err)
	}
	srv := ingest.NewServer(cfg)
	started := time.Now()

	var admin *http.Server
	if o.httpAddr != "" {
		hl, err := net.Listen("tcp", o.httpAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("admin listener: %w", err)
		}
		admin = &http.Server{Handler: adminHandler(srv, started), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := admin.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error().Err(err).Msg("admin HTTP stopped")
			}
		}()
		log.Info().Str("addr", hl.Addr().String()).Msg("admin HTTP listening")
	}
	if o.pidfile != "" {
		if err := writePIDFile(o.pidfile); err != nil {
			ln.Close()
			return err
		}
		defer os.Remove(o.pidfile)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info().Str("rtmp", ln.Addr().String()).Str("record_dir", cfg.RecordDir).Dur("segment", o.segment).Msg("mediad ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	var runErr error
	select {
	case s := <-sig:
		log.Info().Str("signal", s.String()).Msg("stopping")
	case err := <-serveErr:
		runErr = err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if admin != nil {
		_ = admin.Shutdown(ctx)
	}
	if err := srv.Close(); err != nil {
		log.Warn().Err(err).Msg("closing RTMP listener")
	}
	log.Info().Dur("uptime", time.Since(started)).Msg("mediad stopped")
	return runErr
}

// writePIDFile writes atomically, so a supervisor never reads half a PID.
func writePIDFile(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

func adminHandler(srv *ingest.Server, started time.Time) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /api/streams", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, srv.Registry().List())
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"version":  buildVersion(),
			"pid":      os.Getpid(),
			"started":  started.UTC(),
			"sessions": srv.SessionCount(),
			"streams":  srv.Registry().List(),
		})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
