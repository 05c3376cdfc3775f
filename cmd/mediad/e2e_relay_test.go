package main

// End-to-end tests of push relays: mediad publishes every live stream on to
// real nginx-rtmp servers (e2e_nginx_test.go). Across upgrades a relay
// moves with its socket, so the downstream sees one publish and records the
// source packet for packet; a downstream that restarts is reconnected to
// within the backoff, at a keyframe, while nothing else notices.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// relayStatus is one entry of a stream's "relays" in /api/streams.
type relayStatus struct {
	URL        string `json:"url"`
	State      string `json:"state"`
	BytesOut   uint64 `json:"bytes_out"`
	Drops      uint64 `json:"drops"`
	Reconnects uint64 `json:"reconnects"`
	LastError  string `json:"last_error"`
}

func (r relayStatus) String() string {
	return fmt.Sprintf("{%s %s bytes_out=%d drops=%d reconnects=%d last_error=%q}", r.URL, r.State, r.BytesOut, r.Drops, r.Reconnects, r.LastError)
}

// streamRelays reads the relays of app/key from /api/streams; live is
// false when the stream is not listed as live.
func (s *e2eServer) streamRelays(app, key string) (relays []relayStatus, live bool, err error) {
	resp, err := adminClient.Get("http://" + s.httpAddr + "/api/streams")
	if err != nil {
		return nil, false, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("admin API: %s", resp.Status)
	}
	var streams []struct {
		App    string        `json:"app"`
		Key    string        `json:"key"`
		Live   bool          `json:"live"`
		Relays []relayStatus `json:"relays"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&streams); err != nil {
		return nil, false, fmt.Errorf("admin API: decode /api/streams: %w", err)
	}
	for _, st := range streams {
		if st.App == app && st.Key == key && st.Live {
			return st.Relays, true, nil
		}
	}
	return nil, false, nil
}

// relayTo returns the relay of app/key to url, failing the test if the
// stream is not live or has no such relay.
func (s *e2eServer) relayTo(t *testing.T, app, key, url string) relayStatus {
	t.Helper()
	relays, live, err := s.streamRelays(app, key)
	if err != nil {
		t.Fatal(err)
	}
	if !live {
		t.Fatalf("/api/streams lists no live %s/%s", app, key)
	}
	for _, r := range relays {
		if r.URL == url {
			return r
		}
	}
	t.Fatalf("/api/streams: %s/%s has no relay to %s; its relays: %v", app, key, url, relays)
	return relayStatus{}
}

// waitRelay polls /api/streams until the relay of app/key to url
// satisfies ok, and returns it.
func (s *e2eServer) waitRelay(t *testing.T, app, key, url, what string, timeout time.Duration, ok func(relayStatus) bool) relayStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last []relayStatus
	var lastErr error
	for {
		relays, live, err := s.streamRelays(app, key)
		last, lastErr = relays, err
		if err == nil && live {
			for _, r := range relays {
				if r.URL == url && ok(r) {
					return r
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/streams: the relay of %s/%s to %s was not %s within %v; relays %v, error %v", app, key, url, what, timeout, last, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// relayConnected matches "relay connected" for app/key to url.
func relayConnected(url, app, key string) func(logRecord) bool {
	return func(r logRecord) bool { return isMsg("relay connected", app, key)(r) && r.str("url") == url }
}

func relayDropped(r logRecord) bool { return r.str("message") == "relay dropped" }

// logged returns the log lines that match.
func (s *e2eServer) logged(match func(logRecord) bool) []logRecord {
	lines, _ := s.log.snapshot()
	var out []logRecord
	for _, r := range lines {
		if r.fields != nil && match(r) {
			out = append(out, r)
		}
	}
	return out
}

// describeLines lists log lines for a failure message.
func describeLines(rs []logRecord) string {
	if len(rs) == 0 {
		return "(none)"
	}
	lines := make([]string, len(rs))
	for i, r := range rs {
		lines[i] = "\t" + r.raw
	}
	return "\n" + strings.Join(lines, "\n")
}

// TestE2ERelayAcrossUpgrades: ffmpeg publishes the long clip to mediad,
// which pushes it to nginx-rtmp (--push), while mediad is upgraded ten
// times, alternating two builds. The relay's connection moves with the
// publisher's each time: nginx sees one publish for the whole broadcast,
// and its recording is one file, the source packet for packet, as is
// mediad's own.
func TestE2ERelayAcrossUpgrades(t *testing.T) {
	tools := requireNginx(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := longSource(t)
	publisherSlots.acquire(t, 1)
	down := startNginx(t, tools, "downstream nginx-rtmp")
	const key = "pushed"
	target := "rtmp://" + down.addr + "/live/" + key
	srv := startUpgradable(t, bins.a, false, "--segment", "0", "--push", "rtmp://"+down.addr+"/live/{key}")

	pub := srv.publish(t, src, "live", key)
	srv.waitLog(quickTimeout, "relay connected to "+target, relayConnected(target, "live", key))
	down.waitPublishes(t, key, 1, quickTimeout)
	st := srv.waitRelay(t, "live", key, target, "connected", quickTimeout, func(r relayStatus) bool { return r.State == "connected" })
	t.Logf("relay before the upgrades: %v", st)

	rng := seededRand(t)
	builds := [2]mediadBuild{bins.b, bins.a}
	const upgrades = 10
	var verdicts []Verdict
	for i := range upgrades {
		gap := randomGap(rng, 1500*time.Millisecond, 4500*time.Millisecond)
		select {
		case <-pub.done:
			t.Fatalf("the publisher ended before upgrade %d of %d: %v", i+1, upgrades, pub.err)
		case <-time.After(gap):
		}
		v := srv.mustUpgrade(t, builds[i%2])
		logVerdict(t, i+1, v)
		verdicts = append(verdicts, v)
		running(t, pub, fmt.Sprintf("after upgrade %d", i+1))
		down.running(t, fmt.Sprintf("after upgrade %d", i+1))
		// The relay moved with its socket: the new process reports it
		// connected, never reconnected, and nginx saw no new publish.
		st := srv.relayTo(t, "live", key, target)
		if st.State != "connected" || st.Reconnects != 0 {
			t.Errorf("after upgrade %d (pid %d -> %d) the relay is %v, want connected with 0 reconnects", i+1, v.OldPID, v.NewPID, st)
		}
		if ps := down.publishes(key); len(ps) != 1 {
			t.Fatalf("after upgrade %d (pid %d -> %d) nginx saw %d publish connections for %s, want 1: the relay reconnected instead of moving: %s",
				i+1, v.OldPID, v.NewPID, len(ps), key, describePublishes(ps))
		}
	}
	logVerdictSummary(t, verdicts)
	t.Logf("relay after %d upgrades: %v", upgrades, srv.relayTo(t, "live", key, target))

	pub.waitOK(t, longPublishTimeout)
	// The relay ends with the broadcast: its connection closes, and
	// nginx's recording is complete.
	down.waitPublishesEnded(t, key, quickTimeout)

	if n := srv.matching(relayConnected(target, "live", key)); len(n) != 1 {
		t.Errorf("%d \"relay connected\" to %s, want 1 (a moved relay is not logged again): %s", len(n), target, describeLines(n))
	}
	if d := srv.matching(relayDropped); len(d) != 0 {
		t.Errorf("%d \"relay dropped\", want none: %s", len(d), describeLines(d))
	}
	if n := len(srv.matching(isMsg("publish started", "live", key))); n != 1 {
		t.Errorf("%d \"publish started\" for live/%s, want 1", n, key)
	}
	down.checkPublishes(t, key, 1)

	segs := srv.recording(t, "live", key)
	srv.endsOnlyInLast(t, "live", key)
	if len(segs) != 1 {
		t.Errorf("mediad recorded %d files %q across %d upgrades, want 1", len(segs), segs, upgrades)
	} else {
		got := mustProbe(t, segs[0])
		checkSamePackets(t, "mediad's recording "+segs[0], got, src.packets)
	}

	rec := down.oneRecording(t, key)
	got := mustProbeNginx(t, rec)
	checkSamePackets(t, "nginx's recording "+rec, got, src.packets)
	checkTimeline(t, "nginx's recording "+rec, got)
	decodeClean(t, rec)
}

// Relay reconnection: 1 s, doubling, at most 30 s between attempts.
const (
	relayBackoffFirst = time.Second
	relayBackoffMax   = 30 * time.Second
	// relayReconnectSlack covers jitter in the schedule, a loaded
	// machine, and the connect and publish themselves.
	relayReconnectSlack = 2 * time.Second
)

// relayRetryDue is when, after a drop, the backoff schedule next tries at
// or after down: attempts fall at 1 s, 3 s, 7 s, 15 s... after the drop.
func relayRetryDue(down time.Duration) time.Duration {
	at, step := time.Duration(0), relayBackoffFirst
	for at < down {
		at += step
		step = min(2*step, relayBackoffMax)
	}
	return at
}

// TestE2ERelayTargetRestarts: mediad pushes a 36 s broadcast to two
// nginx-rtmp servers ([[push]] tables of its config file). One of them
// stops and starts again, twice, for 2 s and then 5 s. Each time the
// relay to it leaves the connected state, and connects again within the
// 1 s doubling backoff once the server is back, which relays[].reconnects
// counts; each new recording there is an unbroken run of the
// source from a keyframe. Meanwhile the other server's recording,
// mediad's own and an RTMP player's are the source packet for packet, and
// none of them reconnects.
func TestE2ERelayTargetRestarts(t *testing.T) {
	tools := requireNginx(t, "ffmpeg", "ffprobe")
	t.Parallel()
	// The restarts are over in about 20 s.
	src := cutClip(t, longSource(t), 36)
	publisherSlots.acquire(t, 1)
	steady := startNginx(t, tools, "steady nginx-rtmp")
	flaky := startNginx(t, tools, "flaky nginx-rtmp")
	const key = "fanout"
	steadyURL := "rtmp://" + steady.addr + "/live/" + key
	flakyURL := "rtmp://" + flaky.addr + "/live/" + key + "?relay=flaky"
	// A table for another app: it must not push live/fanout.
	cfg := filepath.Join(t.TempDir(), "mediad.toml")
	writeText(t, cfg, fmt.Sprintf(`segment = "0s"

[[push]]
app = "live"
url = "rtmp://%s/live/{key}"

[[push]]
app = "live"
url = "rtmp://%s/{app}/{key}?relay=flaky"

[[push]]
app = "other"
url = "rtmp://%s/live/other-{key}"
`, steady.addr, flaky.addr, steady.addr))
	srv := startServer(t, "--config", cfg)

	playerPath := filepath.Join(t.TempDir(), "player.flv")
	player := srv.play(t, "live", key, playerPath)
	srv.waitLog(quickTimeout, "play started live/"+key, isMsg("play started", "live", key))
	pub := srv.publish(t, src, "live", key)
	srv.waitLog(quickTimeout, "relay connected to "+steadyURL, relayConnected(steadyURL, "live", key))
	srv.waitLog(quickTimeout, "relay connected to "+flakyURL, relayConnected(flakyURL, "live", key))
	steady.waitPublishes(t, key, 1, quickTimeout)
	ps, _ := flaky.waitPublishes(t, key, 1, quickTimeout)
	// The query of the URL goes with the stream name: nginx logs it as
	// the publish's args (or the connect's, if sent with the app).
	if args := flaky.connArgs(ps[0].conn); !strings.Contains(strings.Join(args, " "), "relay=flaky") {
		t.Errorf("the relay to %s lost its query: nginx logged args %q for its connection: %s", flakyURL, args, ps[0].line)
	}
	relays, _, err := srv.streamRelays("live", key)
	if err != nil {
		t.Fatal(err)
	}
	if len(relays) != 2 {
		t.Errorf("live/%s has %d relays %v, want 2 (to %s and %s; the [[push]] of app \"other\" is not for it)", key, len(relays), relays, steadyURL, flakyURL)
	}
	srv.waitVideoFrames(t, "live", key, 3*srcFPS, quickTimeout)

	var reconnects uint64 // the flaky relay's count before each stop
	for i, downFor := range []time.Duration{2 * time.Second, 5 * time.Second} {
		restart := fmt.Sprintf("restart %d of the flaky target (down %v)", i+1, downFor)
		reconnects = srv.relayTo(t, "live", key, flakyURL).Reconnects
		flaky.stop(t)
		stoppedAt := time.Now()
		st := srv.waitRelay(t, "live", key, flakyURL, "out of the connected state after the flaky target stopped", quickTimeout,
			func(r relayStatus) bool { return r.State == "backoff" || r.State == "connecting" })
		t.Logf("%s: relay %v", restart, st)
		if st.LastError == "" {
			t.Errorf("%s: the relay is %v with no last_error", restart, st)
		}
		// The target stays down for downFor: the scenario, not a wait.
		select {
		case <-pub.done:
			t.Fatalf("%s: the publisher ended while the target was down: %v", restart, pub.err)
		case <-time.After(time.Until(stoppedAt.Add(downFor))):
		}
		if st := srv.relayTo(t, "live", key, steadyURL); st.State != "connected" {
			t.Errorf("%s: the relay to the steady target is %v, want connected", restart, st)
		}
		flaky.restart(t)
		upAt := time.Now()
		down := upAt.Sub(stoppedAt)
		due := relayRetryDue(down) - down
		ps, seenAt := flaky.waitPublishes(t, key, i+2, due+relayBackoffMax)
		took := seenAt.Sub(upAt)
		t.Logf("%s: down %v, back %v later (next attempt due after %v); publish: %s", restart, down.Round(time.Millisecond), took.Round(time.Millisecond), due.Round(time.Millisecond), ps[len(ps)-1].line)
		if took > due+relayReconnectSlack {
			t.Errorf("%s: the relay reconnected %v after the target was back, down %v: a 1 s doubling backoff tries again %v after it (%v allowed)",
				restart, took.Round(time.Millisecond), down.Round(time.Millisecond), due.Round(time.Millisecond), due+relayReconnectSlack)
		}
		// reconnects counts the reconnections, or the attempts, failed
		// ones included: either way more than before the stop, and at
		// least one per restart so far.
		st = srv.waitRelay(t, "live", key, flakyURL, fmt.Sprintf("connected with more than %d reconnects, and at least %d", reconnects, i+1), quickTimeout,
			func(r relayStatus) bool {
				return r.State == "connected" && r.Reconnects > reconnects && r.Reconnects >= uint64(i+1)
			})
		t.Logf("%s: relay %v", restart, st)
		// The new connection carries frames before the next stop.
		flaky.waitRecorded(t, key, 2*srcFPS, quickTimeout)
		running(t, pub, "after "+restart)
		running(t, player, "after "+restart)
		steady.running(t, "after "+restart)
	}
	stSteady, stFlaky := srv.relayTo(t, "live", key, steadyURL), srv.relayTo(t, "live", key, flakyURL)
	t.Logf("relays after the restarts: %v, %v", stSteady, stFlaky)
	if stSteady.State != "connected" || stSteady.Reconnects != 0 || stSteady.Drops != 0 {
		t.Errorf("the relay to the steady target is %v, want connected, with no reconnect and no drop", stSteady)
	}
	if stFlaky.State != "connected" || stFlaky.Reconnects < 2 {
		t.Errorf("the relay to the flaky target is %v, want connected with at least 2 reconnects", stFlaky)
	}

	pub.waitOK(t, publishTimeout)
	player.waitOK(t, quickTimeout)
	steady.waitPublishesEnded(t, key, quickTimeout)
	flaky.waitPublishesEnded(t, key, quickTimeout)

	// Untouched: mediad's recording, its player, the steady target.
	if n := len(srv.logged(isMsg("publish started", "live", key))); n != 1 {
		t.Errorf("%d \"publish started\" for live/%s, want 1", n, key)
	}
	if n := len(srv.logged(isMsg("play started", "live", key))); n != 1 {
		t.Errorf("%d \"play started\" for live/%s, want 1: the player reconnected", n, key)
	}
	if n := srv.logged(relayConnected(steadyURL, "live", key)); len(n) != 1 {
		t.Errorf("%d \"relay connected\" to the steady target, want 1: %s", len(n), describeLines(n))
	}
	if n := srv.logged(relayConnected(flakyURL, "live", key)); len(n) != 3 {
		t.Errorf("%d \"relay connected\" to the flaky target, want 3 (the first and one per restart): %s", len(n), describeLines(n))
	}
	if d := srv.logged(relayDropped); len(d) != 2 {
		t.Errorf("%d \"relay dropped\", want 2 (one per stop of the flaky target): %s", len(d), describeLines(d))
	}
	segs := srv.recording(t, "live", key)
	if len(segs) != 1 {
		t.Errorf("mediad recorded %d files %q, want 1", len(segs), segs)
	} else {
		checkSamePackets(t, "mediad's recording "+segs[0], mustProbe(t, segs[0]), src.packets)
	}
	start, offset := checkRelay(t, "RTMP player", mustProbe(t, playerPath), src.packets)
	if start != 0 || offset != 0 {
		t.Errorf("the player joined before the publish but starts at source frame %d, dts offset %d", start, offset)
	}
	steady.checkPublishes(t, key, 1)
	steady.checkPublishes(t, "other-"+key, 0)
	rec := steady.oneRecording(t, key)
	got := mustProbeNginx(t, rec)
	checkSamePackets(t, "the steady target's recording "+rec, got, src.packets)
	checkTimeline(t, "the steady target's recording "+rec, got)

	// The flaky target: one recording per connection, each an unbroken run
	// of the source from a keyframe, the first from the start, the last to
	// the end.
	flaky.checkPublishes(t, key, 3)
	recs := flaky.recordings(t, key)
	if len(recs) != 3 {
		t.Fatalf("the flaky target recorded %d files %q for %s, want 3: one per connection", len(recs), recs, key)
	}
	total := len(codecPackets(src.packets, "video"))
	for i, rec := range recs {
		what := fmt.Sprintf("the flaky target's recording %d of 3 (%s)", i+1, filepath.Base(rec))
		got := mustProbeNginx(t, rec)
		if v := codecPackets(got, "video"); len(v) > 0 && !v[0].key {
			t.Errorf("%s: first video packet {%v} is not a keyframe", what, v[0])
		}
		run, ok := checkSourceRun(t, what, got, src.packets)
		if !ok {
			continue
		}
		t.Logf("%s: source frames [%d, %d), dts offset %d", what, run.from, run.to, run.offset)
		if i == 0 && run.from != 0 {
			t.Errorf("%s starts at source frame %d, want 0", what, run.from)
		}
		if i == len(recs)-1 && run.to != total {
			t.Errorf("%s ends at source frame %d, want the last, %d", what, run.to, total)
		}
		decodeClean(t, rec)
	}
}
