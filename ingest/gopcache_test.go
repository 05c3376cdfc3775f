package ingest

import (
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
)

// gopMsg is a message as a test writes it: type, timestamp, keyframe.
type gopMsg struct {
	typ uint8
	ts  uint32
	key bool
}

func (m gopMsg) String() string {
	k := ""
	if m.key {
		k = "K"
	}
	return fmt.Sprintf("%d@%d%s", m.typ, m.ts, k)
}

func vid(ts uint32, key bool) gopMsg { return gopMsg{chunk.TypeVideo, ts, key} }
func aud(ts uint32) gopMsg           { return gopMsg{chunk.TypeAudio, ts, false} }
func dat(ts uint32) gopMsg           { return gopMsg{chunk.TypeDataAMF0, ts, false} }

// payloadOf builds a payload of n bytes (at least the tag header) that the
// stream classifies as m says.
func payloadOf(m gopMsg, n int) []byte {
	switch m.typ {
	case chunk.TypeVideo:
		return videoFrame(m.key, max(n-9, 0), int(m.ts))
	case chunk.TypeAudio:
		p := make([]byte, max(n, 2))
		p[0], p[1] = 0xaf, 1
		return p
	}
	return make([]byte, n)
}

func outOf(m gopMsg, n int) outMsg {
	return outMsg{typ: m.typ, ts: m.ts, key: m.key, payload: payloadOf(m, n)}
}

func cachedMsgs(c *gopCache) []gopMsg {
	var out []gopMsg
	for _, m := range c.msgs {
		out = append(out, gopMsg{m.typ, m.ts, m.key})
	}
	return out
}

func TestGOPCacheAdd(t *testing.T) {
	const size = 100
	cost := size + gopEntryCost
	for _, tc := range []struct {
		name       string
		perStream  int64
		in         []gopMsg
		want       []gopMsg
		wantValid  bool
		wantCharge int64
	}{
		{
			name: "nothing before the first keyframe", perStream: 1 << 20,
			in:   []gopMsg{aud(0), vid(0, false), dat(10)},
			want: nil,
		},
		{
			name: "keyframe and what follows, in order", perStream: 1 << 20,
			in:        []gopMsg{aud(0), vid(0, true), aud(10), dat(15), vid(33, false), aud(33)},
			want:      []gopMsg{vid(0, true), aud(10), dat(15), vid(33, false), aud(33)},
			wantValid: true, wantCharge: 5 * cost,
		},
		{
			name: "a keyframe starts over", perStream: 1 << 20,
			in:        []gopMsg{vid(0, true), vid(33, false), aud(40), vid(66, true), aud(70)},
			want:      []gopMsg{vid(66, true), aud(70)},
			wantValid: true, wantCharge: 2 * cost,
		},
		{
			name: "exactly at the per-stream bound", perStream: 3 * cost,
			in:        []gopMsg{vid(0, true), vid(33, false), vid(66, false)},
			want:      []gopMsg{vid(0, true), vid(33, false), vid(66, false)},
			wantValid: true, wantCharge: 3 * cost,
		},
		{
			name: "a GOP past the per-stream bound is dropped until the next keyframe", perStream: 3 * cost,
			in:   []gopMsg{vid(0, true), vid(33, false), vid(66, false), vid(99, false), aud(100), vid(133, false)},
			want: nil,
		},
		{
			name: "and caching resumes at the next keyframe", perStream: 3 * cost,
			in:        []gopMsg{vid(0, true), vid(33, false), vid(66, false), vid(99, false), vid(133, true), aud(140)},
			want:      []gopMsg{vid(133, true), aud(140)},
			wantValid: true, wantCharge: 2 * cost,
		},
		{
			name: "disabled", perStream: 0,
			in:   []gopMsg{vid(0, true), aud(10)},
			want: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &gopBudget{perStream: tc.perStream, total: 1 << 30}
			var c gopCache
			for _, m := range tc.in {
				c.add(b, outOf(m, size))
			}
			if got := cachedMsgs(&c); !slices.Equal(got, tc.want) {
				t.Errorf("cached %v, want %v", got, tc.want)
			}
			if c.valid != tc.wantValid || c.bytes != tc.wantCharge || b.used.Load() != tc.wantCharge {
				t.Errorf("valid=%v bytes=%d budget used=%d, want valid=%v bytes=%d", c.valid, c.bytes, b.used.Load(), tc.wantValid, tc.wantCharge)
			}
			c.reset(b)
			if len(c.msgs) != 0 || c.bytes != 0 || c.valid || b.used.Load() != 0 {
				t.Errorf("after reset: %d messages, %d bytes, valid=%v, budget used %d", len(c.msgs), c.bytes, c.valid, b.used.Load())
			}
		})
	}
}

func TestGOPCacheTotalBound(t *testing.T) {
	const size = 100
	cost := size + gopEntryCost
	b := &gopBudget{perStream: 1 << 20, total: 5 * cost}
	var a, c gopCache
	a.add(b, outOf(vid(0, true), size))
	a.add(b, outOf(vid(33, false), size))
	a.add(b, outOf(vid(66, false), size))
	c.add(b, outOf(vid(0, true), size))
	c.add(b, outOf(vid(33, false), size))
	if b.used.Load() != 5*cost {
		t.Fatalf("budget used %d, want %d", b.used.Load(), 5*cost)
	}
	// The total is reached: the stream whose GOP grows past it loses its
	// cache, the other keeps its own.
	c.add(b, outOf(aud(40), size))
	if c.valid || len(c.msgs) != 0 || c.bytes != 0 {
		t.Errorf("over the total bound the cache still holds %d messages (valid=%v)", len(c.msgs), c.valid)
	}
	if !a.valid || len(a.msgs) != 3 {
		t.Errorf("the other stream's cache was touched: %d messages, valid=%v", len(a.msgs), a.valid)
	}
	if b.used.Load() != 3*cost {
		t.Errorf("budget used %d, want %d", b.used.Load(), 3*cost)
	}
	// Until its next keyframe it caches nothing, though room is back.
	c.add(b, outOf(vid(66, false), size))
	if len(c.msgs) != 0 {
		t.Errorf("cached a frame of a dropped GOP")
	}
	c.add(b, outOf(vid(99, true), size))
	if !c.valid || len(c.msgs) != 1 || b.used.Load() != 4*cost {
		t.Errorf("after the next keyframe: %d messages, valid=%v, budget used %d", len(c.msgs), c.valid, b.used.Load())
	}
}

// testPlayer is a player without a writer: what the fan-out queues for it
// stays in its queue for the test to read.
func testPlayer(limit int) *player {
	return &player{
		sess:    &session{log: zerolog.Nop()},
		limit:   limit,
		max:     5,
		waitKey: true,
		wake:    make(chan struct{}, 1),
	}
}

// queued lists a player's queue as the test wrote it, without control
// messages; config messages are named by their payload.
func queued(p *player) (config []string, media []gopMsg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.queue {
		switch m.kind {
		case kindConfig:
			config = append(config, string(m.payload))
		case kindMedia:
			media = append(media, gopMsg{m.typ, m.ts, m.key})
		}
	}
	return config, media
}

// gopStream is a live stream fed by hand, with no connection.
func gopStream(t *testing.T, perStream int64) (*Registry, *Stream) {
	t.Helper()
	reg := newRegistry(perStream, 1<<30)
	st, err := reg.publish("live", "gop", &session{})
	if err != nil {
		t.Fatal(err)
	}
	return reg, st
}

func feed(st *Stream, msgs ...gopMsg) {
	for _, m := range msgs {
		if m.typ == chunk.TypeDataAMF0 {
			st.relayData(m.ts, payloadOf(m, 50))
			continue
		}
		st.media(m.typ, m.ts, payloadOf(m, 200))
	}
}

// TestGOPCacheJoinExact joins players at every point of a stream and checks
// that each gets the configuration, then everything from the keyframe
// before its join to the end, message for message.
func TestGOPCacheJoinExact(t *testing.T) {
	stream := []gopMsg{
		aud(0), vid(0, true), aud(10), dat(12), vid(33, false), aud(33), vid(66, false),
		aud(70), vid(100, true), aud(100), vid(133, false), dat(140), aud(150), vid(166, false),
		vid(200, true), aud(201),
	}
	for join := 0; join <= len(stream); join++ {
		t.Run(fmt.Sprintf("join after %d", join), func(t *testing.T) {
			reg, st := gopStream(t, 1<<20)
			st.setMetadata([]byte("meta"))
			st.media(chunk.TypeVideo, 0, avcSeqHeader)
			st.media(chunk.TypeAudio, 0, aacSeqHeader)
			feed(st, stream[:join]...)
			p := testPlayer(4 << 20)
			if got := reg.play("live", "gop", p, nil); got != st {
				t.Fatal("play found another stream")
			}
			feed(st, stream[join:]...)

			config, media := queued(p)
			if want := []string{"meta", string(avcSeqHeader), string(aacSeqHeader)}; !slices.Equal(config, want) {
				t.Errorf("config %q, want metadata then sequence headers", config)
			}
			// From the last keyframe at or before the join, else from the
			// first keyframe after it.
			from := -1
			for i := range join {
				if stream[i].key {
					from = i
				}
			}
			for i := join; from < 0; i++ {
				if stream[i].key {
					from = i
				}
			}
			if want := stream[from:]; !slices.Equal(media, want) {
				t.Errorf("player got %v\nwant         %v", media, want)
			}
		})
	}
}

// TestGOPCacheSlowPlayer: a GOP larger than a player's queue limit is not
// queued (it would only make the player skip ahead); the player waits for
// the next keyframe without a skip counted.
func TestGOPCacheSlowPlayer(t *testing.T) {
	reg, st := gopStream(t, 1<<20)
	st.media(chunk.TypeVideo, 0, avcSeqHeader)
	feed(st, vid(0, true), vid(33, false), vid(66, false)) // 600 bytes of payload
	small := testPlayer(500)
	reg.play("live", "gop", small, nil)
	roomy := testPlayer(2000)
	reg.play("live", "gop", roomy, nil)
	feed(st, vid(100, false), vid(133, true), vid(166, false))

	if _, media := queued(small); !slices.Equal(media, []gopMsg{vid(133, true), vid(166, false)}) {
		t.Errorf("player with a 500-byte limit got %v, want the next keyframe on", media)
	}
	if small.skips != 0 {
		t.Errorf("player with a 500-byte limit was skipped %d times, want 0", small.skips)
	}
	if _, media := queued(roomy); len(media) != 6 || media[0] != vid(0, true) {
		t.Errorf("player with room got %v, want the cached GOP and the live frames", media)
	}
}

func TestGOPCacheRepublish(t *testing.T) {
	reg, st := gopStream(t, 1<<20)
	pub := st.publisher
	st.media(chunk.TypeVideo, 0, avcSeqHeader)
	feed(st, vid(0, true), aud(10), vid(33, false))
	if st.Info().Stats.GOPCacheBytes == 0 || reg.GOPCacheBytes() == 0 {
		t.Fatalf("nothing cached: stream %d bytes, registry %d", st.Info().Stats.GOPCacheBytes, reg.GOPCacheBytes())
	}
	waiting := testPlayer(4 << 20)
	reg.play("live", "gop", waiting, nil)
	st.unpublish(pub)
	if n := reg.GOPCacheBytes(); n != 0 {
		t.Errorf("after unpublish the caches hold %d bytes", n)
	}
	st2, err := reg.publish("live", "gop", &session{})
	if err != nil {
		t.Fatal(err)
	}
	if st2 != st {
		t.Fatal("the waiting player's stream was not reused")
	}
	st.media(chunk.TypeVideo, 5000, avcSeqHeader)
	feed(st, aud(5000), vid(5033, false))
	late := testPlayer(4 << 20)
	reg.play("live", "gop", late, nil)
	if _, media := queued(late); len(media) != 0 {
		t.Errorf("a player joining the new broadcast before its keyframe got %v from the old one", media)
	}
	feed(st, vid(5066, true), aud(5070))
	for name, p := range map[string]*player{"waiting": waiting, "late": late} {
		_, media := queued(p)
		var after []gopMsg
		for _, m := range media {
			if m.ts >= 5000 {
				after = append(after, m)
			}
		}
		if want := []gopMsg{vid(5066, true), aud(5070)}; !slices.Equal(after, want) {
			t.Errorf("%s player got %v from the new broadcast, want %v", name, after, want)
		}
	}
}

// TestGOPCacheSequenceHeader: frames cached before a new sequence header
// are not sent after it.
func TestGOPCacheSequenceHeader(t *testing.T) {
	reg, st := gopStream(t, 1<<20)
	st.media(chunk.TypeVideo, 0, avcSeqHeader)
	feed(st, vid(0, true), vid(33, false))
	st.media(chunk.TypeVideo, 66, avcSeqHeader)
	feed(st, vid(66, false))
	p := testPlayer(4 << 20)
	reg.play("live", "gop", p, nil)
	feed(st, vid(100, true))
	if _, media := queued(p); !slices.Equal(media, []gopMsg{vid(100, true)}) {
		t.Errorf("got %v, want the keyframe after the new sequence header", media)
	}
}

// TestGOPCacheNoAllocs: once its slots have grown, caching a message
// allocates nothing.
func TestGOPCacheNoAllocs(t *testing.T) {
	b := &gopBudget{perStream: 1 << 30, total: 1 << 30}
	var c gopCache
	key, frame := outOf(vid(0, true), 1000), outOf(vid(33, false), 1000)
	gop := func() {
		c.add(b, key)
		for range 59 {
			c.add(b, frame)
		}
	}
	gop()
	if n := testing.AllocsPerRun(100, gop); n != 0 {
		t.Errorf("%.1f allocations per GOP, want 0", n)
	}
}

// tcpFeed publishes live/KEY over TCP: a sequence header, then frames
// whose number is their timestamp / 33, a keyframe every 25.
type tcpFeed struct {
	t    *testing.T
	pub  *testClient
	msid uint32
	next int
}

func startTCPFeed(t *testing.T, addr, key string) *tcpFeed {
	f := &tcpFeed{t: t, pub: dialClient(t, addr)}
	var code string
	f.msid, code = f.pub.publish("live", key)
	if code != "NetStream.Publish.Start" {
		t.Fatal(code)
	}
	if err := f.pub.sendMedia(f.msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *tcpFeed) send(n int) {
	f.t.Helper()
	for range n {
		i := f.next
		if err := f.pub.sendMedia(f.msid, chunk.TypeVideo, uint32(i*33), videoFrame(i%25 == 0, 3000+i, i)); err != nil {
			f.t.Fatal(err)
		}
		f.next++
	}
}

// expectFrames reads a player's video after its sequence header: frames
// from to to-1.
func expectFrames(t *testing.T, pl *testClient, from, to int) {
	t.Helper()
	if m := nextVideo(t, pl); !flv.IsSequenceHeader(m.TypeID, m.Payload) {
		t.Fatalf("first video message (ts %d) is not the sequence header", m.Timestamp)
	}
	for i := from; i < to; i++ {
		m := nextVideo(t, pl)
		if m.Timestamp != uint32(i*33) || flv.IsVideoKeyframe(m.Payload) != (i%25 == 0) {
			t.Fatalf("video message %d: ts %d keyframe=%v, want frame %d (ts %d)", i-from, m.Timestamp, flv.IsVideoKeyframe(m.Payload), i, i*33)
		}
	}
}

func waitRelayed(t *testing.T, srv *Server, n uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d frames relayed", n), func() bool {
		l := srv.Registry().List()
		return len(l) == 1 && l[0].Stats.VideoFrames == n
	})
}

// TestGOPCacheOverTCP: a player that joins a live stream mid-GOP receives
// the sequence header, the GOP from its keyframe, then the live frames.
func TestGOPCacheOverTCP(t *testing.T) {
	srv, addr, _ := startServer(t, Config{GOPCacheBytes: 1 << 20})
	f := startTCPFeed(t, addr, "tcp")
	f.send(40)
	waitRelayed(t, srv, 40)
	// Frames 25..39, each its payload and a slot.
	want := int64(0)
	for i := 25; i < 40; i++ {
		want += int64(len(videoFrame(false, 3000+i, i))) + gopEntryCost
	}
	if got := srv.Registry().List()[0].Stats.GOPCacheBytes; got != want {
		t.Errorf("stream stats: GOP cache of %d bytes, want %d", got, want)
	}
	if got := srv.Registry().GOPCacheBytes(); got != want {
		t.Errorf("registry: GOP caches of %d bytes, want %d", got, want)
	}
	pl := dialClient(t, addr)
	pl.play("live", "tcp")
	f.send(15)
	expectFrames(t, pl, 25, 55)
}

// TestGOPCacheNotAcrossUpgrade: the cache stays in the old process; after
// an upgrade a joining player waits for the next keyframe, then the cache
// fills again.
func TestGOPCacheNotAcrossUpgrade(t *testing.T) {
	cfg := Config{GOPCacheBytes: 1 << 20}
	srv, addr, _ := startServer(t, cfg)
	f := startTCPFeed(t, addr, "up")
	f.send(30)
	waitRelayed(t, srv, 30)
	to := upgradeInProcess(t, srv, cfg)
	if n := srv.Registry().GOPCacheBytes(); n != 0 {
		t.Errorf("the old process still holds %d bytes of GOP cache", n)
	}
	if n := to.Registry().GOPCacheBytes(); n != 0 {
		t.Errorf("the new process starts with %d bytes of GOP cache", n)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = to.Serve(ln) }()
	pl := dialClient(t, ln.Addr().String())
	pl.play("live", "up")
	f.send(30) // frames 30..59: the keyframe at 50 is the first it gets
	expectFrames(t, pl, 50, 60)
	waitRelayed(t, to, 60)
	late := dialClient(t, ln.Addr().String())
	late.play("live", "up")
	f.send(1)
	expectFrames(t, late, 50, 61)
}

func nextVideo(t *testing.T, c *testClient) chunk.Message {
	t.Helper()
	for {
		m, err := c.next()
		if err != nil {
			t.Fatalf("player: %v", err)
		}
		if m.TypeID == chunk.TypeVideo {
			return m
		}
	}
}
