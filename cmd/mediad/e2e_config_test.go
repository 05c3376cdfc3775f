package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TestE2EConfigAndMetricsAcrossUpgrades runs one broadcast through three
// upgrades, each of which rereads the config file:
//   - a broken config: the upgrade fails with the parse error in its
//     verdict, the same process keeps serving, the broadcast goes on;
//   - a config that adds an auth file: the upgrade succeeds, and from then
//     on an unlisted publisher is refused while the broadcast goes on;
//   - the same again, to a second build.
//
// Throughout, /metrics must parse with Prometheus's text parser and its
// counters must never go back: bytes, connections, upgrades by outcome,
// the duration histogram, the service's start.
func TestE2EConfigAndMetricsAcrossUpgrades(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := source(t)
	publisherSlots.acquire(t, 1)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "mediad.toml")
	auth := filepath.Join(dir, "auth")
	writeText(t, cfg, "# first config\nsegment = \"0s\"\nidle-timeout = \"20s\"\n")
	writeText(t, auth, "live/main\n")

	srv := startUpgradable(t, bins.a, false, "--config", cfg)
	srv.allowFailed = true // the broken config fails an upgrade on purpose
	pub := srv.publish(t, src, "live", "main")
	srv.waitVideoFrames(t, "live", "main", 2*srcFPS, quickTimeout)
	m0 := srv.metrics(t)
	firstScrape := time.Now()
	if n := metricValue(t, m0, "mediad_streams"); n != 1 {
		t.Errorf("mediad_streams = %v with one publisher", n)
	}
	if v := metricValue(t, m0, "mediad_process_generation"); v != 1 {
		t.Errorf("first process: generation %v", v)
	}

	// 1. A broken config: the new process refuses to take over, and says why.
	writeText(t, cfg, "# broken\nsegment = \"0s\"\nidle-timeout = \"20s\nauth-file = \""+auth+"\"\n")
	old := srv.pid()
	installFile(t, bins.b.path, srv.exe, 0o755)
	v, err := srv.upgrade(t, "")
	if err == nil || v.Outcome != "failed" {
		t.Fatalf("upgrade onto a broken config: exit %v, verdict %q", err, v.Outcome)
	}
	for _, want := range []string{cfg, "toml", "line 3"} {
		if !strings.Contains(v.Error, want) {
			t.Errorf("verdict error %q does not name %q", v.Error, want)
		}
	}
	t.Logf("verdict of the broken config: %s", v.Error)
	if st, err := srv.status(); err != nil || st.PID != old || !st.Ready {
		t.Errorf("after the failed upgrade /api/status: %+v, %v; want pid %d serving", st, err, old)
	}
	if p, err := readPID(srv.pidfile); err != nil || p != old {
		t.Errorf("after the failed upgrade the PID file names %d (%v), want %d", p, err, old)
	}
	running(t, pub, "after the failed upgrade")
	before := srv.videoFrames(t, "live", "main")
	srv.waitVideoFrames(t, "live", "main", before+srcFPS, quickTimeout)

	// 2. A valid config that adds an auth file: an upgrade is a reload.
	writeText(t, cfg, "# second config\nsegment = \"0s\"\nidle-timeout = \"20s\"\nauth-file = \""+auth+"\"\n")
	srv.version = bins.a.version // the failed attempt left bins.b installed; mustUpgrade installs its own
	v1 := srv.mustUpgrade(t, bins.b)
	running(t, pub, "after the reload")
	srv.burst(t, src, "live", "intruder", "-t", "1").waitRefused(t, quickTimeout)
	srv.waitLog(quickTimeout, "refusal of live/intruder", func(r logRecord) bool { return containsAll(r.raw, "not authorised", "live/intruder") })
	m1 := srv.metrics(t)

	// 3. Once more, back to the first build.
	v2 := srv.mustUpgrade(t, bins.a)
	srv.waitVideoFrames(t, "live", "main", srv.videoFrames(t, "live", "main")+srcFPS, quickTimeout)
	m2 := srv.metrics(t)

	for i, step := range []struct {
		m                         map[string]*dto.MetricFamily
		success, failed, gen, dur float64
	}{
		{m0, 0, 0, 1, 0},
		{m1, 1, 1, 2, 2},
		{m2, 2, 1, 3, 3},
	} {
		m := step.m
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"mediad_upgrades_total", []string{"outcome", "success"}, step.success},
			{"mediad_upgrades_total", []string{"outcome", "failed"}, step.failed},
			{"mediad_process_generation", nil, step.gen},
			{"mediad_upgrade_duration_seconds", nil, step.dur},
		} {
			if got := metricValue(t, m, c.name, c.labels...); got != c.want {
				t.Errorf("scrape %d: %s%v = %v, want %v", i, c.name, c.labels, got, c.want)
			}
		}
	}
	// Counters continue: each scrape at least the one before, and moving.
	for _, name := range []string{"mediad_received_bytes_total", "mediad_sent_bytes_total", "mediad_connections_accepted_total"} {
		a, b, c := metricValue(t, m0, name), metricValue(t, m1, name), metricValue(t, m2, name)
		t.Logf("%s: %.0f -> %.0f -> %.0f", name, a, b, c)
		if !(a <= b && b <= c) || a == 0 {
			t.Errorf("%s went %.0f -> %.0f -> %.0f across upgrades", name, a, b, c)
		}
	}
	if a, c := metricValue(t, m0, "mediad_received_bytes_total"), metricValue(t, m2, "mediad_received_bytes_total"); c <= a {
		t.Errorf("received bytes did not grow across two upgrades: %.0f -> %.0f", a, c)
	}
	for _, name := range []string{"mediad_service_start_time_seconds"} {
		if a, c := metricValue(t, m0, name), metricValue(t, m2, name); a != c {
			t.Errorf("%s changed across upgrades: %v -> %v", name, a, c)
		}
	}
	if a, c := metricValue(t, m0, "mediad_stream_start_time_seconds", "stream", "live/main"), metricValue(t, m2, "mediad_stream_start_time_seconds", "stream", "live/main"); a != c {
		t.Errorf("the broadcast's start moved across upgrades: %v -> %v", a, c)
	}
	if moved := metricValue(t, m2, "mediad_upgrade_sessions_moved_total"); moved < float64(v1.SessionsMoved+v2.SessionsMoved) {
		t.Errorf("sessions moved %v, the verdicts say %d + %d", moved, v1.SessionsMoved, v2.SessionsMoved)
	}
	if n := metricValue(t, m2, "mediad_upgrade_stall_seconds"); n < 2 {
		t.Errorf("stall histogram holds %v observations after two upgrades of a live publisher", n)
	}

	// The history crossed both upgrades: the failure, then two successes
	// as the new processes recorded them.
	var st statusReply
	getJSON(t, "http://"+srv.httpAddr+"/api/status", &st)
	if len(st.Upgrades) != 3 || st.Upgrades[0].Outcome != "failed" || st.Upgrades[1].NewPID != v1.NewPID || st.Upgrades[2].NewPID != v2.NewPID {
		t.Errorf("upgrade history: %+v", st.Upgrades)
	}
	// The broadcast's start and duration count from its first process.
	for _, info := range st.Streams {
		if info.App != "live" || info.Key != "main" {
			continue
		}
		start := metricValue(t, m0, "mediad_stream_start_time_seconds", "stream", "live/main")
		if got := float64(info.Started.UnixNano()) / 1e9; got != start {
			t.Errorf("/api/status: live/main started %v, metrics of the first process said %v", got, start)
		}
		if since := time.Since(firstScrape).Seconds(); info.DurationS < since {
			t.Errorf("/api/status: live/main has run %.1f s, but it was live %.1f s ago", info.DurationS, since)
		}
	}
	if st.Generation != 3 || st.ServiceStart.After(st.Started) {
		t.Errorf("status: generation %d, service start %v, process start %v", st.Generation, st.ServiceStart, st.Started)
	}

	pub.waitOK(t, publishTimeout)
	segs := srv.recording(t, "live", "main")
	if len(segs) != 1 {
		t.Fatalf("recorded %d files %q, want 1", len(segs), segs)
	}
	got := mustProbe(t, segs[0])
	checkSamePackets(t, segs[0], got, src.packets)
}

// writeText replaces a config or auth file the way an operator should:
// whole, by rename.
func writeText(t *testing.T, path, text string) {
	t.Helper()
	installBytes(t, []byte(text), path, 0o644)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := adminClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s (%s): %v", url, resp.Status, err)
	}
}

// metrics scrapes /metrics of the serving process and parses it with
// Prometheus's text parser. A new process answers 503 until it holds the
// old one's counters; those answers are retried.
func (s *upgServer) metrics(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(quickTimeout)
	for {
		resp, err := adminClient.Get("http://" + s.httpAddr + "/metrics")
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				defer resp.Body.Close()
				return parseMetrics(t, resp.Body)
			}
			err = fmt.Errorf("HTTP %s", resp.Status)
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2EConfigMovesRTMPListener changes the RTMP address in the config
// and upgrades: the new process binds the new address, the old address
// closes with the old process, and the broadcast connected to the old
// address goes on to the end, recorded whole.
func TestE2EConfigMovesRTMPListener(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := source(t)
	publisherSlots.acquire(t, 1)

	cfg := filepath.Join(t.TempDir(), "mediad.toml")
	from, to := freeAddr(t), freeAddr(t)
	writeText(t, cfg, fmt.Sprintf("rtmp = %q\nsegment = \"0s\"\n", from))
	srv := startUpgradableOn(t, bins.a, "", freeAddr(t), "--config", cfg)
	if srv.rtmpAddr != from {
		t.Fatalf("serving RTMP on %s, the config says %s", srv.rtmpAddr, from)
	}
	pub := srv.publish(t, src, "live", "moving")
	srv.waitVideoFrames(t, "live", "moving", srcFPS, quickTimeout)

	writeText(t, cfg, fmt.Sprintf("rtmp = %q\nsegment = \"0s\"\n", to))
	v := srv.mustUpgrade(t, bins.b) // returns once the old process has exited
	ready := srv.waitLog(quickTimeout, "mediad ready from the new process", srv.fromPID(v.NewPID, "mediad ready"))
	if got := ready.str("rtmp"); got != to {
		t.Errorf("the new process serves RTMP on %s, the config says %s", got, to)
	}
	if err := rawHandshake(to); err != nil {
		t.Errorf("RTMP handshake on the new address %s: %v", to, err)
	}
	if err := rawHandshake(from); err == nil {
		t.Errorf("the old address %s still accepts after the old process exited", from)
	}
	running(t, pub, "after the move")
	pub.waitOK(t, publishTimeout)
	segs := srv.recording(t, "live", "moving")
	if len(segs) != 1 {
		t.Fatalf("recorded %d files %q, want 1", len(segs), segs)
	}
	checkSamePackets(t, segs[0], mustProbe(t, segs[0]), src.packets)
}
