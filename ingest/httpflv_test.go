package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
	"github.com/mediad/mediad/ingest/flv"
	"github.com/mediad/mediad/state"
)

// serveFLVHTTP puts srv's HTTP-FLV output on a real HTTP server on
// 127.0.0.1 and returns its address. The routing is the test's; the media
// server's is its own.
func serveFLVHTTP(t *testing.T, srv *Server) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app, file, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		key, isFLV := strings.CutSuffix(file, ".flv")
		if !ok || !isFLV {
			http.NotFound(w, r)
			return
		}
		srv.ServeFLV(w, r, app, key)
	}))
	t.Cleanup(hs.Close)
	return hs.Listener.Addr().String()
}

// flvBody reads an HTTP-FLV response strictly: every PreviousTagSize must
// match its tag, so a tag cut, repeated or spliced shows as an error.
type flvBody struct {
	t            testing.TB
	conn         net.Conn
	resp         *http.Response
	r            *bufio.Reader
	audio, video bool // the FLV header's flags
}

// requestFLV sends GET path on a fresh connection and returns the
// connection and the parsed response header.
func requestFLV(t testing.TB, addr, path string, dial func() (net.Conn, error)) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	if dial == nil {
		dial = func() (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return c, br, resp
}

// openFLV requests app/key.flv and reads the response up to the first tag.
func openFLV(t testing.TB, addr, app, key string) *flvBody {
	t.Helper()
	return openFLVWith(t, addr, app, key, nil)
}

func openFLVWith(t testing.TB, addr, app, key string, dial func() (net.Conn, error)) *flvBody {
	t.Helper()
	c, br, resp := requestFLV(t, addr, "/"+app+"/"+key+".flv", dial)
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" {
		t.Fatalf("GET %s/%s.flv: %s %s", app, key, resp.Proto, resp.Status)
	}
	// ReadResponse takes "Connection: close" out of the header into Close.
	if !resp.Close {
		t.Errorf("response without Connection: close")
	}
	for k, want := range map[string]string{
		"Content-Type": "video/x-flv", "Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("response header %s: %q, want %q", k, got, want)
		}
	}
	if resp.ContentLength != -1 || len(resp.TransferEncoding) != 0 {
		t.Errorf("response has a length (%d) or transfer encoding %v; want a body until close", resp.ContentLength, resp.TransferEncoding)
	}
	// The body is read off the connection itself: nothing in the response
	// frames it.
	b := &flvBody{t: t, conn: c, resp: resp, r: br}
	var h [flv.FileHeaderSize + 4]byte
	if err := b.readFull(h[:]); err != nil {
		t.Fatalf("FLV header: %v", err)
	}
	if string(h[:4]) != "FLV\x01" || h[4]&^0x05 != 0 || binary.BigEndian.Uint32(h[5:9]) != 9 || binary.BigEndian.Uint32(h[9:]) != 0 {
		t.Fatalf("FLV header % x", h)
	}
	b.audio, b.video = h[4]&0x04 != 0, h[4]&0x01 != 0
	return b
}

func (b *flvBody) readFull(p []byte) error {
	b.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadFull(b.r, p)
	return err
}

// next returns the next tag, io.EOF at a clean end between tags, and an
// error for anything else.
func (b *flvBody) next() (flv.Tag, error) {
	var h [flv.TagHeaderSize]byte
	b.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadFull(b.r, h[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return flv.Tag{}, io.EOF
		}
		return flv.Tag{}, fmt.Errorf("tag header: %w", err)
	}
	size := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	t := flv.Tag{Type: h[0], Timestamp: uint32(h[7])<<24 | uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6]), Data: make([]byte, size)}
	if h[8] != 0 || h[9] != 0 || h[10] != 0 {
		return t, fmt.Errorf("tag stream id % x", h[8:])
	}
	var pts [4]byte
	if err := b.readFull(t.Data); err != nil {
		return t, fmt.Errorf("tag data: %w", err)
	}
	if err := b.readFull(pts[:]); err != nil {
		return t, fmt.Errorf("PreviousTagSize: %w", err)
	}
	if got := binary.BigEndian.Uint32(pts[:]); got != uint32(flv.TagHeaderSize+size) {
		return t, fmt.Errorf("PreviousTagSize %d after a %d-byte tag", got, flv.TagHeaderSize+size)
	}
	return t, nil
}

// all reads tags to the end of the body, which must be clean.
func (b *flvBody) all() []flv.Tag {
	b.t.Helper()
	var tags []flv.Tag
	for {
		tag, err := b.next()
		if errors.Is(err, io.EOF) {
			return tags
		}
		if err != nil {
			b.t.Fatalf("after %d tags: %v", len(tags), err)
		}
		tags = append(tags, tag)
	}
}

func (c *testClient) setDataFrame(msid uint32, props amf0.Object) []byte {
	c.t.Helper()
	p, err := amf0.AppendAll(nil, "@setDataFrame", "onMetaData", props)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.send(chunk.Message{CSID: 5, TypeID: chunk.TypeDataAMF0, StreamID: msid, Payload: p}); err != nil {
		c.t.Fatal(err)
	}
	want, _ := amf0.AppendAll(nil, "onMetaData", props)
	return want
}

// flvPlayers is how many HTTP-FLV viewers app/key has, and all its players.
func flvPlayers(srv *Server, key string) (flv, all int) {
	for _, info := range srv.Registry().List() {
		if info.Key == key {
			return info.FLVPlayers, info.Players
		}
	}
	return 0, 0
}

func TestFLVNotLive(t *testing.T) {
	srv, addr, _ := startServer(t, Config{})
	web := serveFLVHTTP(t, srv)
	// A stream with a player waiting but no publisher is not live either.
	pl := dialClient(t, addr)
	pl.play("live", "waiting")
	for _, key := range []string{"none", "waiting"} {
		resp, err := http.Get("http://" + web + "/live/" + key + ".flv")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(string(body), "live/"+key+" is not live") {
			t.Errorf("GET /live/%s.flv: %s %q %q, want 404 saying it is not live", key, resp.Status, resp.Header.Get("Content-Type"), body)
		}
	}
}

// TestFLVPlayback publishes, joins an HTTP-FLV viewer at a point of the
// broadcast, ends the broadcast, and reads the whole body: header flags,
// metadata, sequence headers, a keyframe first, every frame after it in
// order, then a clean end of file. Nothing RTMP-only is in it.
func TestFLVPlayback(t *testing.T) {
	for _, tc := range []struct {
		name      string
		gopCache  int
		audio     bool // the publisher sends AAC too
		seq       bool // sequence headers before the viewer joins
		join      int  // frames sent before the viewer joins
		wantFirst int  // the first frame it gets
		flagA     bool
		flagV     bool
	}{
		{name: "mid-GOP with the cache", gopCache: 1 << 20, audio: true, seq: true, join: 40, wantFirst: 25, flagA: true, flagV: true},
		{name: "mid-GOP without the cache", audio: true, seq: true, join: 40, wantFirst: 50, flagA: true, flagV: true},
		{name: "at the start", gopCache: 1 << 20, audio: true, seq: true, join: 0, wantFirst: 0, flagA: true, flagV: true},
		{name: "video only", gopCache: 1 << 20, seq: true, join: 30, wantFirst: 25, flagV: true},
		{name: "before any sequence header", gopCache: 1 << 20, audio: true, join: 0, wantFirst: 0, flagA: true, flagV: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr, _ := startServer(t, Config{GOPCacheBytes: tc.gopCache})
			web := serveFLVHTTP(t, srv)
			pub := dialClient(t, addr)
			msid, code := pub.publish("live", "flv")
			if code != "NetStream.Publish.Start" {
				t.Fatal(code)
			}
			meta := pub.setDataFrame(msid, amf0.Object{{Key: "width", Value: 640.0}, {Key: "encoder", Value: "test"}})
			sendSeq := func() {
				if err := pub.sendMedia(msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
					t.Fatal(err)
				}
				if tc.audio {
					if err := pub.sendMedia(msid, chunk.TypeAudio, 0, aacSeqHeader); err != nil {
						t.Fatal(err)
					}
				}
			}
			const frames = 75
			send := func(from, to int) {
				for i := from; i < to; i++ {
					if err := pub.sendMedia(msid, chunk.TypeVideo, uint32(i*33), videoFrame(i%25 == 0, 2000+i, i)); err != nil {
						t.Fatal(err)
					}
					if tc.audio {
						if err := pub.sendMedia(msid, chunk.TypeAudio, uint32(i*33+5), []byte{0xaf, 1, byte(i)}); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if tc.seq {
				sendSeq()
			}
			send(0, tc.join)
			waitFor(t, "the metadata and the frames before the join", func() bool {
				l := srv.Registry().List()
				return len(l) == 1 && l[0].Stats.VideoFrames == uint64(tc.join) && l[0].Stats.Encoder == "test"
			})
			body := openFLV(t, web, "live", "flv")
			if body.audio != tc.flagA || body.video != tc.flagV {
				t.Errorf("FLV header flags audio=%v video=%v, want %v %v", body.audio, body.video, tc.flagA, tc.flagV)
			}
			if n, all := flvPlayers(srv, "flv"); n != 1 || all != 1 {
				t.Errorf("stream info: %d HTTP-FLV viewers of %d players, want 1 of 1", n, all)
			}
			if !tc.seq {
				sendSeq()
			}
			send(tc.join, frames)
			pub.command(msid, "deleteStream", 9.0, nil, float64(msid))
			tags := body.all()

			// Metadata, then the sequence headers, then media.
			want := []flv.Tag{{Type: flv.TagScript, Data: meta}, {Type: flv.TagVideo, Data: avcSeqHeader}}
			if tc.audio {
				want = append(want, flv.Tag{Type: flv.TagAudio, Data: aacSeqHeader})
			}
			if len(tags) < len(want) {
				t.Fatalf("%d tags, want at least %d", len(tags), len(want))
			}
			for i, w := range want {
				if g := tags[i]; g.Type != w.Type || g.Timestamp != 0 || !bytes.Equal(g.Data, w.Data) {
					t.Fatalf("tag %d: type %d ts %d % x, want type %d % x", i, g.Type, g.Timestamp, g.Data, w.Type, w.Data)
				}
			}
			nextV, nextA := tc.wantFirst, tc.wantFirst
			for i, tag := range tags[len(want):] {
				switch tag.Type {
				case flv.TagVideo:
					if i == 0 && !flv.IsVideoKeyframe(tag.Data) {
						t.Fatalf("the first frame (ts %d) is not a keyframe", tag.Timestamp)
					}
					if !bytes.Equal(tag.Data, videoFrame(nextV%25 == 0, 2000+nextV, nextV)) || tag.Timestamp != uint32(nextV*33) {
						t.Fatalf("video tag at ts %d (%d bytes), want frame %d", tag.Timestamp, len(tag.Data), nextV)
					}
					nextV++
				case flv.TagAudio:
					if !tc.audio || tag.Timestamp != uint32(nextA*33+5) || !bytes.Equal(tag.Data, []byte{0xaf, 1, byte(nextA)}) {
						t.Fatalf("audio tag at ts %d % x, want audio frame %d", tag.Timestamp, tag.Data, nextA)
					}
					if nextA >= nextV {
						t.Fatalf("audio frame %d came before video frame %d", nextA, nextA)
					}
					nextA++
				default:
					t.Fatalf("tag %d of type %d after the sequence headers", len(want)+i, tag.Type)
				}
			}
			if nextV != frames || tc.audio && nextA != frames {
				t.Fatalf("body ends after video frame %d and audio frame %d, want %d each", nextV-1, nextA-1, frames-1)
			}
			waitFor(t, "the viewer to leave the stream", func() bool { return len(srv.Registry().List()) == 0 })
		})
	}
}

// flvFeed publishes numbered frames as fast as a 1 ms ticker allows to an
// HTTP-FLV viewer, recording the frames it receives. Reading can be held
// back, to leave bytes in flight and queued when the server parks.
type flvFeed struct {
	t        *testing.T
	pub      *testClient
	msid     uint32
	body     *flvBody
	frameLen int
	sent     atomic.Int64
	stop     chan struct{}
	pubDone  chan error
	hold     sync.Mutex // held while the viewer must not read
	mu       sync.Mutex
	got      []int // frame numbers received, in order
	err      error // how the body ended; io.EOF when cleanly
	bodyDone chan struct{}
}

func startFLVFeed(t *testing.T, srv *Server, addr, web, key string) *flvFeed {
	f := &flvFeed{t: t, stop: make(chan struct{}), pubDone: make(chan error, 1), bodyDone: make(chan struct{}), frameLen: 3000}
	f.pub = dialClient(t, addr)
	var code string
	f.msid, code = f.pub.publish("live", key)
	if code != "NetStream.Publish.Start" {
		t.Fatal(code)
	}
	if err := f.pub.sendMedia(f.msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sequence header", func() bool {
		l := srv.Registry().List()
		return len(l) == 1 && l[0].Stats.VideoBytes > 0
	})
	f.body = openFLV(t, web, "live", key)
	waitFor(t, "the viewer to join", func() bool { n, _ := flvPlayers(srv, key); return n == 1 })
	go func() {
		defer close(f.bodyDone)
		for {
			f.hold.Lock()
			tag, err := f.body.next()
			f.hold.Unlock()
			if err != nil {
				f.mu.Lock()
				f.err = err
				f.mu.Unlock()
				return
			}
			if tag.Type == flv.TagVideo && !flv.IsSequenceHeader(tag.Type, tag.Data) {
				n := int(tag.Timestamp / 10)
				if !bytes.Equal(tag.Data, videoFrame(n%25 == 0, f.frameLen+n%4000, n)) {
					f.mu.Lock()
					f.err = fmt.Errorf("frame %d: payload differs", n)
					f.mu.Unlock()
					return
				}
				f.mu.Lock()
				f.got = append(f.got, n)
				f.mu.Unlock()
			}
		}
	}()
	go func() { f.pubDone <- publishFrames(f.pub, f.msid, f.frameLen, f.stop, &f.sent) }()
	return f
}

func (f *flvFeed) received() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

// finish ends the broadcast and checks that the viewer got every frame
// exactly once, in order, and then a clean end of file.
func (f *flvFeed) finish() int {
	f.t.Helper()
	close(f.stop)
	if err := <-f.pubDone; err != nil {
		f.t.Fatalf("publisher: %v", err)
	}
	sent := int(f.sent.Load())
	f.pub.command(f.msid, "deleteStream", 9.0, nil, float64(f.msid))
	select {
	case <-f.bodyDone:
	case <-time.After(20 * time.Second):
		f.t.Fatalf("the body did not end after the broadcast (%d of %d frames)", f.received(), sent)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !errors.Is(f.err, io.EOF) {
		f.t.Fatalf("the body ended with %v after %d frames", f.err, len(f.got))
	}
	for i, n := range f.got {
		if n != i {
			f.t.Fatalf("viewer frame %d is frame %d: a gap or a duplicate", i, n)
		}
	}
	if len(f.got) != sent {
		f.t.Fatalf("viewer got %d frames, publisher sent %d", len(f.got), sent)
	}
	return sent
}

func TestFLVParkResumeExact(t *testing.T) {
	srv, addr, _ := startServer(t, Config{})
	web := serveFLVHTTP(t, srv)
	f := startFLVFeed(t, srv, addr, web, "rb")
	for i := range 3 {
		target := f.received() + 100
		waitFor(t, "frames", func() bool { return f.received() >= target })
		if i == 2 {
			// With the viewer not reading, a write is in flight and frames
			// are queued when the park comes.
			f.hold.Lock()
			time.Sleep(300 * time.Millisecond)
		}
		parked, err := srv.Park(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[state.Kind]int{}
		for _, it := range parked.Items {
			kinds[it.Envelope.Kind]++
		}
		if kinds[state.KindPublisher] != 1 || kinds[state.KindFLVPlayer] != 1 || len(parked.Items) != 2 {
			t.Fatalf("parked %v, want a publisher and an HTTP-FLV viewer", kinds)
		}
		parked.Resume()
		if i == 2 {
			f.hold.Unlock()
		}
	}
	target := f.received() + 100
	waitFor(t, "frames after rollbacks", func() bool { return f.received() >= target })
	f.finish()
}

// TestFLVUpgradeExact moves a publisher and an HTTP-FLV viewer through five
// in-process upgrades, the viewer once with a write cut short and frames
// queued: the body stays byte-exact.
func TestFLVUpgradeExact(t *testing.T) {
	// Room for what piles up while the viewer is held back, and time.
	cfg := Config{GOPCacheBytes: 1 << 20, PlayerQueueBytes: 64 << 20, WriteTimeout: time.Minute}
	srv, addr, _ := startServer(t, cfg)
	web := serveFLVHTTP(t, srv)
	f := startFLVFeed(t, srv, addr, web, "up")
	cur := srv
	carried := false
	for i := range 5 {
		target := f.received() + 100
		waitFor(t, "frames before the upgrade", func() bool { return f.received() >= target })
		held := i == 2
		if held {
			f.hold.Lock()
			// Fill the socket buffers until the writer waits on the socket
			// and frames queue behind it.
			waitFor(t, "frames queued for the held viewer", func() bool { return queuedFor(cur, "up") > 256<<10 })
		}
		parked, err := cur.Park(context.Background())
		if err != nil {
			t.Fatalf("park: %v", err)
		}
		for _, it := range parked.Items {
			if it.Envelope.Kind != state.KindFLVPlayer {
				continue
			}
			var fp state.FLVPlayer
			if err := state.Decode(it.Envelope, &fp); err != nil {
				t.Fatal(err)
			}
			if fp.App != "live" || fp.Key != "up" || fp.Ending {
				t.Errorf("exported viewer %+v", fp)
			}
			if held {
				carried = len(fp.Out) > 0 && len(fp.Queue) > 0
				t.Logf("held viewer exported with %d bytes unwritten and %d messages queued", len(fp.Out), len(fp.Queue))
			}
		}
		parked.Resume() // Park was only to look; upgrade parks again.
		cur = upgradeInProcess(t, cur, cfg)
		if held {
			f.hold.Unlock()
		}
		if n, _ := flvPlayers(cur, "up"); n != 1 {
			t.Fatalf("after upgrade %d the stream has %d HTTP-FLV viewers", i+1, n)
		}
	}
	if !carried {
		t.Error("the held viewer had no write cut short or nothing queued when parked: the test did not exercise both")
	}
	target := f.received() + 100
	waitFor(t, "frames after the upgrades", func() bool { return f.received() >= target })
	f.finish()
}

// queuedFor is what waits in the queue of app live/key's first player.
func queuedFor(srv *Server, key string) int {
	srv.registry.mu.Lock()
	st := srv.registry.streams[streamName("live", key)]
	srv.registry.mu.Unlock()
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.players) == 0 {
		return 0
	}
	p := st.players[0]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queued
}

// TestFLVRestoreEnding: a viewer whose broadcast ended before it had been
// sent everything moves with its queue, gets the rest from the new process
// and then the end of file.
func TestFLVRestoreEnding(t *testing.T) {
	cfg := Config{PlayerQueueBytes: 64 << 20, WriteTimeout: time.Minute}
	srv, addr, _ := startServer(t, cfg)
	web := serveFLVHTTP(t, srv)
	pub := dialClient(t, addr)
	msid, _ := pub.publish("live", "end")
	if err := pub.sendMedia(msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sequence header", func() bool { return srv.Registry().List()[0].Stats.VideoBytes > 0 })
	body := openFLV(t, web, "live", "end")
	waitFor(t, "the viewer to join", func() bool { n, _ := flvPlayers(srv, "end"); return n == 1 })
	// The viewer does not read yet: most of this stays queued.
	const frames = 400
	for i := range frames {
		if err := pub.sendMedia(msid, chunk.TypeVideo, uint32(i*33), videoFrame(i%25 == 0, 50000, i)); err != nil {
			t.Fatal(err)
		}
	}
	pub.command(msid, "deleteStream", 9.0, nil, float64(msid))
	waitFor(t, "the publisher to leave", func() bool { l := srv.Registry().List(); return len(l) == 1 && !l[0].Live })
	// A look first: the viewer parks ending, with the rest of the
	// broadcast still to write.
	parked, err := srv.Park(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var fp state.FLVPlayer
	for _, it := range parked.Items {
		if it.Envelope.Kind == state.KindFLVPlayer {
			if err := state.Decode(it.Envelope, &fp); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !fp.Ending || len(fp.Out)+len(fp.Queue) == 0 {
		t.Fatalf("exported viewer: ending=%v, %d bytes unwritten, %d messages queued; want it ending with output left", fp.Ending, len(fp.Out), len(fp.Queue))
	}
	parked.Resume()
	to := upgradeInProcess(t, srv, cfg)
	if n, _ := flvPlayers(to, "end"); n != 1 {
		t.Fatalf("the new process has %d HTTP-FLV viewers, want 1", n)
	}
	tags := body.all()
	if len(tags) != 1+frames {
		t.Fatalf("%d tags, want the sequence header and %d frames", len(tags), frames)
	}
	for i, tag := range tags[1:] {
		if tag.Timestamp != uint32(i*33) || !bytes.Equal(tag.Data, videoFrame(i%25 == 0, 50000, i)) {
			t.Fatalf("tag %d: ts %d, want frame %d", i+1, tag.Timestamp, i)
		}
	}
	// The publisher's connection, still open without a stream, moved too.
	waitFor(t, "the viewer to be gone", func() bool { return len(to.Registry().List()) == 0 && to.SessionCount() == 1 })
}

// smallWindowDialer dials with a tiny receive buffer, so that a client
// that never reads fills the server's side soon.
func smallWindowDialer(addr string) func() (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	return func() (net.Conn, error) { return d.Dial("tcp", addr) }
}

// TestFLVBadViewers: a viewer that never reads is skipped ahead and then
// dropped; one that sends garbage after its request is ignored and served.
// The stream and a good viewer notice neither.
func TestFLVBadViewers(t *testing.T) {
	srv, addr, logs := startServer(t, Config{PlayerQueueBytes: 1 << 20, MaxSkips: 2, WriteTimeout: time.Minute})
	web := serveFLVHTTP(t, srv)
	pub := dialClient(t, addr)
	msid, _ := pub.publish("live", "bad")
	if err := pub.sendMedia(msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sequence header", func() bool { return srv.Registry().List()[0].Stats.VideoBytes > 0 })

	stuck := openFLVWith(t, web, "live", "bad", smallWindowDialer(web))
	good := openFLV(t, web, "live", "bad")
	noisy := openFLV(t, web, "live", "bad")
	waitFor(t, "three viewers", func() bool { n, _ := flvPlayers(srv, "bad"); return n == 3 })
	garbage := bytes.Repeat([]byte("GET / HTTP/1.1\r\n\x00\xff"), 64<<10) // 1.1 MiB
	garbageDone := make(chan error, 1)
	go func() {
		_, err := noisy.conn.Write(garbage)
		garbageDone <- err
	}()

	type result struct {
		frames int
		err    error
	}
	read := func(b *flvBody) <-chan result {
		ch := make(chan result, 1)
		go func() {
			next := -1
			for {
				tag, err := b.next()
				if err != nil {
					ch <- result{next, err}
					return
				}
				if tag.Type != flv.TagVideo || flv.IsSequenceHeader(tag.Type, tag.Data) {
					continue
				}
				n := int(tag.Timestamp / 10)
				if next < 0 {
					next = n
				}
				if n != next {
					ch <- result{next, fmt.Errorf("frame %d after frame %d", n, next-1)}
					return
				}
				next++
			}
		}()
		return ch
	}
	goodRes, noisyRes := read(good), read(noisy)

	const frames = 1500
	for i := range frames {
		if err := pub.sendMedia(msid, chunk.TypeVideo, uint32(i*10), videoFrame(i%25 == 0, 16<<10, i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	waitFor(t, "the stuck viewer to be dropped", func() bool { n, _ := flvPlayers(srv, "bad"); return n == 2 })
	if !strings.Contains(logs.String(), "skipped ahead") || !strings.Contains(logs.String(), "player dropped") {
		t.Errorf("no skip-ahead and drop logged for the stuck viewer")
	}
	if err := <-garbageDone; err != nil {
		t.Errorf("sending garbage: %v", err)
	}
	pub.command(msid, "deleteStream", 9.0, nil, float64(msid))
	for name, ch := range map[string]<-chan result{"good": goodRes, "noisy": noisyRes} {
		r := <-ch
		if !errors.Is(r.err, io.EOF) || r.frames != frames {
			t.Errorf("%s viewer: frames up to %d, then %v; want all %d and a clean end", name, r.frames-1, r.err, frames)
		}
	}
	_ = stuck
}

// TestFLVShutdown: a graceful stop writes out what is queued for a viewer
// and ends its file; the viewer leaving first is noticed at once.
func TestFLVShutdown(t *testing.T) {
	srv, addr, _ := startServer(t, Config{})
	web := serveFLVHTTP(t, srv)
	pub := dialClient(t, addr)
	msid, _ := pub.publish("live", "bye")
	if err := pub.sendMedia(msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sequence header", func() bool { return srv.Registry().List()[0].Stats.VideoBytes > 0 })
	leaver := openFLV(t, web, "live", "bye")
	body := openFLV(t, web, "live", "bye")
	waitFor(t, "two viewers", func() bool { n, _ := flvPlayers(srv, "bye"); return n == 2 })
	leaver.conn.Close()
	waitFor(t, "the viewer that left to be gone", func() bool { n, _ := flvPlayers(srv, "bye"); return n == 1 && srv.SessionCount() == 2 })

	const frames = 60
	for i := range frames {
		if err := pub.sendMedia(msid, chunk.TypeVideo, uint32(i*33), videoFrame(i%30 == 0, 20000, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every frame read", func() bool { return srv.Registry().List()[0].Stats.VideoFrames == frames })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	tags := body.all()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if len(tags) != 1+frames {
		t.Fatalf("%d tags before the end of file, want the sequence header and %d frames", len(tags), frames)
	}
	// A new viewer is turned away.
	resp, err := http.Get("http://" + web + "/live/bye.flv")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET after Shutdown: %s, want 503", resp.Status)
	}
}
