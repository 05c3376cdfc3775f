package ingest

import (
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/chunk"
)

// BenchmarkIngestLoopback measures one publisher pushing over loopback TCP
// into a real server: handshake and connect done, then b.N media messages
// (a 2 Mbit/s-like mix: one 8 KB video frame per 30 fps tick with a 40 KB
// keyframe every 60, and AAC frames of 370 bytes) framed in 4096-byte
// chunks. allocs/op is per message, for the whole process — client and
// server — since both run here. The gop variants keep each GOP in the
// stream's cache, as a server with --gop-cache-bytes does.
func BenchmarkIngestLoopback(b *testing.B) {
	for _, bc := range []struct {
		name   string
		record bool
		gop    int
	}{{"record=off", false, 0}, {"record=on", true, 0}, {"record=off,gop=4MiB", false, 4 << 20}, {"record=on,gop=4MiB", true, 4 << 20}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := Config{GOPCacheBytes: bc.gop}
			if bc.record {
				cfg.RecordDir = b.TempDir()
			}
			srv, addr, _ := startServer(b, cfg)
			c := dialClient(b, addr)
			msid, code := c.publish("live", "bench")
			if code != "NetStream.Publish.Start" {
				b.Fatal(code)
			}
			var cs [4]byte
			putU32(cs[:], 4096)
			if err := c.send(chunk.Message{CSID: 2, TypeID: chunk.TypeSetChunkSize, Payload: cs[:]}); err != nil {
				b.Fatal(err)
			}
			c.w.SetChunkSize(4096)
			if err := c.sendMedia(msid, chunk.TypeVideo, 0, avcSeqHeader); err != nil {
				b.Fatal(err)
			}
			// One second of media, framed once, sent repeatedly.
			var blob []byte
			var msgs int
			for i := range 30 {
				size := 8000
				if i == 0 {
					size = 40000
				}
				blob = c.w.Append(blob, &chunk.Message{CSID: 6, TypeID: chunk.TypeVideo, StreamID: msid, Timestamp: uint32(i * 33), Payload: videoFrame(i == 0, size, i)})
				msgs++
				if i%2 == 0 || i%3 == 0 {
					audio := make([]byte, 370)
					audio[0], audio[1] = 0xaf, 1
					blob = c.w.Append(blob, &chunk.Message{CSID: 4, TypeID: chunk.TypeAudio, StreamID: msid, Timestamp: uint32(i * 33), Payload: audio})
					msgs++
				}
			}
			b.SetBytes(int64(len(blob) / msgs))
			b.ReportAllocs()
			b.ResetTimer()
			rounds := (b.N + msgs - 1) / msgs
			for range rounds {
				if _, err := c.conn.Write(blob); err != nil {
					b.Fatal(err)
				}
			}
			want := uint64(rounds * msgs)
			deadline := time.Now().Add(time.Minute)
			for {
				l := srv.Registry().List()
				if len(l) == 1 && l[0].Stats.VideoFrames+l[0].Stats.AudioFrames >= want {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("server took more than a minute to read what was sent")
				}
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
		})
	}
}
