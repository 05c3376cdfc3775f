package ingest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
	"github.com/mediad/mediad/state"
)

// liveFeed publishes numbered frames as fast as a 1 ms ticker allows and
// plays them back, recording what the player saw.
type liveFeed struct {
	t        *testing.T
	pub, pl  *testClient
	msid     uint32
	sent     atomic.Int64
	stop     chan struct{}
	pubDone  chan error
	mu       sync.Mutex
	got      []uint32 // frame numbers the player received, in order
	plErr    error
	plDone   chan struct{}
	frameLen int
}

func startFeed(t *testing.T, addr, key string) *liveFeed {
	return startFeedVia(t, addr, addr, key)
}

// startFeedVia publishes to pubAddr and plays from playAddr: a relay
// between the two servers carries the frames.
func startFeedVia(t *testing.T, pubAddr, playAddr, key string) *liveFeed {
	f := &liveFeed{t: t, stop: make(chan struct{}), pubDone: make(chan error, 1), plDone: make(chan struct{}), frameLen: 3000}
	f.pl = dialClient(t, playAddr)
	f.pl.play("live", key)
	f.pub = dialClient(t, pubAddr)
	var code string
	f.msid, code = f.pub.publish("live", key)
	if code != "NetStream.Publish.Start" {
		t.Fatal(code)
	}
	if err := f.pub.sendMedia(f.msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.plDone)
		for {
			m, err := f.pl.next()
			if err != nil {
				f.mu.Lock()
				f.plErr = err
				f.mu.Unlock()
				return
			}
			if m.TypeID == chunk.TypeVideo && !flv.IsSequenceHeader(m.TypeID, m.Payload) {
				f.mu.Lock()
				f.got = append(f.got, m.Timestamp/10)
				f.mu.Unlock()
			}
		}
	}()
	go func() { f.pubDone <- publishFrames(f.pub, f.msid, f.frameLen, f.stop, &f.sent) }()
	return f
}

// publishFrames sends a video frame every millisecond until stop, counting
// them in sent. Frame i carries timestamp 10*i, so a viewer can tell gaps
// and duplicates; the payload varies in size to cross chunk boundaries at
// changing offsets.
func publishFrames(pub *testClient, msid uint32, frameLen int, stop <-chan struct{}, sent *atomic.Int64) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		if err := pub.sendMedia(msid, chunk.TypeVideo, uint32(i*10), videoFrame(i%25 == 0, frameLen+i%4000, i)); err != nil {
			return err
		}
		sent.Add(1)
	}
}

func (f *liveFeed) received() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

// finish stops publishing and checks the player got every frame exactly
// once, in order.
func (f *liveFeed) finish() int {
	f.t.Helper()
	close(f.stop)
	if err := <-f.pubDone; err != nil {
		f.t.Fatalf("publisher: %v", err)
	}
	sent := int(f.sent.Load())
	waitFor(f.t, "the player to catch up", func() bool { return f.received() >= sent })
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, n := range f.got {
		if int(n) != i {
			f.t.Fatalf("player frame %d is frame %d: a gap or a duplicate", i, n)
		}
	}
	if len(f.got) != sent {
		f.t.Fatalf("player got %d frames, publisher sent %d", len(f.got), sent)
	}
	return sent
}

// upgradeInProcess parks every session of from, restores them into a new
// server and commits, the way two processes do it but through duplicated
// descriptors in one process.
func upgradeInProcess(t *testing.T, from *Server, cfg Config) *Server {
	t.Helper()
	to, _ := upgradeAhead(t, from, cfg, false, nil)
	return to
}

// crossing is what crosses the process boundary of an item: the envelope's
// wire form and the kernel's copies of the descriptors it lends, as
// SCM_RIGHTS makes them.
func crossing(t *testing.T, it ParkedSession) ParkedSession {
	t.Helper()
	wire, err := state.MarshalEnvelope(it.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	env, err := state.UnmarshalEnvelope(wire)
	if err != nil {
		t.Fatal(err)
	}
	out := ParkedSession{Envelope: env}
	if len(it.Files) != 0 {
		t.Fatalf("%s owns %d duplicated descriptors; it should lend its own", it.Envelope.Kind, len(it.Files))
	}
	for _, fd := range it.Borrowed {
		dup, err := dupFile(uintptr(fd), "lent")
		if err != nil {
			t.Fatal(err)
		}
		out.Files = append(out.Files, dup)
	}
	return out
}

// upgradeAhead is upgradeInProcess, with, if ahead, the sessions' static
// parts sent before the park, as to a new process that reads version 8;
// between, if not nil, runs after that and before the park. It returns the
// new server and the kinds of what crossed.
func upgradeAhead(t *testing.T, from *Server, cfg Config, ahead bool, between func()) (*Server, map[state.Kind]int) {
	t.Helper()
	var items []ParkedSession
	var pre *Presented
	if ahead {
		var err error
		var mu sync.Mutex
		pre, err = from.Presend(state.Version, func(ps []ParkedSession) error {
			// The descriptors are lent for the call only; calls may come
			// from several goroutines at once.
			mu.Lock()
			defer mu.Unlock()
			for _, it := range ps {
				items = append(items, crossing(t, it))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("presend: %v", err)
		}
		if pre.Len() != len(items) {
			t.Fatalf("presend counts %d bases, sent %d", pre.Len(), len(items))
		}
	}
	if between != nil {
		between()
	}
	parked, err := from.ParkAfter(context.Background(), state.Version, pre, nil)
	if err != nil {
		t.Fatalf("park: %v", err)
	}
	for _, it := range parked.Items {
		items = append(items, crossing(t, it))
	}
	to := NewServer(cfg)
	// The sessions arrive one at a time and each is rebuilt as it comes;
	// bases first, as they are sent, then the parked sessions last parked
	// first, so that players arrive before their publishers.
	rs := to.BeginRestore()
	bases := pre.Len()
	for i := range bases {
		rs.Add(items[i : i+1])
	}
	for i := len(items) - 1; i >= bases; i-- {
		rs.Add(items[i : i+1])
	}
	restored, err := rs.Finish()
	if err != nil {
		parked.Resume()
		t.Fatalf("restore: %v", err)
	}
	parked.Commit()
	restored.Start()
	t.Cleanup(func() { to.Close() })
	kinds := map[state.Kind]int{}
	for _, it := range items {
		kinds[it.Envelope.Kind]++
	}
	return to, kinds
}

func TestParkRestoreCommitLosesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{RecordDir: dir}
	srv, addr, _ := startServer(t, cfg)
	feed := startFeed(t, addr, "up")
	// A connection still in handshake and one connected without a stream
	// move too.
	half := dialClient(t, addr)
	if _, err := half.conn.Write(append([]byte{3}, make([]byte, 700)...)); err != nil {
		t.Fatal(err)
	}
	idle := dialClient(t, addr)
	idle.connect("live")

	var started time.Time
	waitFor(t, "the stream", func() bool {
		l := srv.Registry().List()
		if len(l) == 1 {
			started = l[0].Started
		}
		return !started.IsZero()
	})
	cur := srv
	for i := range 5 {
		target := feed.received() + 100
		waitFor(t, "frames before the upgrade", func() bool { return feed.received() >= target })
		cur = upgradeInProcess(t, cur, cfg)
		t.Logf("upgrade %d: %d sessions, stalls %v", i+1, cur.SessionCount(), cur.Stalls())
	}
	target := feed.received() + 100
	waitFor(t, "frames after the upgrades", func() bool { return feed.received() >= target })
	sent := feed.finish()

	// The statistics counted on across the five upgrades.
	var info StreamInfo
	waitFor(t, "the last frame counted", func() bool {
		l := cur.Registry().List()
		if len(l) == 1 {
			info = l[0]
		}
		return info.Stats.VideoFrames == uint64(sent)
	})
	var wantBytes uint64 = uint64(len(avcSeqHeader))
	for i := range sent {
		wantBytes += uint64(len(videoFrame(false, feed.frameLen+i%4000, i)))
	}
	if info.Stats.VideoBytes != wantBytes || info.Stats.BytesIn != wantBytes || info.Stats.Keyframes != uint64((sent+24)/25) {
		t.Errorf("stats after upgrades: %+v, want %d video bytes, %d keyframes", info.Stats, wantBytes, (sent+24)/25)
	}
	if info.Stats.BitrateKbps <= 0 || !info.Started.Equal(started) || !info.Stats.TracksSince.Equal(started) {
		t.Errorf("stats after upgrades: bitrate %.0f kbit/s, started %v (was %v), tracks since %v", info.Stats.BitrateKbps, info.Started, started, info.Stats.TracksSince)
	}

	// The half-finished handshake completes in the last process.
	if _, err := half.conn.Write(make([]byte, 1537-701)); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 3073)
	half.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := ioReadFull(half.conn, reply); err != nil {
		t.Fatalf("handshake across upgrades: %v", err)
	}
	// The idle connection still answers.
	idle.createStream()

	// Close the last server: the recording is finalised, one file, every
	// frame once.
	feed.pub.command(feed.msid, "deleteStream", 9.0, nil, float64(feed.msid))
	cur.Close()
	checkRecordedOnce(t, dir, "up", sent)
}

// checkRecordedOnce checks that the recording of live/key holds the sent
// frames of a liveFeed, each once, in order.
func checkRecordedOnce(t *testing.T, dir, key string, sent int) {
	t.Helper()
	n := 0
	for _, tag := range recordingTags(t, dir, "live", key) {
		if tag.Type != flv.TagVideo || flv.IsSequenceHeader(tag.Type, tag.Data) {
			continue
		}
		if tag.Timestamp != uint32(n*10) {
			t.Fatalf("recorded frame %d has timestamp %d", n, tag.Timestamp)
		}
		n++
	}
	if n != sent {
		t.Fatalf("recording has %d frames, publisher sent %d", n, sent)
	}
}

func TestParkResumeRollback(t *testing.T) {
	srv, addr, _ := startServer(t, Config{RecordDir: t.TempDir()})
	feed := startFeed(t, addr, "rb")
	for range 3 {
		target := feed.received() + 100
		waitFor(t, "frames", func() bool { return feed.received() >= target })
		bound := srv.ParkFDs()
		parked, err := srv.Park(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(parked.Items) != 2 {
			t.Fatalf("parked %d sessions, want 2", len(parked.Items))
		}
		// A recording publisher and a player: three descriptors, which
		// the bound taken before the park must cover.
		fds := 0
		for _, it := range parked.Items {
			fds += len(it.Borrowed) + len(it.Files)
		}
		if fds != 3 || bound < fds {
			t.Errorf("park exported %d descriptors, bound before it %d; want 3 within the bound", fds, bound)
		}
		parked.Resume()
	}
	// New connections are accepted again after a rollback.
	late := dialClient(t, addr)
	late.connect("live")
	target := feed.received() + 100
	waitFor(t, "frames after rollbacks", func() bool { return feed.received() >= target })
	feed.finish()
}

// exportForRestore is what crosses to a new process for each parked
// session: the envelope and the kernel's copy of every descriptor.
func exportForRestore(t *testing.T, parked *Parked) []ParkedSession {
	t.Helper()
	items := make([]ParkedSession, len(parked.Items))
	for i, it := range parked.Items {
		items[i] = ParkedSession{Envelope: it.Envelope}
		for _, fd := range it.Borrowed {
			dup, err := dupFile(uintptr(fd), "lent")
			if err != nil {
				t.Fatal(err)
			}
			items[i].Files = append(items[i].Files, dup)
		}
	}
	return items
}

// A restore abandoned while sessions still arrive (the old process aborted,
// or went away) leaves nothing in the new server: every descriptor it was
// given is closed, no session or stream stays; the old process resumes.
func TestRestoreAbandonedLeavesNothing(t *testing.T) {
	cfg := Config{RecordDir: t.TempDir()}
	srv, addr, _ := startServer(t, cfg)
	feed := startFeed(t, addr, "ab")
	target := feed.received() + 100
	waitFor(t, "frames", func() bool { return feed.received() >= target })
	parked, err := srv.Park(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	items := exportForRestore(t, parked)
	to := NewServer(cfg)
	t.Cleanup(func() { to.Close() })
	rs := to.BeginRestore()
	rs.Add(items[:1])
	rs.Abandon()
	// Whatever comes after the abandon is closed unread.
	rs.Add(items[1:])
	if _, err := rs.Finish(); err == nil {
		t.Error("Finish after Abandon succeeded")
	}
	for i, it := range items {
		for _, f := range it.Files {
			if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("item %d: descriptor %s left open", i, f.Name())
			}
		}
	}
	if n, l := to.SessionCount(), len(to.Registry().List()); n != 0 || l != 0 {
		t.Errorf("abandoned restore left %d sessions and %d streams", n, l)
	}
	parked.Resume()
	target = feed.received() + 100
	waitFor(t, "frames after the rollback", func() bool { return feed.received() >= target })
	feed.finish()
}

func ioReadFull(c interface{ Read([]byte) (int, error) }, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := c.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ParkFDs counts a recording only where one may be open: with recording
// off a publisher and its player need two descriptors, not three (at
// 10,000 publishers the difference decides whether an upgrade fits); a
// stream that arrived recording keeps counting its file in a process
// configured without recording.
func TestParkFDsCountsRecordingsOnlyWhereTheyMayBe(t *testing.T) {
	for _, tc := range []struct {
		name      string
		from, to  Config
		wantAfter int
	}{
		{"recording off", Config{}, Config{}, 2},
		{"recording on", Config{RecordDir: t.TempDir()}, Config{RecordDir: t.TempDir()}, 3},
		{"recording arrived, configured off", Config{RecordDir: t.TempDir()}, Config{}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr, _ := startServer(t, tc.from)
			feed := startFeed(t, addr, "fds")
			waitFor(t, "frames", func() bool { return feed.received() >= 20 })
			cur := upgradeInProcess(t, srv, tc.to)
			n := feed.received()
			waitFor(t, "frames after the upgrade", func() bool { return feed.received() >= n+20 })
			bound := cur.ParkFDs()
			parked, err := cur.Park(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			fds := 0
			for _, it := range parked.Items {
				fds += len(it.Borrowed) + len(it.Files)
			}
			parked.Resume()
			if bound != tc.wantAfter || fds > bound {
				t.Errorf("bound %d, park exported %d; want the bound %d and the export within it", bound, fds, tc.wantAfter)
			}
			close(feed.stop)
			<-feed.pubDone
		})
	}
}

// ParkEach hands the sessions over as they park, in groups of at most
// parkGroup, every publisher before any player, and everything it handed
// over is what Items holds. An error from each fails the park and every
// session carries on, losing nothing.
func TestParkEachHandsSessionsAsTheyPark(t *testing.T) {
	srv, addr, _ := startServer(t, Config{})
	feed := startFeed(t, addr, "each-0")
	const pairs = parkGroup + 10 // publishers and players each, beyond one group
	for i := 1; i < pairs; i++ {
		key := fmt.Sprintf("each-%d", i)
		pl := dialClient(t, addr)
		pl.play("live", key)
		pub := dialClient(t, addr)
		if _, code := pub.publish("live", key); code != "NetStream.Publish.Start" {
			t.Fatal(code)
		}
	}
	waitFor(t, "frames", func() bool { return feed.received() >= 50 })
	for round := range 3 {
		var groups [][]ParkedSession
		failAt := -1
		if round == 1 {
			failAt = 2 // the third group
		}
		parked, err := srv.ParkEach(context.Background(), state.Version, func(g []ParkedSession) error {
			if len(groups) == failAt {
				return errors.New("injected: the new process went away")
			}
			groups = append(groups, slices.Clone(g))
			return nil
		})
		if failAt >= 0 {
			if err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("round %d: park %v, want the injected error", round, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		var handed []ParkedSession
		seenPlayer := false
		for i, g := range groups {
			if len(g) == 0 || len(g) > parkGroup {
				t.Errorf("round %d: group %d holds %d sessions, want 1..%d", round, i, len(g), parkGroup)
			}
			for _, it := range g {
				switch it.Envelope.Kind {
				case state.KindPlayer:
					seenPlayer = true
				case state.KindPublisher:
					if seenPlayer {
						t.Errorf("round %d: a publisher handed over after a player (group %d)", round, i)
					}
				}
			}
			handed = append(handed, g...)
		}
		if len(parked.Items) != 2*pairs || len(handed) != len(parked.Items) {
			t.Errorf("round %d: handed over %d sessions in %d groups, parked %d; want %d", round, len(handed), len(groups), len(parked.Items), 2*pairs)
		}
		for i := range min(len(handed), len(parked.Items)) {
			if handed[i].Borrowed[0] != parked.Items[i].Borrowed[0] {
				t.Errorf("round %d: session %d handed over is not the one parked there", round, i)
			}
		}
		parked.Resume()
		target := feed.received() + 100
		waitFor(t, "frames after the park", func() bool { return feed.received() >= target })
	}
	feed.finish()
}
