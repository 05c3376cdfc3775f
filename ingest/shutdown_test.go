package ingest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/chunk"
)

// TestShutdownGraceful: a graceful stop finalises the recording with every
// frame, tells the player the stream ended after all its frames, and
// refuses new connections.
func TestShutdownGraceful(t *testing.T) {
	dir := t.TempDir()
	srv, addr, _ := startServer(t, Config{RecordDir: dir})
	pl := dialClient(t, addr)
	pl.play("live", "bye")
	pub := dialClient(t, addr)
	msid, _ := pub.publish("live", "bye")
	const frames = 60
	for i := range frames {
		if err := pub.sendMedia(msid, chunk.TypeVideo, uint32(i*33), videoFrame(i%30 == 0, 20000, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every frame read by the server", func() bool {
		l := srv.Registry().List()
		return len(l) == 1 && l[0].Stats.VideoFrames == frames
	})

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()

	got, told := 0, false
	for {
		m, err := pl.next()
		if err != nil {
			break
		}
		switch m.TypeID {
		case chunk.TypeVideo:
			if told {
				t.Fatal("a frame after the end of the stream")
			}
			got++
		case chunk.TypeCommandAMF0:
			vals, _ := amf0.DecodeAll(m.Payload)
			if obj, ok := vals[len(vals)-1].(amf0.Object); ok {
				if code, _ := obj.GetString("code"); code == "NetStream.Play.UnpublishNotify" {
					told = true
				}
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !told || got != frames {
		t.Fatalf("player got %d of %d frames, told the stream ended: %v", got, frames, told)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("a connection was accepted after Shutdown")
	}
	n := len(recordingTags(t, dir, "live", "bye"))
	if n != frames {
		t.Fatalf("recording holds %d tags, want %d", n, frames)
	}
}
