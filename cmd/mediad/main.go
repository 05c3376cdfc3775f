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
	gopCache        uint
	gopCacheTotal   uint
	handshakeTO     time.Duration
	idleTO          time.Duration
	readCoalesce    time.Duration
	shutdownTimeout time.Duration
	upgradeTimeout  time.Duration
	drainTimeout    time.Duration
	mediaAddr       string
	hls             bool
	hlsDir          string
	hlsPart         time.Duration
	hlsSegment      time.Duration
	hlsWindow       uint
	mediaMaxConns   uint
	mediaMaxBlock   uint
	webDir          string
	// push lists the relay targets: --push URL (every app) and the config
	// file's [[push]] tables.
	push pushList
	// Webhooks: a URL per event, and how they are called.
	hookURLs     map[string]*string
	hookTimeout  time.Duration
	hookFailOpen bool
	hookSecret   string
	hookRetryFor time.Duration
	logFormat    string
	logLevel     string
	showVersion  bool
	// config is the file the settings were read from, if any.
	config string
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
		case "drain":
			return runDrainCommand(args[1:], stdout, stderr)
		case "check-config":
			return runCheckConfig(args[1:], stdout, stderr)
		}
	}
	o, err := loadOptions(args, os.LookupEnv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mediad:", err)
		// A new binary started by an upgrade tells the old process why it
		// cannot take over, so the verdict names the bad setting.
		refuseTakeOver(nil, fmt.Errorf("settings: %w", err))
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
	gc := applyGCDefaults(os.LookupEnv)
	log.Info().Str("gogc", gc.GOGC).Str("memory_limit", gc.MemoryLimit).Msg("garbage collector")
	if err := serve(o, log); err != nil {
		log.Error().Err(err).Msg("mediad stopped with an error")
		return 1
	}
	return 0
}
