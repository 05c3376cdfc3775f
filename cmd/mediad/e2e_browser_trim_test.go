package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// slowRemove is how much later than asked the page's SourceBuffer removes
// media in TestE2EBrowserLLHLSSlowTrims. A trim of the back buffer takes a
// few milliseconds in chromium, sometimes fifteen; this makes every trim
// outlast the loading and parsing of a part that starts with it, but not
// the time until the next part exists (a part target, 200 ms).
const slowRemove = 80 * time.Millisecond

// slowRemoveJS defers every SourceBuffer.remove by slowRemove and counts
// them in window.mediadTestRemoves.
var slowRemoveJS = fmt.Sprintf(`(() => {
	const remove = SourceBuffer.prototype.remove;
	window.mediadTestRemoves = 0;
	SourceBuffer.prototype.remove = function (start, end) {
		window.mediadTestRemoves++;
		setTimeout(() => remove.call(this, start, end), %d);
	};
})()`, slowRemove.Milliseconds())

// trimWatch is how long TestE2EBrowserLLHLSSlowTrims watches once the
// player is settled: long enough for the back buffer to be trimmed a few
// times (the page keeps 10 s, and trims past 15 s).
const trimWatch = 25 * time.Second

// TestE2EBrowserLLHLSSlowTrims plays a live stream in chromium with the
// player page, no upgrade, while every trim of the back buffer takes
// slowRemove. A trim that completes after a part of the open segment has
// loaded but before it is appended makes hls.js (1.7.4) forget the parts
// of that segment it already had: at the segment's end it loads nothing
// until the playlist stops listing them, and the picture freezes for two
// to three seconds. hls.js trimmed the back buffer itself (backBufferLength)
// whenever the playhead entered a new segment, wherever the loading of
// parts stood, which froze the picture of TestE2EBrowserLLHLSUpgrades about
// one run in eight, with or without upgrades; here nearly every run. The
// page trims once the last listed part is buffered, which the next part
// cannot overtake. The page opens at the broadcast's start, and must not
// stall there either: hls.js started with its buffer's end inside a
// segment it has loads that segment again and again (see writePart and
// nextStartLocked in ingest/hls).
func TestE2EBrowserLLHLSSlowTrims(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	chrome := requireChromium(t)
	webDir := requireHLSJS(t)
	t.Parallel()
	src := browserSource(t)
	publisherSlots.acquire(t, cap(publisherSlots.ch))

	srv := startServer(t, "--web-dir", webDir)
	mediaAddr := srv.waitLog(readyTimeout, "media HTTP listening", func(r logRecord) bool { return r.str("message") == "media HTTP listening" }).str("addr")
	base := "http://" + mediaAddr
	waitHTTP(t, base+"/assets/hls.min.js", quickTimeout)

	// The browser is up before the broadcast starts, and the page opens
	// as soon as the playlist exists: a viewer waiting for the broadcast,
	// whose start position falls in its first segment.
	b := startBrowser(t, chrome)
	if err := chromedp.Run(b.ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		_, err := page.AddScriptToEvaluateOnNewDocument(slowRemoveJS).Do(ctx)
		return err
	})); err != nil {
		t.Fatalf("slowing the page's SourceBuffer removes: %v", err)
	}
	pub := srv.publish(t, src, "live", "test")
	playlistURL := base + "/live/test/index.m3u8"
	waitHTTP(t, playlistURL, quickTimeout)
	n := completeSegments(t, playlistURL)
	t.Logf("the page opens with %d complete segments listed", n)
	if n > 1 {
		t.Errorf("the playlist listed %d complete segments as the page opened, want at most 1: the test did not open it at the broadcast's start", n)
	}
	settled, stop := b.play(t, base, webDir)
	select {
	case <-pub.done:
		t.Fatalf("the publisher ended before the player was checked: %v", pub.err)
	case <-time.After(trimWatch):
	}
	stop()

	var removes int
	if err := b.eval(5*time.Second, `window.mediadTestRemoves`, &removes); err != nil {
		t.Fatalf("reading the page's remove count: %v", err)
	}
	t.Logf("%d SourceBuffer removes, each %v late", removes, slowRemove)
	// The back buffer must be trimmed at all, or the test proves nothing
	// (and a viewer's memory grows for as long as he watches).
	if removes < 2 {
		t.Errorf("the back buffer was trimmed %d times over %v watched, want at least 2", removes, trimWatch)
	}
	b.judge(t, settled, b.watched(t, settled))
}

// completeSegments is how many complete segments the playlist at url
// lists.
func completeSegments(t *testing.T, url string) int {
	t.Helper()
	resp, err := adminClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return strings.Count(string(body), "#EXTINF:")
}
