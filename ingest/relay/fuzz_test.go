package relay

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
)

// FuzzDialResponses plays arbitrary bytes as everything a server sends
// after a valid handshake, over a pipe, and requires the exchange to end
// without panicking: with a Conn in a consistent state, or an error that
// names the server.
func FuzzDialResponses(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	ep := mustEndpoint(f, "rtmp://fuzz.invalid/live/key?token=x")
	f.Fuzz(func(t *testing.T, data []byte) {
		cli, srv := net.Pipe()
		served := make(chan struct{})
		go func() {
			defer close(served)
			defer srv.Close()
			if serverHandshake(srv) != nil {
				return
			}
			// A pipe is synchronous: what the client writes must be
			// read while the script is written.
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				_, _ = io.Copy(io.Discard, srv)
			}()
			_, _ = srv.Write(data)
			srv.Close()
			<-drained
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := establish(ctx, cli, ep, Options{})
		if err == nil {
			if conn.StreamID == 0 || conn.Reader.BytesRead() > uint64(len(data)) || conn.LastAck > conn.Reader.BytesRead() {
				t.Errorf("conn: stream %d, read %d of %d bytes, acknowledged %d", conn.StreamID, conn.Reader.BytesRead(), len(data), conn.LastAck)
			}
			conn.Close()
		} else if !strings.HasPrefix(err.Error(), "relay: rtmp://fuzz.invalid/live: ") {
			t.Errorf("error %q does not name the server", err)
		}
		cli.Close()
		<-served
	})
}

// fuzzSeeds are whole server sides: the kinds of exchange the unit tests
// use, and a few framings the chunk layer treats specially.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	add := func(s *script) { seeds = append(seeds, s.bytes()) }
	add(newScript(tb).accept(1))
	// nginx-rtmp's way: onBWDone, onFCPublish, a ping.
	s := newScript(tb).connected()
	s.cmd(0, "onBWDone", 0.0, nil)
	s.userControl(ucPingRequest, 99)
	s.cmd(0, "onFCPublish", 0.0, nil, statusObj("status", codePublishStart, "FCPublish"))
	add(s.created(1).published(1))
	// A window small enough to acknowledge every read.
	add(newScript(tb).u32(chunk.TypeWindowAckSize, 1).accept(3))
	// Every byte in its own chunk, then a huge one.
	add(newScript(tb).chunkSize(1).accept(1))
	add(newScript(tb).chunkSize(0x7fffffff).accept(1))
	// Refusals.
	add(newScript(tb).cmd(0, "_error", 1.0, nil, statusObj("error", "NetConnection.Connect.Rejected", "no")))
	add(newScript(tb).connected().created(1).cmd(1, "onStatus", 0.0, nil, statusObj("error", "NetStream.Publish.BadName", "busy")))
	// An AMF3 command, an extended timestamp, and a message cut short.
	amf3, err := amf0.AppendAll([]byte{0}, "onBWDone", 0.0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	s = newScript(tb)
	s.msg(csidCommand, chunk.TypeCommandAMF3, 0, amf3)
	s.b = s.w.Append(s.b, &chunk.Message{CSID: 3, Timestamp: 0x01000000, TypeID: chunk.TypeDataAMF0, Payload: make([]byte, 300)})
	add(s.accept(1))
	whole := newScript(tb).accept(1).bytes()
	seeds = append(seeds, whole[:len(whole)-7])
	// A chunk stream id of each header size.
	for _, csid := range []uint32{3, 64, 320} {
		s := newScript(tb)
		s.b = s.w.Append(s.b, &chunk.Message{CSID: csid, TypeID: chunk.TypeAudio, Payload: []byte{1, 2, 3}})
		add(s.accept(1))
	}
	return seeds
}
