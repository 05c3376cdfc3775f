// Command mediad is a live RTMP ingest server: it accepts publishers,
// records every broadcast and relays it to players.
//
//	go run ./cmd/mediad
//	ffmpeg -re -i in.flv -c copy -f flv rtmp://127.0.0.1/live/test
//
// SIGHUP, or `mediad upgrade`, replaces the running binary with the one now
// at its path while every connection, recording and stream carries on.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
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
	upgradeTimeout  time.Duration
	drainTimeout    time.Duration
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
	fs.DurationVar(&o.upgradeTimeout, "upgrade-timeout", 30*time.Second, "a new binary must take over within this time or the upgrade rolls back")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Second, "after an upgrade, the old process finishes its HTTP requests within this time and exits")
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
	if len(args) > 0 {
		switch args[0] {
		case "upgrade":
			return runUpgradeCommand(args[1:], stdout, stderr)
		case "status":
			return runStatusCommand(args[1:], stdout, stderr)
		}
	}
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
	if code, ok := maybeInit(args, o, log); ok {
		return code
	}
	if err := serve(o, log); err != nil {
		log.Error().Err(err).Msg("mediad stopped with an error")
		return 1
	}
	return 0
}
