// Command rtmpload is an RTMP load generator: it opens N publishers, each
// replaying an FLV file (or a synthetic H.264/AAC stream) at real time like
// an encoder, optionally with M players per stream, and reports what was
// sent and received.
//
//	rtmpload -url rtmp://127.0.0.1:1935/live -n 100 -file in.flv -duration 30s
//	rtmpload -n 1000 -synthetic -bitrate 500k -players 1 -json > report.json
//
// Each publisher hashes the media payloads it sends (CRC-32, IEEE) so that a
// test can compare the report with the server's recording:
//
//	rtmpload -checksum recordings/live/load-0/*.flv
//
// With -join-after and -join-within each player joins at a random moment
// after its publisher went live, and the report gives the players' time
// from play to their first video keyframe (p50, p99, max):
//
//	rtmpload -n 100 -synthetic -bitrate 500k -players 1 -join-after 3s -join-within 4s
//
// With -join-on-signal the players wait for SIGUSR1 instead, and join
// within -join-after + -join-within after it: a benchmark sends it at the
// moment it chooses, such as right after a live upgrade of the server.
//
// A publisher's clip loops with continuous timestamps: each pass is offset
// by the previous pass's last timestamp plus one frame. Connections are
// spread over -ramp; the run ends after -duration (counted from the first
// connection) or on SIGINT/SIGTERM, and the report is printed either way.
//
// The exit status is 1 when any publisher or player was refused or failed
// (streams an early stop kept from starting do not count), 2 on a usage
// error, 0 otherwise.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

// options is the command line before it is turned into a runConfig.
type options struct {
	url          string
	keyPrefix    string
	n            int
	players      int
	file         string
	synthetic    bool
	bitrate      string
	audioBitrate string
	fps          float64
	gop          int
	duration     time.Duration
	ramp         time.Duration
	grace        time.Duration
	setupTimeout time.Duration
	chunkSize    uint
	json         bool
	verbose      bool
	checksum     bool
	dump         string
	joinAfter    time.Duration
	joinWithin   time.Duration
	joinOnSignal bool
	// playURL, playerStreams and gaps: see their flags.
	playURL       string
	playerStreams int
	gaps          bool
}

func parseFlags(args []string, stderr io.Writer) (options, []string, error) {
	var o options
	fs := flag.NewFlagSet("rtmpload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "rtmp://127.0.0.1:1935/live", "application URL; stream keys are appended")
	fs.StringVar(&o.keyPrefix, "key-prefix", "load", "stream keys are PREFIX-0 .. PREFIX-(n-1)")
	fs.IntVar(&o.n, "n", 100, "number of publishers")
	fs.IntVar(&o.players, "players", 0, "players per stream")
	fs.DurationVar(&o.joinAfter, "join-after", 0, "players join this long after their publisher went live (plus -join-within)")
	fs.DurationVar(&o.joinWithin, "join-within", 0, "each player joins at a random moment within this long after -join-after; the report gives the players' time to their first keyframe")
	fs.StringVar(&o.playURL, "play-url", "", "players play from this application URL instead of -url (a relay target: what a downstream viewer sees)")
	fs.IntVar(&o.playerStreams, "player-streams", 0, "only the first N streams get -players (0: every stream)")
	fs.BoolVar(&o.gaps, "gaps", false, "report each player's largest gap between two media messages for every second of the run (gaps_ms)")
	fs.BoolVar(&o.joinOnSignal, "join-on-signal", false, "players wait for SIGUSR1 and join -join-after plus a random part of -join-within after it")
	fs.StringVar(&o.file, "file", "", "FLV file to replay (required unless -synthetic)")
	fs.BoolVar(&o.synthetic, "synthetic", false, "generate an H.264/AAC-shaped stream instead of reading -file")
	fs.StringVar(&o.bitrate, "bitrate", "2M", "synthetic: total media bitrate (k, M, G suffixes are decimal)")
	fs.StringVar(&o.audioBitrate, "audio-bitrate", "128k", "synthetic: part of -bitrate spent on AAC audio (0: no audio)")
	fs.Float64Var(&o.fps, "fps", 30, "synthetic: video frame rate")
	fs.IntVar(&o.gop, "gop", 60, "synthetic: frames from one keyframe to the next")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long the run lasts, from the first connection")
	fs.DurationVar(&o.ramp, "ramp", 5*time.Second, "spread the connection starts over this long")
	fs.DurationVar(&o.grace, "grace", 5*time.Second, "after the run, how long connections may take to close cleanly")
	fs.DurationVar(&o.setupTimeout, "setup-timeout", 10*time.Second, "limit on handshake, connect and publish/play")
	fs.UintVar(&o.chunkSize, "chunk-size", 4096, "outbound RTMP chunk size")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.BoolVar(&o.verbose, "v", false, "log each failed connection as it happens")
	fs.StringVar(&o.dump, "dump", "", "write the clip (one pass, as publishers send it) to this FLV file and exit")
	fs.BoolVar(&o.checksum, "checksum", false, "print the media CRC-32 of the FLV files given as arguments, as one sequence, and exit")
	if err := fs.Parse(args); err != nil {
		return o, nil, err
	}
	if o.checksum {
		if fs.NArg() == 0 {
			return o, nil, errors.New("-checksum needs FLV files as arguments")
		}
		return o, fs.Args(), nil
	}
	if fs.NArg() > 0 {
		return o, nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.n < 1 || o.n > 1_000_000:
		return o, nil, fmt.Errorf("-n %d out of [1, 1000000]", o.n)
	case o.players < 0 || o.players > 1000:
		return o, nil, fmt.Errorf("-players %d out of [0, 1000]", o.players)
	case o.file == "" && !o.synthetic:
		return o, nil, errors.New("-file is required unless -synthetic is given")
	case o.file != "" && o.synthetic:
		return o, nil, errors.New("-file and -synthetic exclude each other")
	case o.duration <= 0:
		return o, nil, fmt.Errorf("-duration must be positive, got %s", o.duration)
	case o.joinAfter < 0 || o.joinWithin < 0:
		return o, nil, errors.New("-join-after and -join-within must not be negative")
	case o.ramp < 0 || o.grace < 0 || o.setupTimeout <= 0:
		return o, nil, errors.New("-ramp and -grace must not be negative, -setup-timeout must be positive")
	case o.playerStreams < 0:
		return o, nil, fmt.Errorf("-player-streams %d must not be negative", o.playerStreams)
	case o.chunkSize < 128 || o.chunkSize > 1<<24:
		return o, nil, fmt.Errorf("-chunk-size %d out of [128, 16777216]", o.chunkSize)
	}
	return o, nil, nil
}

// parseBitrate reads "2M", "500k", "1.5M" or "800000" as bits per second.
func parseBitrate(s string) (int, error) {
	mult := 1.0
	num := s
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult, num = 1e3, s[:n-1]
		case 'm', 'M':
			mult, num = 1e6, s[:n-1]
		case 'g', 'G':
			mult, num = 1e9, s[:n-1]
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	// Written so that NaN fails too.
	if err != nil || !(f >= 0 && f*mult <= 10e9) {
		return 0, fmt.Errorf("bitrate %q: want a number of bits per second up to 10G, with an optional k, M or G", s)
	}
	return int(f * mult), nil
}

// parseURL splits rtmp://host[:port]/app into a dial address, the app and
// the tcUrl sent in connect.
func parseURL(s string) (addr, app, tcURL string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", "", "", fmt.Errorf("-url: %w", err)
	}
	if u.Scheme != "rtmp" {
		return "", "", "", fmt.Errorf("-url %q: only rtmp:// is supported", s)
	}
	if u.Hostname() == "" {
		return "", "", "", fmt.Errorf("-url %q: no host", s)
	}
	port := u.Port()
	if port == "" {
		port = "1935"
	}
	app = strings.Trim(u.Path, "/")
	if app == "" {
		return "", "", "", fmt.Errorf("-url %q: no application name", s)
	}
	if u.RawQuery != "" {
		app += "?" + u.RawQuery
	}
	return net.JoinHostPort(u.Hostname(), port), app, strings.TrimRight(s, "/"), nil
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, files, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "rtmpload:", err)
		return 2
	}
	if o.checksum {
		crc, tags, err := MediaCRC(files...)
		if err != nil {
			fmt.Fprintln(stderr, "rtmpload:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%08x %d\n", crc, tags)
		return 0
	}
	cfg, clip, err := prepare(o)
	if err != nil {
		fmt.Fprintln(stderr, "rtmpload:", err)
		return 2
	}
	if o.dump != "" {
		if err := dumpClip(o.dump, clip); err != nil {
			fmt.Fprintln(stderr, "rtmpload:", err)
			return 1
		}
		return 0
	}
	if o.joinOnSignal {
		cfg.trigger = newJoinTrigger()
		fireOnSignal(ctx, cfg.trigger)
	}
	rep, err := run(ctx, cfg, clip, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "rtmpload:", err)
		return 1
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "rtmpload:", err)
			return 1
		}
	} else {
		printReport(stdout, rep)
	}
	if rep.Refused+rep.Failed+rep.Players.Refused+rep.Players.Failed > 0 {
		return 1
	}
	return 0
}

// prepare turns options into a run configuration and the clip to replay.
func prepare(o options) (*runConfig, *Clip, error) {
	addr, app, tcURL, err := parseURL(o.url)
	if err != nil {
		return nil, nil, err
	}
	cfg := &runConfig{
		url:          o.url,
		addr:         addr,
		app:          app,
		tcURL:        tcURL,
		keyPrefix:    o.keyPrefix,
		n:            o.n,
		players:      o.players,
		duration:     o.duration,
		ramp:         o.ramp,
		grace:        o.grace,
		setupTimeout: o.setupTimeout,
		chunkSize:    uint32(o.chunkSize),
		verbose:      o.verbose,
		joinAfter:    o.joinAfter,
		joinWithin:   o.joinWithin,
		gaps:         o.gaps,
		delaySettle:  delaySettle,
	}
	cfg.playAddr, cfg.playApp, cfg.playTCURL = addr, app, tcURL
	if o.playURL != "" {
		if cfg.playAddr, cfg.playApp, cfg.playTCURL, err = parseURL(o.playURL); err != nil {
			return nil, nil, fmt.Errorf("-play-url: %w", err)
		}
	}
	cfg.playerStreams = o.n
	if o.playerStreams > 0 && o.playerStreams < o.n {
		cfg.playerStreams = o.playerStreams
	}
	if !o.synthetic {
		cfg.source = o.file
		clip, err := LoadClip(o.file)
		return cfg, clip, err
	}
	bitrate, err := parseBitrate(o.bitrate)
	if err != nil {
		return nil, nil, fmt.Errorf("-bitrate: %w", err)
	}
	audio, err := parseBitrate(o.audioBitrate)
	if err != nil {
		return nil, nil, fmt.Errorf("-audio-bitrate: %w", err)
	}
	clip, err := Synthesize(SynthConfig{Bitrate: bitrate, AudioBitrate: audio, FPS: o.fps, GOP: o.gop})
	if err != nil {
		return nil, nil, err
	}
	cfg.source = fmt.Sprintf("synthetic %s bit/s, %g fps, GOP %d", o.bitrate, o.fps, o.gop)
	return cfg, clip, nil
}

func dumpClip(path string, clip *Clip) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	if err := clip.WriteFLV(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	return nil
}

func printReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "rtmpload: %d streams to %s, %.1f s; source %s (%.2f Mbit/s)\n",
		rep.Streams, rep.URL, rep.ElapsedS, rep.Source, rep.ClipBitrate/1e6)
	fmt.Fprintf(w, "publishers: %d started, %d refused, %d failed, %d skipped\n",
		rep.Started, rep.Refused, rep.Failed, rep.Skipped)
	fmt.Fprintf(w, "sent: %.1f MB in %d messages (media %.1f MB); %.1f Mbit/s of media; max lag %.0f ms\n",
		float64(rep.BytesSent)/1e6, rep.MessagesSent, float64(rep.MediaBytes)/1e6, rep.BitrateBps/1e6, rep.MaxLagMs)
	if t := rep.Players; t.Count > 0 {
		fmt.Fprintf(w, "players: %d ok, %d refused, %d failed, %d skipped; %d saw a keyframe; received %.1f MB in %d messages\n",
			t.OK, t.Refused, t.Failed, t.Skipped, t.SawKeyframe, float64(t.Bytes)/1e6, t.Messages)
		if t.SawKeyframe > 0 {
			fmt.Fprintf(w, "players' first keyframe after play: p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
				t.FirstKeyframeP50Ms, t.FirstKeyframeP99Ms, t.FirstKeyframeMaxMs)
		}
		if t.DelayCount > 0 {
			fmt.Fprintf(w, "delivery delay, publisher's due time to player, %d messages: p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
				t.DelayCount, t.DelayP50Ms, t.DelayP99Ms, t.DelayMaxMs)
		}
	}
	fmt.Fprintf(w, "generator CPU: %.2f s", rep.GeneratorCPUS)
	if rep.ElapsedS >= 1 {
		fmt.Fprintf(w, " (%.1f%% of one core)", 100*rep.GeneratorCPUS/rep.ElapsedS)
	}
	fmt.Fprintln(w)
	const maxListed = 20
	fails := rep.failures()
	for i, f := range fails {
		if i == maxListed {
			fmt.Fprintf(w, "  ... and %d more\n", len(fails)-maxListed)
			break
		}
		fmt.Fprintln(w, " ", f)
	}
}
