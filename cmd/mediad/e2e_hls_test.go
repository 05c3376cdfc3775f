package main

// The packet-exact checks of the viewer outputs: ffmpeg reads a
// live stream's LL-HLS playlist, and separately its HTTP-FLV URL, while
// mediad is upgraded five times by SIGHUP; both files equal the source
// packet for packet (timestamps, size, flags, payload hash) from their
// first keyframe, with no gap. Meanwhile a Go viewer (e2e_hlsview_test.go)
// long-polls the playlist as hls.js does and checks every playlist and
// every URI it is served, and how long each blocking request took.
//
// ffmpeg 5.1's hls demuxer reads this server's playlists: it takes the
// fMP4 segments (EXT-X-MAP, then each segment's fragments) and ignores the
// parts and the blocking-reload tags; it starts three segments before the
// live edge (-live_start_index -3, its default) and reloads the playlist
// every target duration. With -copyts the file it writes keeps the
// publisher's timestamps, so no offset is guessed in the comparison.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	hlsUpgrades   = 5
	hlsPartTarget = 200 * time.Millisecond
	// upgradeAnswerBound: "a blocking playlist request pending during an
	// upgrade is answered within part target + 1 s".
	upgradeAnswerBound = hlsPartTarget + time.Second
)

// hashedPacket is a packet as ffprobe lists it, with the MD5 of its
// payload.
type hashedPacket struct {
	flvPacket
	hash string
}

func (p hashedPacket) String() string { return p.flvPacket.String() + " " + p.hash }

var hlsClip struct {
	once    sync.Once
	packets []hashedPacket
	err     error
}

// hlsSource is the browser test's clip (a keyframe every second, as a
// low-latency encoder sends, so that segments are 1 s) with its packets
// and their payload hashes.
func hlsSource(t *testing.T) (*sourceMedia, []hashedPacket) {
	t.Helper()
	src := browserSource(t)
	hlsClip.once.Do(func() { hlsClip.packets, hlsClip.err = probeHashed(src.path) })
	if hlsClip.err != nil {
		t.Fatalf("LL-HLS source clip: %v", hlsClip.err)
	}
	return src, hlsClip.packets
}

// probeHashed lists a file's packets with their payload's MD5. Any
// ffprobe diagnostic is an error.
func probeHashed(path string) ([]hashedPacket, error) {
	lines, err := ffprobeLines(path, "-show_packets", "-show_data_hash", "MD5",
		"-show_entries", "packet=codec_type,pts,dts,flags,size,data_hash")
	if err != nil {
		return nil, err
	}
	var pkts []hashedPacket
	for i, line := range lines {
		if line == "" {
			continue
		}
		// codec_type,pts,dts,size,flags,data_hash
		j := strings.LastIndexByte(line, ',')
		if j < 0 || !strings.HasPrefix(line[j+1:], "MD5:") {
			return nil, fmt.Errorf("ffprobe %s line %d: %q: no data hash", path, i+1, line)
		}
		p, err := parsePacketLine(line[:j])
		if err != nil {
			return nil, fmt.Errorf("ffprobe %s line %d: %w", path, i+1, err)
		}
		pkts = append(pkts, hashedPacket{p, line[j+1:]})
	}
	return pkts, nil
}

func codecHashed(pkts []hashedPacket, codec string) []hashedPacket {
	var out []hashedPacket
	for _, p := range pkts {
		if p.codec == codec {
			out = append(out, p)
		}
	}
	return out
}

// checkContiguous asserts that got is, per stream, a run of consecutive
// source packets, equal in timestamps, size, flags and payload, video
// starting at a keyframe and audio within 100 ms of it, and that its
// video spans [from, to] (source dts). It returns the packets compared.
func checkContiguous(t *testing.T, what string, got, src []hashedPacket, from, to int64) int {
	t.Helper()
	for _, p := range got {
		if p.codec != "audio" && p.codec != "video" {
			t.Errorf("%s: unexpected %s packet {%v}", what, p.codec, p)
			break
		}
	}
	n := 0
	var first [2]hashedPacket
	for k, codec := range []string{"video", "audio"} {
		g, s := codecHashed(got, codec), codecHashed(src, codec)
		if len(g) == 0 {
			t.Errorf("%s: no %s", what, codec)
			return n
		}
		first[k] = g[0]
		j := -1
		for i, p := range s {
			if p == g[0] {
				j = i
				break
			}
		}
		if j < 0 {
			t.Errorf("%s: its first %s packet {%v} is not one of the source's (timestamps are kept with -copyts)", what, codec, g[0])
			continue
		}
		if codec == "video" && !g[0].key {
			t.Errorf("%s: first video packet {%v} is not a keyframe", what, g[0])
		}
		if j+len(g) > len(s) {
			t.Errorf("%s: %d %s packets from source packet %d, the source has %d", what, len(g), codec, j, len(s))
			continue
		}
		for i := range g {
			if g[i] != s[j+i] {
				t.Errorf("%s: %s packet %d is {%v}, want source packet %d {%v}: a gap or a change", what, codec, i, g[i], j+i, s[j+i])
				break
			}
		}
		n += len(g)
		if codec == "video" {
			last := g[len(g)-1].dts
			t.Logf("%s: video from source frame %d (dts %d) to %d (dts %d), %d frames", what, j, g[0].dts, j+len(g)-1, last, len(g))
			if g[0].dts > from || last < to {
				t.Errorf("%s: video dts [%d, %d] does not cover the upgrades, [%d, %d]", what, g[0].dts, last, from, to)
			}
		}
	}
	if d := first[1].dts - first[0].dts; d < -100 || d > 100 {
		t.Errorf("%s: audio starts at dts %d, video at keyframe dts %d", what, first[1].dts, first[0].dts)
	}
	return n
}

// ffReader is an ffmpeg that copies a URL into an FLV file, keeping the
// source's timestamps (-copyts) and every packet (-copyinkf), and reports
// its progress; 'q' on its stdin stops it cleanly.
type ffReader struct {
	*childProc
	stdin io.WriteCloser
	prog  *ffProgress
	path  string
}

func startReader(t *testing.T, label, url, out string) *ffReader {
	t.Helper()
	r := &ffReader{prog: &ffProgress{us: -1}, path: out}
	cmd := exec.Command("ffmpeg", "-hide_banner", "-v", "warning", "-nostats", "-progress", "pipe:1",
		"-copyts", "-i", url, "-c", "copy", "-copyinkf", "-f", "flv", out)
	r.childProc = &childProc{name: label, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = r.prog, r.out
	var err error
	if r.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", label, err)
	}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("%s (%s) output:\n%s", label, strings.Join(cmd.Args, " "), tail(r.out.Bytes(), 20))
		}
	})
	return r
}

// media is how much media the reader has written: ffmpeg's out_time,
// from its first packet.
func (r *ffReader) media() time.Duration { return r.prog.get() }

// waitMedia waits until the reader has written d of media.
func (r *ffReader) waitMedia(t *testing.T, d, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for r.media() < d {
		select {
		case <-r.done:
			t.Fatalf("%s exited (%v) after %v of media, before %v", r.name, r.err, r.media(), d)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s wrote %v of media within %v, want %v", r.name, r.media(), timeout, d)
		}
	}
}

// quit stops the reader with 'q', as at a terminal: it writes what it has
// read and the file's trailer, and exits 0.
func (r *ffReader) quit(t *testing.T) {
	t.Helper()
	running(t, r.childProc, "before it was stopped")
	if _, err := io.WriteString(r.stdin, "q"); err != nil {
		t.Errorf("%s: writing q: %v", r.name, err)
	}
	r.waitOK(t, quickTimeout)
}

// warnings are the lines ffmpeg printed other than the two it prints for
// every fMP4 segment of a playlist (each segment comes after the init
// section again).
func (r *ffReader) warnings() []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(r.out.Bytes())), "\n") {
		if l == "" || strings.Contains(l, "Found duplicated MOOV Atom") || strings.Contains(l, "Last message repeated") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// ffProgress reads ffmpeg's -progress output for out_time_us.
type ffProgress struct {
	mu      sync.Mutex
	partial []byte
	us      int64
}

func (p *ffProgress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		if v, ok := strings.CutPrefix(line, "out_time_us="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				p.us = n
			}
		}
	}
	return len(b), nil
}

func (p *ffProgress) get() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return time.Duration(p.us) * time.Microsecond
}

// upgradeSpan is one upgrade by SIGHUP, from the signal to the old
// process's exit: a request overlapping it was pending during the upgrade.
type upgradeSpan struct {
	from, to       time.Time
	oldPID, newPID int
	verdict        logRecord
}

func (sp upgradeSpan) overlaps(w blockingWait) bool {
	return w.start.Before(sp.to) && w.end.After(sp.from)
}

// sighupUpgrade installs next at the server's path, sends SIGHUP, and
// waits for the new process, the old one's verdict and its exit.
func (s *upgServer) sighupUpgrade(t *testing.T, i int, next mediadBuild) upgradeSpan {
	t.Helper()
	old := s.pid()
	installFile(t, next.path, s.exe, 0o755)
	sp := upgradeSpan{from: time.Now(), oldPID: old}
	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP %d to pid %d: %v", i, old, err)
	}
	sp.newPID = s.successor(t, old, fmt.Sprintf("SIGHUP %d to pid %d", i, old))
	sp.verdict = s.waitLog(quickTimeout, fmt.Sprintf("the verdict of upgrade %d", i), s.verdictOf(old))
	if sp.verdict.str("outcome") != "success" {
		t.Fatalf("upgrade %d by SIGHUP failed: %s", i, sp.verdict.raw)
	}
	waitExited(t, old, drainBound)
	sp.to = time.Now()
	s.adopt(t, old, sp.newPID, next.version)
	return sp
}

// TestE2EHLSPacketExactUpgrades is the "Packet-exact checks".
func TestE2EHLSPacketExactUpgrades(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src, srcPkts := hlsSource(t)
	// Every publisher slot: the blocking-request bound is about mediad,
	// not about two cores shared with other tests' real-time publishers.
	publisherSlots.acquire(t, cap(publisherSlots.ch))

	mediaAddr := freeAddr(t)
	srv := startUpgradable(t, bins.a, false, "--segment", "0", "--media", mediaAddr, "--hls-dir", t.TempDir(),
		"--hls-part", hlsPartTarget.String(), "--hls-segment", "1s", "--hls-window", "7")
	if got := srv.waitLog(readyTimeout, "media HTTP listening", srv.fromPID(srv.pid(), "media HTTP listening")).str("addr"); got != mediaAddr {
		t.Fatalf("media listener on %q, asked for %s", got, mediaAddr)
	}
	base := "http://" + mediaAddr + "/live/test"
	pub := srv.publish(t, src, "live", "test")
	waitHTTP(t, base+"/index.m3u8", quickTimeout)

	lateCtx, cancelLate := context.WithCancel(context.Background())
	viewer := newHLSViewer(base+"/", hlsPartTarget, true)
	viewer.start(lateCtx)
	viewing := true
	t.Cleanup(func() {
		if viewing {
			viewer.stop()
		}
		cancelLate()
	})

	dir := t.TempDir()
	hlsReader := startReader(t, "ffmpeg reading LL-HLS", base+"/index.m3u8", filepath.Join(dir, "hls.flv"))
	flvReader := startReader(t, "ffmpeg reading HTTP-FLV", base+".flv", filepath.Join(dir, "httpflv.flv"))
	hlsReader.waitMedia(t, 2*time.Second, quickTimeout)
	flvReader.waitMedia(t, 2*time.Second, quickTimeout)

	srcVideo := codecHashed(srcPkts, "video")
	posDTS := func() int64 { return srcVideo[max(1, srv.videoFrames(t, "live", "test"))-1].dts }
	coverFrom := posDTS()
	rng := seededRand(t)
	builds := [2]mediadBuild{bins.b, bins.a}
	var spans []upgradeSpan
	for i := range hlsUpgrades {
		select {
		case <-pub.done:
			t.Fatalf("the publisher ended before upgrade %d of %d: %v", i+1, hlsUpgrades, pub.err)
		case <-hlsReader.done:
			t.Fatalf("the LL-HLS reader ended before upgrade %d of %d: %v\n%s", i+1, hlsUpgrades, hlsReader.err, tail(hlsReader.out.Bytes(), 20))
		case <-flvReader.done:
			t.Fatalf("the HTTP-FLV reader ended before upgrade %d of %d: %v\n%s", i+1, hlsUpgrades, flvReader.err, tail(flvReader.out.Bytes(), 20))
		case <-time.After(randomGap(rng, 2*time.Second, 4*time.Second)):
		}
		sp := srv.sighupUpgrade(t, i+1, builds[i%2])
		spans = append(spans, sp)
		v := sp.verdict
		t.Logf("upgrade %d: pid %d -> %d (%s) by SIGHUP: %v from the signal to the old process's exit; verdict %.1f ms, %v sessions moved, worst stall %.1f ms",
			i+1, sp.oldPID, sp.newPID, builds[i%2].version, sp.to.Sub(sp.from).Round(time.Millisecond),
			v.fields["duration_ms"], v.fields["sessions_moved"], v.fields["worst_stall_ms"])
	}
	// Both readers go on well past the last upgrade: the LL-HLS one reads
	// a few segments behind the live edge.
	coverTo := posDTS() + 1000
	hlsReader.waitMedia(t, hlsReader.media()+8*time.Second, 30*time.Second)
	flvReader.waitMedia(t, flvReader.media()+3*time.Second, 30*time.Second)
	hlsReader.quit(t)
	flvReader.quit(t)
	viewer.stop()
	viewing = false
	// Every URI is fetched once more within its lifetime, the last ones
	// up to 28 s after the viewer stopped; the stream must stay live
	// meanwhile, or a 404 would say nothing.
	if err := viewer.waitLate(lifetime + quickTimeout); err != nil {
		t.Error(err)
	}
	running(t, pub, "after the late fetches (the clip is too short)")
	rep := viewer.report()

	// The viewer's findings.
	for _, g := range groupProblems(rep.problems) {
		t.Errorf("LL-HLS viewer: %v", g)
	}
	if rep.endedHow != "" {
		t.Errorf("the LL-HLS viewer saw the stream end at %s (%s) while the publisher ran", rep.endedAt.Format("15:04:05.000"), rep.endedHow)
	}
	var longest, longestUpg blockingWait
	overlapping := 0
	for _, w := range rep.waits {
		if w.d() > longest.d() {
			longest = w
		}
		for i, sp := range spans {
			if !sp.overlaps(w) {
				continue
			}
			overlapping++
			if w.d() > longestUpg.d() {
				longestUpg = w
			}
			if w.d() > upgradeAnswerBound {
				t.Errorf("%s, pending during upgrade %d, took %v (%d requests, from %s), want at most %v",
					w.what, i+1, w.d().Round(time.Millisecond), w.requests, w.start.Format("15:04:05.000"), upgradeAnswerBound)
			}
			break
		}
	}
	if overlapping == 0 {
		t.Errorf("no blocking request was pending during any of the %d upgrades: the check showed nothing", len(spans))
	}
	var oldest time.Duration
	lateFailed := 0
	for _, lf := range rep.late {
		oldest = max(oldest, lf.age)
		if lf.status != http.StatusOK || !lf.same {
			lateFailed++
		}
	}
	t.Logf("LL-HLS viewer: %d playlists validated (%d requests, %d answers without the part asked for, asked again); %d URIs fetched (%v), %d not 200; %d fetched again up to %.1f s after last listed, %d not 200 or other bytes; %d 503 Retry-After: 0 asked again; %d segments equal to their parts end to end, %d parts' fMP4 sequence numbers consecutive",
		rep.playlists, rep.requests, rep.stale, rep.fetched, rep.byKind, rep.failed, len(rep.late), oldest.Seconds(), lateFailed, rep.moved, rep.segmentsCompared, rep.partsSequenced)
	if rep.resent > 0 {
		t.Logf("LL-HLS viewer: %d requests sent again after their connection closed with no answer", rep.resent)
	}
	if rep.resent > len(spans) {
		t.Errorf("LL-HLS viewer: %d requests closed with no answer, more than one per upgrade (%d)", rep.resent, len(spans))
	}
	t.Logf("late fetches (200 with the first fetch's bytes / fetched):%s", lateTable(rep.late))
	t.Logf("blocking requests: %d, longest %v (%s); %d pending during an upgrade, longest %v (%s, %d requests); bound %v",
		len(rep.waits), longest.d().Round(time.Millisecond), longest.what, overlapping, longestUpg.d().Round(time.Millisecond), longestUpg.what, longestUpg.requests, upgradeAnswerBound)

	// The readers' files against the source.
	for _, r := range []*ffReader{hlsReader, flvReader} {
		if w := r.warnings(); len(w) > 0 {
			t.Logf("%s printed:\n%s", r.name, strings.Join(w, "\n"))
		}
		got, err := probeHashed(r.path)
		if err != nil {
			t.Errorf("%s: %v", r.name, err)
			continue
		}
		n := checkContiguous(t, r.name, got, srcPkts, coverFrom, coverTo)
		t.Logf("%s: %d packets equal to the source's (timestamps, size, flags, MD5), none missing", r.name, n)
	}
}

// TestE2EHLSEndOfBroadcast: once a broadcast ends, what its playlists
// listed in the last 30 s still answers (no 404), so that a viewer a few
// seconds behind the live edge plays it to the end.
func TestE2EHLSEndOfBroadcast(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	full, _ := hlsSource(t)
	clip := cutClip(t, full, 8)
	publisherSlots.acquire(t, 1)
	mediaAddr := freeAddr(t)
	srv := startServer(t, "--segment", "0", "--media", mediaAddr, "--hls-dir", t.TempDir(), "--hls-part", hlsPartTarget.String())
	base := "http://" + mediaAddr + "/live/end"
	pub := srv.publish(t, clip, "live", "end")
	waitHTTP(t, base+"/index.m3u8", quickTimeout)
	viewer := newHLSViewer(base+"/", hlsPartTarget, false)
	viewer.endOn404 = true
	viewer.start(context.Background())
	viewing := true
	t.Cleanup(func() {
		if viewing {
			viewer.stop()
		}
	})

	pub.waitOK(t, publishTimeout)
	ended := time.Now()
	srv.waitLog(quickTimeout, "recording finalised live/end", isMsg("recording finalised", "live", "end"))
	// The viewer learns of the end from its blocked reload (ENDLIST) or
	// from the next (404).
	for deadline := time.Now().Add(quickTimeout); !viewer.ended(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the viewer did not see the broadcast end within %v", quickTimeout)
		}
	}
	viewer.stop()
	viewing = false
	rep := viewer.report()
	t.Logf("the viewer saw the end as %q at %s (the publisher's exit noticed at %s); %d playlists validated",
		rep.endedHow, rep.endedAt.Format("15:04:05.000"), ended.Format("15:04:05.000"), rep.playlists)
	for _, g := range groupProblems(rep.problems) {
		t.Errorf("LL-HLS viewer: %v", g)
	}

	uris := viewer.listedSince(time.Now().Add(-lifetime))
	if len(uris) == 0 {
		t.Fatal("no playlist listed anything")
	}
	statuses := map[int]int{}
	var notFound []string
	for _, u := range uris {
		resp, err := adminClient.Get(base + "/" + u)
		if err != nil {
			t.Errorf("GET %s/%s after the broadcast ended: %v", base, u, err)
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusNotFound {
			notFound = append(notFound, u)
		}
	}
	t.Logf("%v after the end of the broadcast, the %d URIs listed in the last %v answer: %v", time.Since(ended).Round(time.Millisecond), len(uris), lifetime, statuses)
	if len(notFound) > 0 {
		t.Errorf("%d of the %d URIs listed in the last %v answer 404 once the broadcast has ended, e.g. %s",
			len(notFound), len(uris), lifetime, strings.Join(notFound[:min(5, len(notFound))], ", "))
	}
}

// cutClip is the first seconds of src, cut without re-encoding.
func cutClip(t *testing.T, src *sourceMedia, seconds int) *sourceMedia {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clip.flv")
	out, err := exec.Command("ffmpeg", "-hide_banner", "-nostdin", "-v", "error",
		"-i", src.path, "-t", strconv.Itoa(seconds), "-c", "copy", "-f", "flv", path).CombinedOutput()
	if err != nil {
		t.Fatalf("cutting the clip: %v\n%s", err, out)
	}
	return &sourceMedia{path: path, packets: mustProbe(t, path)}
}
