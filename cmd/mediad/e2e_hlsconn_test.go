package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2EHLSViewerKeepsConnection: an LL-HLS viewer's keep-alive
// connection crosses upgrades (state v7): across three of them, one TCP
// connection carries every blocking reload, each answered 200 with the
// part it asked for and never with Connection: close; the one pending
// during each upgrade is answered within a part target and a second, by
// the new process.
func TestE2EHLSViewerKeepsConnection(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src, _ := hlsSource(t)
	publisherSlots.acquire(t, 1)

	mediaAddr := freeAddr(t)
	srv := startUpgradable(t, bins.a, false, "--segment", "0", "--media", mediaAddr, "--hls-dir", t.TempDir(),
		"--hls-part", hlsPartTarget.String(), "--hls-segment", "1s", "--hls-window", "7")
	srv.waitLog(readyTimeout, "media HTTP listening", srv.fromPID(srv.pid(), "media HTTP listening"))
	pub := srv.publish(t, src, "live", "test")
	waitHTTP(t, "http://"+mediaAddr+"/live/test/index.m3u8", quickTimeout)

	conn, err := net.Dial("tcp", mediaAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	type answer struct {
		at, took time.Duration
		msn, idx int // the newest part listed
	}
	start := time.Now()
	ask := func(query string) (answer, error) {
		sent := time.Now()
		_ = conn.SetDeadline(sent.Add(10 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET /live/test/index.m3u8%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: keepalive-viewer\r\n\r\n", query, mediaAddr); err != nil {
			return answer{}, fmt.Errorf("the viewer's connection failed at %v: %w", time.Since(start).Round(time.Millisecond), err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return answer{}, fmt.Errorf("the viewer's connection failed at %v (request %q): %w", time.Since(start).Round(time.Millisecond), query, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
			return answer{}, fmt.Errorf("request %q at %v: %s, Connection: close %v, %v\n%s", query, time.Since(start).Round(time.Millisecond), resp.Status, resp.Close, err, body)
		}
		a := answer{at: sent.Sub(start), took: time.Since(sent)}
		a.msn, a.idx, err = newestPart(string(body))
		return a, err
	}

	a, err := ask("")
	if err != nil {
		t.Fatal(err)
	}
	var (
		answers []answer
		viewErr error
		stop    = make(chan struct{})
		viewed  = make(chan struct{})
	)
	go func() {
		defer close(viewed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			next, err := ask(fmt.Sprintf("?_HLS_msn=%d&_HLS_part=%d", a.msn, a.idx+1))
			if err == nil && (next.msn < a.msn || next.msn == a.msn && next.idx <= a.idx) {
				err = fmt.Errorf("asked for the part after %d.%d, got a playlist whose newest is %d.%d", a.msn, a.idx, next.msn, next.idx)
			}
			if err != nil {
				viewErr = err
				return
			}
			a = next
			answers = append(answers, a)
		}
	}()
	upgrades := 3
	builds := [2]mediadBuild{bins.b, bins.a}
	spans := make([]upgradeSpan, 0, upgrades)
	for i := range upgrades {
		select {
		case <-viewed:
			t.Fatalf("before upgrade %d: %v", i+1, viewErr)
		case <-time.After(2 * time.Second):
		}
		spans = append(spans, srv.sighupUpgrade(t, i+1, builds[i%2]))
	}
	time.Sleep(time.Second)
	close(stop)
	<-viewed
	if viewErr != nil {
		t.Fatal(viewErr)
	}
	running(t, pub, "after the upgrades")
	for i, sp := range spans {
		var longest answer
		for _, an := range answers {
			from, to := start.Add(an.at), start.Add(an.at+an.took)
			if from.Before(sp.to) && to.After(sp.from) && an.took > longest.took {
				longest = an
			}
		}
		t.Logf("upgrade %d: pid %d -> %d; longest blocking reload pending during it %v (newest part then %d.%d)",
			i+1, sp.oldPID, sp.newPID, longest.took.Round(time.Millisecond), longest.msn, longest.idx)
		if longest.took > upgradeAnswerBound {
			t.Errorf("upgrade %d: a blocking reload took %v, want at most %v", i+1, longest.took.Round(time.Millisecond), upgradeAnswerBound)
		}
	}
	t.Logf("one connection carried %d blocking reloads across %d upgrades", len(answers)+1, len(spans))
}

// newestPart is the last part a media playlist lists: its segment's media
// sequence number and its index there.
func newestPart(pl string) (msn, idx int, err error) {
	seq, segs, parts := -1, 0, 0
	for _, line := range strings.Split(pl, "\n") {
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			seq, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:")))
		case strings.HasPrefix(line, "#EXTINF:"):
			segs++
			parts = 0
		case strings.HasPrefix(line, "#EXT-X-PART:"):
			parts++
		}
	}
	if seq < 0 {
		return 0, 0, fmt.Errorf("no media sequence in the playlist:\n%s", pl)
	}
	if parts == 0 {
		// The open segment has no part yet: the newest is the last part
		// of the segment before it, which the next request's index
		// (parts) then names as the segment's first.
		return seq + segs, -1, nil
	}
	return seq + segs, parts - 1, nil
}
