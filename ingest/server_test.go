package ingest

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
)

// logLineFor returns the first JSON log line naming peer whose error
// mentions reason.
func logLineFor(logs, peer, reason string) map[string]any {
	for line := range strings.SplitSeq(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec["peer"] == peer && strings.Contains(fmt.Sprint(rec["error"]), reason) {
			return rec
		}
	}
	return nil
}

// healthyStream publishes live/good and plays it until stop is closed,
// counting frames the player receives. It reports through the returned
// channel whether publishing ever failed.
func healthyStream(t *testing.T, addr string, stop <-chan struct{}, received *atomic.Int64) <-chan error {
	pl := dialClient(t, addr)
	pub := dialClient(t, addr)
	msid, code := pub.publish("live", "good")
	if code != "NetStream.Publish.Start" {
		t.Fatalf("publish live/good: %s", code)
	}
	plMsid := pl.play("live", "good")
	_ = plMsid
	if err := pub.sendMedia(msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			m, err := pl.next()
			if err != nil {
				return
			}
			if m.TypeID == chunk.TypeVideo {
				received.Add(1)
			}
		}
	}()
	pubErr := make(chan error, 1)
	go func() {
		defer close(pubErr)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := pub.sendMedia(msid, chunk.TypeVideo, uint32(i*10), videoFrame(i%10 == 0, 2000, i)); err != nil {
				pubErr <- err
				return
			}
		}
	}()
	return pubErr
}

func TestBadInputClosesOnlyThatConnection(t *testing.T) {
	_, addr, logs := startServer(t, Config{HandshakeTimeout: 300 * time.Millisecond, MaxMessageSize: 1 << 20})
	stop := make(chan struct{})
	var received atomic.Int64
	pubErr := healthyStream(t, addr, stop, &received)

	afterHandshake := func(c *testClient) { c.handshake() }
	afterConnect := func(c *testClient) { c.connect("live") }
	cases := []struct {
		name   string
		before func(*testClient)
		send   []byte
		reason string
	}{
		{"http request instead of handshake", nil, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "malformed handshake"},
		{"encrypted handshake", nil, append([]byte{6}, make([]byte, 1536)...), "RTMPE"},
		{"silent mid-handshake", nil, append([]byte{3}, make([]byte, 100)...), "handshake timed out"},
		{"silent before connect", afterHandshake, nil, "connect timed out"},
		{"set chunk size 0", afterHandshake, []byte{0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0}, "invalid chunk size"},
		{"set chunk size top bit", afterHandshake, []byte{0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x80, 0, 0x10, 0}, "invalid chunk size"},
		{"message above limit", afterHandshake, []byte{0x03, 0, 0, 0, 0x20, 0, 0, 9, 1, 0, 0, 0}, "message length above limit"},
		{"format 1 with no previous header", afterHandshake, []byte{0x43, 0, 0, 0, 0, 0, 10, 9}, "no previous header"},
		{"format 3 with no previous header", afterHandshake, []byte{0xC7, 1, 2, 3}, "no previous header"},
		{"command before connect", afterHandshake, mustCommand(t, "publish", 1.0, nil, "x"), "before connect"},
		{"unknown command", afterConnect, mustCommand(t, "formatDisk", 5.0, nil), "unknown command"},
		{"path traversal in key", afterConnect, mustCommand(t, "publish", 5.0, nil, "../../etc"), "invalid stream key"},
		{"garbage AMF", afterConnect, []byte{0x03, 0, 0, 0, 0, 0, 3, 20, 0, 0, 0, 0, 0x11, 0xff, 0xff}, "decode command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialClient(t, addr)
			if tc.before != nil {
				tc.before(c)
			}
			if tc.send != nil {
				if _, err := c.conn.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			c.expectClosed()
			peer := c.conn.LocalAddr().String()
			waitFor(t, "a log line naming "+peer+" and "+tc.reason, func() bool {
				return logLineFor(logs.String(), peer, tc.reason) != nil
			})
		})
	}
	// The healthy stream went on throughout.
	before := received.Load()
	waitFor(t, "frames after the bad clients", func() bool { return received.Load() > before+5 })
	close(stop)
	if err := <-pubErr; err != nil {
		t.Fatalf("healthy publisher failed: %v", err)
	}
}

func mustCommand(t *testing.T, vals ...any) []byte {
	t.Helper()
	p, err := amf0.AppendAll(nil, vals...)
	if err != nil {
		t.Fatal(err)
	}
	return chunk.NewWriter().Append(nil, &chunk.Message{CSID: 3, TypeID: chunk.TypeCommandAMF0, Payload: p})
}

func TestSecondPublisherRefused(t *testing.T) {
	srv, addr, logs := startServer(t, Config{})
	first := dialClient(t, addr)
	msid, code := first.publish("live", "k")
	if code != "NetStream.Publish.Start" {
		t.Fatalf("first publish: %s", code)
	}
	second := dialClient(t, addr)
	if _, code := second.publish("live", "k"); code != "NetStream.Publish.BadName" {
		t.Fatalf("second publish: got %s, want NetStream.Publish.BadName", code)
	}
	second.expectClosed()
	// The server logs the refusal as it drops the connection: the client
	// can see the close first.
	waitFor(t, "the refusal in the server log", func() bool { return strings.Contains(logs.String(), "already being published") })
	// The first publisher goes on: its frames still count.
	if err := first.sendMedia(msid, chunk.TypeVideo, 0, videoFrame(true, 100, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first publisher's frame", func() bool {
		l := srv.Registry().List()
		return len(l) == 1 && l[0].Live && l[0].Stats.VideoFrames == 1
	})
}

func TestAuth(t *testing.T) {
	a, err := ParseAuth(strings.NewReader("# comment\nlive/allowed\n\nsecured secret=s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, addr, _ := startServer(t, Config{Auth: a})
	cases := []struct{ app, key, want string }{
		{"live", "allowed", "NetStream.Publish.Start"},
		{"live", "other", "NetStream.Publish.Unauthorized"},
		{"secured", "x?secret=s3cret", "NetStream.Publish.Start"},
		{"secured", "y?secret=wrong", "NetStream.Publish.Unauthorized"},
		{"secured", "z", "NetStream.Publish.Unauthorized"},
	}
	for _, tc := range cases {
		c := dialClient(t, addr)
		if _, got := c.publish(tc.app, tc.key); got != tc.want {
			t.Errorf("publish %s/%s: %s, want %s", tc.app, tc.key, got, tc.want)
		}
	}
	for _, bad := range []string{"live", "live/", "a b/c", "x secret=", "../x/y"} {
		if _, err := ParseAuth(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseAuth(%q) accepted", bad)
		}
	}
}

// TestPublishPlayRecord sends known frames and checks that the player and
// the recording get exactly those, and that the player is told at the end.
func TestPublishPlayRecord(t *testing.T) {
	dir := t.TempDir()
	_, addr, _ := startServer(t, Config{RecordDir: dir})
	pl := dialClient(t, addr)
	plMsid := pl.play("live", "rec")
	pub := dialClient(t, addr)
	msid, code := pub.publish("live", "rec")
	if code != "NetStream.Publish.Start" {
		t.Fatal(code)
	}
	meta := mustAMF(t, "@setDataFrame", "onMetaData", amf0.ECMAArray{{Key: "width", Value: 640.0}})
	if err := pub.send(chunk.Message{CSID: 5, TypeID: chunk.TypeDataAMF0, StreamID: msid, Payload: meta}); err != nil {
		t.Fatal(err)
	}
	var sent [][]byte
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(pub.sendMedia(msid, chunk.TypeVideo, 0, avcSeqHeader))
	must(pub.sendMedia(msid, chunk.TypeAudio, 0, aacSeqHeader))
	// Extended timestamps: the broadcast is 4.66 hours old.
	base := uint32(0xFFFFFF - 500)
	for i := range 90 {
		f := videoFrame(i%30 == 0, 5000+i, i)
		sent = append(sent, f)
		must(pub.sendMedia(msid, chunk.TypeVideo, base+uint32(i*33), f))
	}
	pub.command(msid, "FCUnpublish", 6.0, nil, "rec")
	pub.command(msid, "deleteStream", 7.0, nil, float64(msid))

	var got [][]byte
	var stamps []uint32
	var meta2 []byte
	for {
		m, err := pl.next()
		if err != nil {
			t.Fatalf("player: %v after %d frames", err, len(got))
		}
		if m.TypeID == chunk.TypeDataAMF0 {
			meta2 = m.Payload
		}
		if m.TypeID == chunk.TypeVideo && !flv.IsSequenceHeader(m.TypeID, m.Payload) {
			if m.StreamID != plMsid {
				t.Fatalf("frame on message stream %d, want %d", m.StreamID, plMsid)
			}
			got = append(got, m.Payload)
			stamps = append(stamps, m.Timestamp)
		}
		if m.TypeID == chunk.TypeCommandAMF0 {
			vals, _ := amf0.DecodeAll(m.Payload)
			if obj, ok := vals[len(vals)-1].(amf0.Object); ok {
				if code, _ := obj.GetString("code"); code == "NetStream.Play.UnpublishNotify" {
					break
				}
			}
		}
	}
	if len(got) != len(sent) {
		t.Fatalf("player got %d frames, want %d", len(got), len(sent))
	}
	for i := range sent {
		if string(got[i]) != string(sent[i]) || stamps[i] != base+uint32(i*33) {
			t.Fatalf("frame %d differs (ts %d, want %d)", i, stamps[i], base+uint32(i*33))
		}
	}
	if v, _, _ := amf0.Decode(meta2); v != "onMetaData" {
		t.Errorf("player metadata starts with %v, want onMetaData", v)
	}

	// The recording holds the same frames once the publisher is gone.
	var files []string
	waitFor(t, "the recording to be finalised", func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "live", "rec", "*.flv"))
		return len(files) == 1
	})
	var rec [][]byte
	var recTS []uint32
	for _, tag := range recordingTags(t, dir, "live", "rec") {
		if tag.Type == flv.TagVideo && !flv.IsSequenceHeader(tag.Type, tag.Data) {
			rec = append(rec, tag.Data)
			recTS = append(recTS, tag.Timestamp)
		}
	}
	if len(rec) != len(sent) {
		t.Fatalf("recording has %d frames, want %d", len(rec), len(sent))
	}
	for i := range sent {
		if string(rec[i]) != string(sent[i]) || recTS[i] != base+uint32(i*33) {
			t.Fatalf("recorded frame %d differs", i)
		}
	}
}

func mustAMF(t *testing.T, vals ...any) []byte {
	t.Helper()
	p, err := amf0.AppendAll(nil, vals...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSlowPlayerSkippedNotBlocking: a player that never reads must not slow
// the publisher or a healthy player; it is skipped ahead and then dropped.
func TestSlowPlayerSkippedNotBlocking(t *testing.T) {
	srv, addr, logs := startServer(t, Config{PlayerQueueBytes: 256 << 10, MaxSkips: 2, WriteTimeout: time.Second})
	slow := dialClient(t, addr)
	slow.play("live", "s")
	good := dialClient(t, addr)
	good.play("live", "s")
	var received atomic.Int64
	go func() {
		for {
			m, err := good.next()
			if err != nil {
				return
			}
			if m.TypeID == chunk.TypeVideo {
				received.Add(1)
			}
		}
	}()
	pub := dialClient(t, addr)
	msid, _ := pub.publish("live", "s")
	// 2,000 frames of 20 KB at 20 MB/s: 40 MB, far beyond what the slow
	// player's socket buffers and queue can hold, and easy for a reader.
	const frames = 2000
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := range frames {
		<-tick.C
		if err := pub.sendMedia(msid, chunk.TypeVideo, uint32(i*33), videoFrame(i%30 == 0, 20000, i)); err != nil {
			t.Fatalf("publisher blocked or failed at frame %d: %v", i, err)
		}
	}
	waitFor(t, "the healthy player to get every frame", func() bool { return received.Load() == frames })
	waitFor(t, "the slow player to be dropped", func() bool {
		return strings.Contains(logs.String(), "player dropped") || strings.Contains(logs.String(), "player write failed")
	})
	waitFor(t, "the server to forget the slow player", func() bool {
		l := srv.Registry().List()
		return len(l) == 1 && l[0].Players == 1
	})
	if !strings.Contains(logs.String(), "skipped ahead") {
		t.Errorf("slow player was never skipped ahead")
	}
}

func TestServerCloseFinalisesRecording(t *testing.T) {
	dir := t.TempDir()
	srv, addr, _ := startServer(t, Config{RecordDir: dir})
	pub := dialClient(t, addr)
	msid, _ := pub.publish("live", "c")
	for i := range 10 {
		if err := pub.sendMedia(msid, chunk.TypeVideo, uint32(i*33), videoFrame(i == 0, 100, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "frames to arrive", func() bool {
		l := srv.Registry().List()
		return len(l) == 1 && l[0].Stats.VideoFrames == 10
	})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	n := len(recordingTags(t, dir, "live", "c"))
	if n != 10 {
		t.Fatalf("recording has %d tags, want 10", n)
	}
}

// TestIdlePublisherTimesOut: a publisher that keeps sending stays past its
// idle timeout (the deadline, set once, moves when it passes), and one
// that falls silent is dropped once the timeout has passed since its last
// message.
func TestIdlePublisherTimesOut(t *testing.T) {
	const idle = 2 * time.Second
	srv, addr, logs := startServer(t, Config{IdleTimeout: idle})
	c := dialClient(t, addr)
	msid, code := c.publish("live", "idle")
	if code != "NetStream.Publish.Start" {
		t.Fatal(code)
	}
	start := time.Now()
	var last time.Time
	for i := 0; time.Since(start) < idle+idle/2; i++ {
		if err := c.sendMedia(msid, chunk.TypeAudio, uint32(i*100), []byte{0xaf, 1, 0, 0}); err != nil {
			t.Fatalf("publisher dropped while sending, after %v: %v", time.Since(start), err)
		}
		last = time.Now()
		time.Sleep(idle / 20)
	}
	if l := srv.Registry().List(); len(l) != 1 || !l[0].Live {
		t.Fatalf("after %v of media, want the stream live, got %+v", time.Since(start), l)
	}
	c.expectClosed()
	if silent := time.Since(last); silent < idle {
		t.Errorf("dropped %v after its last message, want at least %v", silent, idle)
	}
	waitFor(t, "the timeout's log line", func() bool {
		return logLineFor(logs.String(), c.conn.LocalAddr().String(), "timed out") != nil
	})
}

// A publisher whose connection closes right after its last bytes (an
// encoder killed, a TLS relay closed at an upgrade) ends at once, not at
// the idle timeout: its FIN can arrive with the bytes, and a read that
// then waits for the poller instead of reading again never learns of it,
// while the encoder dialling again is refused as a second publisher.
func TestPublisherClosingRightAfterItsDataEnds(t *testing.T) {
	srv, addr, _ := startServer(t, Config{IdleTimeout: time.Minute})
	for i := range 200 {
		key := fmt.Sprintf("k%d", i)
		c := dialClient(t, addr)
		msid, code := c.publish("live", key)
		if code != "NetStream.Publish.Start" {
			t.Fatalf("publish %s: %s", key, code)
		}
		closeAfterLastFrame(t, srv, c, msid, key, 0)
	}
}

// closeAfterLastFrame sends a frame and the FIN back to back, and waits for
// srv to end the publish of key: at once, not at the idle timeout.
func closeAfterLastFrame(t *testing.T, srv *Server, c *testClient, msid uint32, key string, ts uint32) {
	t.Helper()
	if err := c.sendMedia(msid, chunk.TypeVideo, ts, videoFrame(ts == 0, 100, int(ts))); err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
	live := func() bool {
		for _, st := range srv.Registry().List() {
			if st.Key == key && st.Live {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for live() {
		if time.Now().After(deadline) {
			t.Fatalf("publisher of %s, closed after its last frame, is still live 5 s later", key)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRestoredPublisherClosingRightAfterItsDataEnds: a publisher that moved
// to a new server is watched for its close there, and the old server's
// hang-up set lets go of it at the commit.
func TestRestoredPublisherClosingRightAfterItsDataEnds(t *testing.T) {
	cfg := Config{IdleTimeout: time.Minute}
	srv, addr, _ := startServer(t, cfg)
	type pub struct {
		c    *testClient
		msid uint32
	}
	var pubs []pub
	for i := range 20 {
		c := dialClient(t, addr)
		msid, code := c.publish("live", fmt.Sprintf("k%d", i))
		if code != "NetStream.Publish.Start" {
			t.Fatalf("publish k%d: %s", i, code)
		}
		// A short read, so that each session is watched before the move.
		if err := c.sendMedia(msid, chunk.TypeVideo, 0, videoFrame(true, 100, 0)); err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, pub{c, msid})
	}
	waitFor(t, "every publisher watched", func() bool {
		srv.hangups.mu.Lock()
		defer srv.hangups.mu.Unlock()
		return len(srv.hangups.byID) == len(pubs)
	})
	next := upgradeInProcess(t, srv, cfg)
	srv.hangups.mu.Lock()
	left := len(srv.hangups.byID)
	srv.hangups.mu.Unlock()
	if left != 0 {
		t.Errorf("the old server's hang-up set still holds %d moved publishers", left)
	}
	for i, p := range pubs {
		closeAfterLastFrame(t, next, p.c, p.msid, fmt.Sprintf("k%d", i), 40)
	}
}

// TestHangupSetEndsQuietly: closing a server ends its hang-up set's reader
// without an error line (the e2e tests fail on any), and the set watched
// the publisher before.
func TestHangupSetEndsQuietly(t *testing.T) {
	srv, addr, logs := startServer(t, Config{})
	c := dialClient(t, addr)
	msid, code := c.publish("live", "quiet")
	if code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	if err := c.sendMedia(msid, chunk.TypeVideo, 0, videoFrame(true, 100, 0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the publisher watched", func() bool {
		srv.hangups.mu.Lock()
		defer srv.hangups.mu.Unlock()
		return len(srv.hangups.byID) == 1
	})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), `"level":"error"`) {
		t.Fatalf("closing the server logged an error:\n%s", logs.String())
	}
	if srv.hangups.failed.Load() {
		t.Fatal("the hang-up set counts as failed after a close")
	}
}
