// Command hlsload is a load client for mediad's public media listener:
// N streams × V viewers, each an LL-HLS viewer that behaves like hls.js in
// low-latency mode (viewer.go), or with -flv an HTTP-FLV viewer
// (flvviewer.go). It reports what they measured as JSON:
//
//	hlsload -url http://127.0.0.1:8888/live -n 100 -viewers 10 -duration 40s -json
//
// Streams are PREFIX-first .. PREFIX-(first+n-1), as rtmpload names its
// publishers; -first lets several processes share the streams. Each
// viewer has its own pool of at most two keep-alive connections.
//
// What is measured (the definitions are in tracker.go): each part's
// availability delay beyond its duration, from the playlists'
// EXT-X-PROGRAM-DATE-TIME; the gaps between successive parts a viewer
// received; requests, errors by kind, missing and skipped parts, MSN
// regressions; and each viewer's start: time to its first part and to its
// first decodable frame.
//
// Reports: SIGUSR1 prints one for the interval since the previous report
// (kind "interval") and the run goes on; at the end of -duration, or on
// SIGINT/SIGTERM, the final report (kind "final") covers the whole run
// and lists every viewer. With -json each report is one JSON document on
// stdout (read them with jq -s).
//
// Viewers start spread over -ramp, each -join-after plus a random part of
// -join-within after its place in the ramp; with -join-on-signal they
// wait for SIGUSR2 and take their moment (without the ramp) from it. -leave-after-join ends
// each viewer at its first decodable frame: a join benchmark.
//
// The exit status is 1 when a viewer received nothing, 2 on a usage
// error, 0 otherwise.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// Thousands of short requests make garbage fast; the heap stays
		// small, so trade memory for less collection.
		debug.SetGCPercent(200)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

func parseFlags(args []string, stderr io.Writer) (*runConfig, bool, error) {
	var (
		cfg       runConfig
		rawURL    string
		asJSON    bool
		trigger   bool
		logErrors int64
		profile   string
	)
	fs := flag.NewFlagSet("hlsload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&rawURL, "url", "http://127.0.0.1:8888/live", "application URL on the media listener; stream keys are appended")
	fs.StringVar(&cfg.keyPrefix, "key-prefix", "load", "stream keys are PREFIX-first .. PREFIX-(first+n-1)")
	fs.IntVar(&cfg.first, "first", 0, "number of the first stream")
	fs.IntVar(&cfg.n, "n", 100, "number of streams")
	fs.IntVar(&cfg.viewers, "viewers", 10, "viewers per stream")
	fs.BoolVar(&cfg.flv, "flv", false, "HTTP-FLV viewers (GET /APP/KEY.flv) instead of LL-HLS")
	fs.DurationVar(&cfg.duration, "duration", 30*time.Second, "how long the run lasts")
	fs.DurationVar(&cfg.ramp, "ramp", 5*time.Second, "spread the viewers' starts over this long")
	fs.DurationVar(&cfg.timeout, "timeout", 15*time.Second, "limit on one request (blocking reloads included)")
	fs.DurationVar(&cfg.joinAfter, "join-after", 0, "viewers start this long after their place in -ramp (or after the trigger), plus -join-within")
	fs.DurationVar(&cfg.joinWithin, "join-within", 0, "each viewer starts at a random moment within this long after -join-after")
	fs.BoolVar(&trigger, "join-on-signal", false, "viewers wait for SIGUSR2 and start -join-after plus a random part of -join-within after it")
	fs.BoolVar(&cfg.leaveAfterJoin, "leave-after-join", false, "each viewer stops at its first decodable frame")
	fs.BoolVar(&cfg.retryUnanswered, "retry-unanswered", false, "send a request again, once, when the server closes a new connection with no answer (counted as unanswered_retries; servers whose shutdown drops requests)")
	fs.BoolVar(&asJSON, "json", false, "print reports as JSON")
	fs.BoolVar(&cfg.verbose, "v", false, "log each viewer that fails")
	fs.Int64Var(&logErrors, "log-errors", 0, "log the first this many failed requests (URL, status, time taken)")
	fs.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return nil, false, err
	}
	if fs.NArg() > 0 {
		return nil, false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return nil, false, fmt.Errorf("-url: %w", err)
	case u.Scheme != "http" || u.Host == "":
		return nil, false, fmt.Errorf("-url %q: want http://host[:port]/APP", rawURL)
	case strings.Trim(u.Path, "/") == "":
		return nil, false, fmt.Errorf("-url %q: no application name", rawURL)
	case cfg.n < 1 || cfg.n > 1_000_000:
		return nil, false, fmt.Errorf("-n %d out of [1, 1000000]", cfg.n)
	case cfg.first < 0:
		return nil, false, fmt.Errorf("-first %d is negative", cfg.first)
	case cfg.viewers < 1 || cfg.viewers > 10_000:
		return nil, false, fmt.Errorf("-viewers %d out of [1, 10000]", cfg.viewers)
	case cfg.duration <= 0 || cfg.timeout <= 0:
		return nil, false, errors.New("-duration and -timeout must be positive")
	case cfg.ramp < 0 || cfg.joinAfter < 0 || cfg.joinWithin < 0:
		return nil, false, errors.New("-ramp, -join-after and -join-within must not be negative")
	}
	u.Path = "/" + strings.Trim(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	cfg.base = u
	if trigger {
		cfg.trigger = newJoinTrigger()
	}
	if logErrors > 0 {
		cfg.logErrors = new(atomic.Int64)
		cfg.logErrors.Store(logErrors)
	}
	cfg.cpuProfile = profile
	return &cfg, asJSON, nil
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, asJSON, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "hlsload:", err)
		return 2
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "hlsload:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "hlsload:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	r := newRunner(cfg, stderr)
	var outMu sync.Mutex
	emit := func(rep *Report) error {
		outMu.Lock()
		defer outMu.Unlock()
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}
		printReport(stdout, rep)
		return nil
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case s := <-sigs:
				switch s {
				case syscall.SIGUSR1:
					if err := emit(r.report(false)); err != nil {
						r.logf("report: %v", err)
					}
				case syscall.SIGUSR2:
					if cfg.trigger != nil {
						cfg.trigger.fire()
					}
				}
			case <-done:
				return
			}
		}
	})
	r.run(ctx)
	close(done)
	bg.Wait()

	rep := r.report(true)
	if err := emit(rep); err != nil {
		fmt.Fprintln(stderr, "hlsload:", err)
		return 1
	}
	if rep.Viewers.Failed > 0 {
		return 1
	}
	return 0
}

func printReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "hlsload %s report %d (%s): %d streams × %d viewers at %s, %.1f s\n",
		rep.Kind, rep.Seq, rep.Mode, rep.Streams, rep.ViewersPerStream, rep.URL, rep.IntervalS)
	v := rep.Viewers
	fmt.Fprintf(w, "viewers: %d ok, %d running, %d failed, %d skipped\n", v.OK, v.Running, v.Failed, v.Skipped)
	q := rep.Requests
	fmt.Fprintf(w, "requests: %d playlist, %d blocking, %d part, %d hint, %d init, %d flv; %d connections; %.1f MB\n",
		q.Playlist, q.Blocking, q.Part, q.Hint, q.Init, q.FLV, rep.Connections, float64(rep.BytesRecv)/1e6)
	fmt.Fprintf(w, "parts: %d received, %d missing, %d resyncs dropping %d, %d skips, %d MSN regressions, %d unsatisfied reloads, %d hints failed, %d independent but not sync\n",
		rep.PartsReceived, rep.PartsMissing, rep.Resyncs, rep.PartsDropped, rep.Skips, rep.MSNBackwards, rep.ReloadsUnsatisfied, rep.HintsFailed, rep.IndependentNotSync)
	dist := func(name string, d Dist) {
		if d.Count > 0 {
			fmt.Fprintf(w, "%s: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d)\n", name, d.P50, d.P99, d.Max, d.Count)
		}
	}
	unit := "parts"
	if rep.Mode == "http-flv" {
		unit = "video frames"
	}
	dist("part delay beyond duration", rep.PartDelayMs)
	dist("gap between "+unit, rep.GapMs)
	dist("stall (gap - media duration)", rep.StallMs)
	j := rep.Join
	if j.Joined > 0 {
		fmt.Fprintf(w, "joins: %d, %d decodable, %d waited for a keyframe\n", j.Joined, j.Decodable, j.Waited)
		dist("  first part", j.FirstPartMs)
		dist("  first decodable frame", j.FirstDecodableMs)
		dist("  start latency", j.StartLatencyMs)
	}
	if rep.ErrorsTotal > 0 {
		kinds := make([]string, 0, len(rep.Errors))
		for k := range rep.Errors {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		fmt.Fprintf(w, "errors: %d:", rep.ErrorsTotal)
		for _, k := range kinds {
			fmt.Fprintf(w, " %s %d", k, rep.Errors[k])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "generator CPU: %.2f s\n", rep.GeneratorCPUS)
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

// joinTrigger fires once (SIGUSR2); viewers waiting on it take their
// moment from it.
type joinTrigger struct {
	once  sync.Once
	fired chan struct{}
	at    time.Time // written before fired is closed
}

func newJoinTrigger() *joinTrigger { return &joinTrigger{fired: make(chan struct{})} }

func (t *joinTrigger) fire() {
	t.once.Do(func() {
		t.at = time.Now()
		close(t.fired)
	})
}
