package main

// The browser test: Debian's chromium, driven by chromedp, plays a live
// stream's LL-HLS playlist with mediad's own player page (hls.js in
// low-latency mode) while the binary is upgraded five times under it. The
// viewer must not notice: the picture keeps moving, latency stays low, and
// hls.js never gives up or reloads.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const (
	// The clip the browser test publishes: a keyframe every second, as a
	// low-latency encoder would send, so that segments are about 1 s.
	browserClipSeconds = 90
	browserGOP         = srcFPS

	browserUpgrades = 5
	// What a viewer must see: latency (wall clock behind the
	// EXT-X-PROGRAM-DATE-TIME of the frame on screen) at most this once
	// playing, and never a picture frozen for longer than maxFreeze.
	maxLatency = 3.0 // seconds
	maxFreeze  = time.Second
	// The player page jumps to the live edge while its latency is more
	// than this past hls.js's target (catchUpBeyond in player.html): a
	// player is settled at low latency only within it.
	pageCatchUpBeyond = 1.5 // seconds
	// How often the test reads the player.
	sampleEvery = 100 * time.Millisecond
	// How long the player may take to start, and then to reach maxLatency.
	playTimeout    = 30 * time.Second
	latencyTimeout = 20 * time.Second
)

var browserClip struct {
	once sync.Once
	src  *sourceMedia
	err  error
}

// browserSource encodes, on first use, the clip with a 1 s GOP.
func browserSource(t *testing.T) *sourceMedia {
	t.Helper()
	c := &browserClip
	c.once.Do(func() {
		path := filepath.Join(e2e.dir, "src-browser.flv")
		out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
			"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=640x360:rate=%d", srcFPS),
			"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100",
			"-t", strconv.Itoa(browserClipSeconds),
			"-c:v", "libx264", "-preset", "veryfast", "-g", strconv.Itoa(browserGOP), "-keyint_min", strconv.Itoa(browserGOP),
			"-sc_threshold", "0", "-pix_fmt", "yuv420p", "-profile:v", "main",
			"-c:a", "aac", "-f", "flv", path).CombinedOutput()
		if err != nil {
			c.err = fmt.Errorf("ffmpeg encode: %w\n%s", err, out)
			return
		}
		c.src = &sourceMedia{path: path}
	})
	if c.err != nil {
		t.Fatalf("browser clip: %v", c.err)
	}
	return c.src
}

// requireChromium returns the path of Debian's chromium. Missing, it is a
// failure in CI and a skip elsewhere.
func requireChromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chromium is required by the browser test and CI=true: %v (scripts/test.sh installs Debian's chromium)", err)
	}
	t.Skipf("chromium not found (%v); install Debian's chromium (apt-get install chromium) to run the browser test", err)
	return ""
}

// requireHLSJS returns the repository's web directory, which must hold
// hls.js as scripts/web-deps.sh installs it. Missing, it is a failure in CI
// and a skip elsewhere.
func requireHLSJS(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "web"))
	if err != nil {
		t.Fatal(err)
	}
	js := filepath.Join(dir, "node_modules", "hls.js", "dist", "hls.min.js")
	if _, err := os.Stat(js); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("hls.js is required by the browser test and CI=true: %v (scripts/web-deps.sh installs it)", err)
		}
		t.Skipf("hls.js not installed (%v); run scripts/web-deps.sh to run the browser test", err)
	}
	return dir
}

// playerState is what the test reads of the page each sample: the
// <video>'s clock and what the page itself keeps in window.mediadPlayer.
type playerState struct {
	CurrentTime    float64 `json:"ct"`
	Paused         bool    `json:"paused"`
	ReadyState     int     `json:"ready"`
	Mode           string  `json:"mode"`
	HLSVersion     string  `json:"hlsVersion"`
	Started        bool    `json:"started"`
	Latency        float64 `json:"latency"` // < 0: not known yet
	LatencySource  string  `json:"latencySource"`
	TargetLatency  float64 `json:"target"`
	BufferAhead    float64 `json:"buffer"`
	Rate           float64 `json:"rate"`
	Stalls         int     `json:"stalls"`
	MaxStallMS     float64 `json:"maxStallMs"`
	CurrentStallMS float64 `json:"currentStallMs"`
	Stalling       bool    `json:"stalling"`
	FatalErrors    int     `json:"fatal"`
	Reloads        int     `json:"reloads"`
	Jumps          int     `json:"jumps"`
	Errors         int     `json:"errors"`
}

const playerStateJS = `(() => {
	const v = document.getElementById("video");
	const p = window.mediadPlayer || {};
	return {
		ct: v ? v.currentTime : 0, paused: v ? v.paused : true, ready: v ? v.readyState : 0,
		mode: p.mode || "", hlsVersion: p.hlsVersion || "", started: !!p.started,
		latency: typeof p.latency === "number" ? p.latency : -1, latencySource: p.latencySource || "",
		target: typeof p.targetLatency === "number" ? p.targetLatency : -1,
		buffer: p.bufferAhead || 0, rate: v ? v.playbackRate : 0,
		stalls: p.stalls || 0, maxStallMs: p.maxStallMs || 0, currentStallMs: p.currentStallMs || 0, stalling: !!p.stalling,
		fatal: p.fatalErrors || 0, reloads: p.reloads || 0, jumps: (p.jumps || []).length, errors: (p.errors || []).length,
	};
})()`

type playerSample struct {
	at time.Time
	playerState
	err error
}

// browser is a headless chromium with one tab; what its pages print to
// the console is kept for failure reports.
type browser struct {
	ctx     context.Context
	console *syncBuffer

	mu      sync.Mutex
	samples []playerSample
	changed chan struct{} // closed and replaced on every sample
}

func startBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	b := &browser{console: &syncBuffer{}, changed: make(chan struct{})}
	out := &syncBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1280, 800),
		chromedp.CombinedOutput(out),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(func(format string, args ...any) {
		fmt.Fprintf(b.console, "chromedp: "+format+"\n", args...)
	}))
	b.ctx = ctx
	t.Cleanup(func() {
		cancel()
		acancel()
		if t.Failed() {
			t.Logf("browser console:\n%s", tail(b.console.Bytes(), 60))
			t.Logf("chromium output:\n%s", tail(out.Bytes(), 20))
		}
	})
	chromedp.ListenTarget(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				if a.Value != nil {
					args = append(args, string(a.Value))
				} else {
					args = append(args, a.Description)
				}
			}
			fmt.Fprintf(b.console, "%s console.%s: %s\n", time.Now().Format("15:04:05.000"), ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			fmt.Fprintf(b.console, "%s exception: %s\n", time.Now().Format("15:04:05.000"), ev.ExceptionDetails.Error())
		}
	})
	start := time.Now()
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting chromium: %v\n%s", err, tail(out.Bytes(), 20))
	}
	t.Logf("chromium started in %v", time.Since(start).Round(time.Millisecond))
	return b
}

// eval runs a JS expression in the page and decodes its value into res.
func (b *browser) eval(timeout time.Duration, expr string, res any) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate(expr, res))
}

// sample reads the player every sampleEvery until ctx ends. It runs on
// its own goroutine and only records; the test judges the samples.
func (b *browser) sample(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		var s playerSample
		s.err = b.eval(2*time.Second, playerStateJS, &s.playerState)
		s.at = time.Now()
		b.mu.Lock()
		b.samples = append(b.samples, s)
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (b *browser) snapshot() ([]playerSample, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.samples), b.changed
}

// waitSample waits for a sample that ok accepts and returns it.
func (b *browser) waitSample(t *testing.T, timeout time.Duration, what string, ok func(playerSample) bool) playerSample {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		samples, changed := b.snapshot()
		for _, s := range samples[seen:] {
			if s.err == nil && ok(s) {
				return s
			}
		}
		seen = len(samples)
		select {
		case <-changed:
		case <-deadline.C:
			last := "no sample"
			if len(samples) > 0 {
				s := samples[len(samples)-1]
				last = fmt.Sprintf("%+v (error %v)", s.playerState, s.err)
			}
			t.Fatalf("the player did not reach %q within %v; last read: %s", what, timeout, last)
		}
	}
}

// play opens the player page of live/test at base and samples it until
// stop. It returns once the player plays at low latency: the first sample
// at which it is settled, from which a test judges what it watched.
func (b *browser) play(t *testing.T, base, webDir string) (settled playerSample, stop func()) {
	t.Helper()
	navStart := time.Now()
	if err := chromedp.Run(b.ctx, chromedp.Navigate(base+"/live/test/")); err != nil {
		t.Fatalf("opening the player page: %v", err)
	}
	sampleCtx, stopSampling := context.WithCancel(context.Background())
	sampling := make(chan struct{})
	go b.sample(sampleCtx, sampling)
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			stopSampling()
			<-sampling
		}
	}
	t.Cleanup(stop)

	first := b.waitSample(t, quickTimeout, "a player mode", func(s playerSample) bool { return s.Mode != "" })
	if first.Mode != "hls.js" {
		t.Fatalf("the page plays with %q, want hls.js (chromium has Media Source Extensions, and hls.js is installed in %s)", first.Mode, webDir)
	}
	playing := b.waitSample(t, playTimeout, "currentTime advancing past 1 s", func(s playerSample) bool {
		return s.Started && !s.Paused && s.CurrentTime >= 1
	})
	t.Logf("hls.js %s playing %.1f s after the page opened (currentTime %.2f s)", playing.HLSVersion, playing.at.Sub(navStart).Seconds(), playing.CurrentTime)
	// Settled is at or after playing: waitSample looks at every sample
	// since the page opened, and one from before playback started would
	// count the start's own buffering as the watched run's.
	// A sample the page itself still counts as behind (and would jump
	// from) is part of the start, not of the watched run. The page
	// reckons with hls.js's latency, this test with the picture's
	// program-date-time; half a second apart from the page's bound keeps
	// the two from disagreeing at the edge.
	// And a frozen picture is not settled, whatever its latency: a
	// start that stalled (hls.js loading a broadcast's first segment
	// again and again, before its audio and date-times were fixed) looked
	// settled at a latency still under the bound, and its stall was then
	// judged as the watched run's.
	prevCT := -1.0
	settled = b.waitSample(t, latencyTimeout, fmt.Sprintf("latency at most %.1f s, within %.1f s of the player's target, the picture advancing and no stall under way", maxLatency, pageCatchUpBeyond), func(s playerSample) bool {
		advancing := prevCT >= 0 && s.CurrentTime > prevCT
		prevCT = s.CurrentTime
		return !s.at.Before(playing.at) && s.Latency >= 0 && s.Latency <= maxLatency &&
			(s.TargetLatency <= 0 || s.Latency <= s.TargetLatency+pageCatchUpBeyond-0.5) &&
			advancing && !s.Stalling
	})
	t.Logf("latency %.2f s (%s, target %.2f s) %.1f s after playback started", settled.Latency, settled.LatencySource, settled.TargetLatency, settled.at.Sub(playing.at).Seconds())
	// The start is not judged with the watched run, but a viewer sees it
	// all the same.
	if limit := float64(maxFreeze.Milliseconds()); settled.MaxStallMS > limit || settled.CurrentStallMS > limit {
		t.Errorf("the page stalled for %.0f ms before it settled (one under way: %.0f ms), want at most %v", settled.MaxStallMS, settled.CurrentStallMS, maxFreeze)
	}
	return settled, stop
}

// freeze is an interval in which the <video>'s currentTime did not advance,
// measured from the test's samples: from the sample at which it last
// advanced to the one at which it advanced again (or the last sample).
type freeze struct {
	from, to time.Time
}

func (f freeze) d() time.Duration { return f.to.Sub(f.from) }

// freezes lists, for samples in order, every interval between two
// advances of currentTime; normal playback gives intervals of about one
// sample period.
func freezes(samples []playerSample) []freeze {
	var out []freeze
	var last time.Time
	lastCT := -1.0
	for _, s := range samples {
		if s.err != nil {
			continue
		}
		if lastCT < 0 || s.CurrentTime != lastCT {
			if lastCT >= 0 {
				out = append(out, freeze{last, s.at})
			}
			last, lastCT = s.at, s.CurrentTime
		}
	}
	if n := len(samples); n > 0 && lastCT >= 0 && samples[n-1].at.After(last) {
		out = append(out, freeze{last, samples[n-1].at})
	}
	return out
}

func longestFreeze(fs []freeze) freeze {
	var worst freeze
	for _, f := range fs {
		if f.d() > worst.d() {
			worst = f
		}
	}
	return worst
}

// latencyStats are the median and maximum of the known latencies among
// samples.
func latencyStats(samples []playerSample) (median, maxL float64, n int) {
	var ls []float64
	for _, s := range samples {
		if s.err == nil && s.Latency >= 0 {
			ls = append(ls, s.Latency)
		}
	}
	if len(ls) == 0 {
		return -1, -1, 0
	}
	slices.Sort(ls)
	return ls[len(ls)/2], ls[len(ls)-1], len(ls)
}

func between(samples []playerSample, from, to time.Time) []playerSample {
	var out []playerSample
	for _, s := range samples {
		if !s.at.Before(from) && s.at.Before(to) {
			out = append(out, s)
		}
	}
	return out
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := adminClient.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s did not answer 200 within %v: last %s", url, timeout, last)
}

// TestE2EBrowserLLHLSUpgrades plays a live stream in chromium with the
// player page, checks that it plays with latency at most maxLatency, then
// upgrades mediad five times, alternating two builds, and checks that
// the picture never froze for more than maxFreeze and that hls.js reported
// no fatal error and needed no reload.
func TestE2EBrowserLLHLSUpgrades(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	chrome := requireChromium(t)
	webDir := requireHLSJS(t)
	t.Parallel()
	bins := upgradeBuilds(t)
	src := browserSource(t)
	// Every publisher slot: the figures are about mediad, not about two
	// cores shared with other real-time publishers and their players.
	publisherSlots.acquire(t, cap(publisherSlots.ch))

	mediaAddr := freeAddr(t)
	srv := startUpgradable(t, bins.a, false, "--media", mediaAddr, "--web-dir", webDir)
	if got := srv.waitLog(readyTimeout, "media HTTP listening", srv.fromPID(srv.pid(), "media HTTP listening")).str("addr"); got != mediaAddr {
		t.Fatalf("media listener on %q, asked for %s", got, mediaAddr)
	}
	base := "http://" + mediaAddr
	pub := srv.publish(t, src, "live", "test")
	waitHTTP(t, base+"/assets/hls.min.js", quickTimeout)
	waitHTTP(t, base+"/live/test/index.m3u8", quickTimeout)

	b := startBrowser(t, chrome)
	settled, stop := b.play(t, base, webDir)

	// Upgrades a few seconds apart, alternating two builds, with the
	// picture watched throughout.
	type upgradeSpan struct {
		from, to time.Time
		v        Verdict
	}
	var spans []upgradeSpan
	builds := [2]mediadBuild{bins.b, bins.a}
	for i := range browserUpgrades {
		select {
		case <-pub.done:
			t.Fatalf("the publisher ended before upgrade %d of %d: %v", i+1, browserUpgrades, pub.err)
		case <-time.After(3 * time.Second):
		}
		from := time.Now()
		v := srv.mustUpgrade(t, builds[i%2])
		spans = append(spans, upgradeSpan{from: from, to: time.Now(), v: v})
		logVerdict(t, i+1, v)
	}
	// Long enough after the last upgrade for a stall it caused to show.
	select {
	case <-pub.done:
		t.Fatalf("the publisher ended before the player was checked: %v", pub.err)
	case <-time.After(4 * time.Second):
	}
	stop()

	watched := b.watched(t, settled)

	// Per upgrade: from its start to the next one's (or the end).
	for i, sp := range spans {
		end := time.Now().Add(time.Hour)
		if i+1 < len(spans) {
			end = spans[i+1].from
		}
		win := between(watched, sp.from, end)
		med, mx, _ := latencyStats(win)
		var worst time.Duration
		for _, f := range freezes(watched) {
			if f.to.After(sp.from) && f.to.Before(end) {
				worst = max(worst, f.d())
			}
		}
		stalls := 0
		if len(win) > 0 {
			stalls = win[len(win)-1].Stalls - win[0].Stalls
		}
		t.Logf("upgrade %d (%s, %.0f ms, mediad's worst RTMP stall %.1f ms): picture frozen at most %v; latency median %.2f s, max %.2f s; page stalls %d",
			i+1, sp.v.NewVersion, sp.v.DurationMS, sp.v.WorstStallMS, worst.Round(time.Millisecond), med, mx, stalls)
	}

	b.judge(t, settled, watched)
}

// watched is what the test read of the player from settled on; a read
// that failed is an error.
func (b *browser) watched(t *testing.T, settled playerSample) []playerSample {
	t.Helper()
	all, _ := b.snapshot()
	watched := between(all, settled.at, time.Now().Add(time.Hour))
	var evalErrs []string
	for _, s := range watched {
		if s.err != nil {
			evalErrs = append(evalErrs, s.at.Format("15:04:05.000")+": "+s.err.Error())
		}
	}
	if len(evalErrs) > 0 {
		t.Errorf("%d of %d reads of the player failed, first: %s", len(evalErrs), len(watched), evalErrs[0])
	}
	return watched
}

// judge checks what the viewer saw once settled: the picture never frozen
// for more than maxFreeze, latency at most maxLatency, no page stall over
// maxFreeze, no fatal error, reload or catch-up jump; and logs what the
// page recorded.
func (b *browser) judge(t *testing.T, settled playerSample, watched []playerSample) {
	t.Helper()
	fs := freezes(watched)
	worst := longestFreeze(fs)
	med, mx, n := latencyStats(watched)
	last := watched[len(watched)-1]
	t.Logf("over %.1f s watched (%d samples): latency median %.2f s, max %.2f s (%d samples, %s, target %.2f s); picture frozen at most %v (at %s); page: %d stalls, longest %.0f ms; fatal errors %d, reloads %d, catch-up jumps %d (%d before settling), other errors %d",
		last.at.Sub(settled.at).Seconds(), len(watched), med, mx, n, last.LatencySource, last.TargetLatency,
		worst.d().Round(time.Millisecond), worst.from.Format("15:04:05.000"), last.Stalls, last.MaxStallMS, last.FatalErrors, last.Reloads, last.Jumps, settled.Jumps, last.Errors)

	if worst.d() > maxFreeze {
		t.Errorf("the picture froze for %v (from %s to %s), want at most %v", worst.d().Round(time.Millisecond),
			worst.from.Format("15:04:05.000"), worst.to.Format("15:04:05.000"), maxFreeze)
	}
	if mx > maxLatency {
		t.Errorf("latency reached %.2f s once playing, want at most %.1f s", mx, maxLatency)
	}
	// The page's longest stall covers its whole life: one that set the
	// record before the player settled belongs to the start.
	if limit := float64(maxFreeze.Milliseconds()); last.MaxStallMS > max(limit, settled.MaxStallMS) || last.CurrentStallMS > limit {
		t.Errorf("the page recorded a stall of %.0f ms once settled (one under way: %.0f ms; longest before settling %.0f ms), want at most %v",
			last.MaxStallMS, last.CurrentStallMS, settled.MaxStallMS, maxFreeze)
	}
	if last.FatalErrors != 0 || last.Reloads != 0 {
		t.Errorf("hls.js reported %d fatal errors and the page reloaded %d times, want none", last.FatalErrors, last.Reloads)
	}
	if last.Jumps != settled.Jumps {
		t.Errorf("the page jumped ahead %d times to catch up with the live edge once playing at low latency, want none", last.Jumps-settled.Jumps)
	}
	if last.Paused {
		t.Errorf("the video is paused at the end")
	}

	// What the page recorded, for the log: every error hls.js reported
	// (retried load errors included) and every stall's duration.
	var record struct {
		Errors  []map[string]any `json:"errors"`
		StallMS []float64        `json:"stallMs"`
		Jumps   []map[string]any `json:"jumps"`
	}
	if err := b.eval(5*time.Second, `({errors: window.mediadPlayer.errors, stallMs: window.mediadPlayer.stallMs, jumps: window.mediadPlayer.jumps})`, &record); err != nil {
		t.Errorf("reading the page's record: %v", err)
	}
	if len(record.StallMS) > 0 {
		t.Logf("page stalls (ms): %v", record.StallMS)
	}
	for _, j := range record.Jumps {
		t.Logf("catch-up jump (ms since the page opened, currentTime from, to): %v", j)
	}
	for _, e := range record.Errors {
		j, _ := json.Marshal(e)
		t.Logf("hls.js error: %s", j)
	}
}
