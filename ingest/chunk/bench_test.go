package chunk

import (
	"encoding/binary"
	"runtime"
	"testing"
)

// mediaStream is what a publisher sends for the given seconds: 30 fps video
// of about 3 KB a frame with a 40 KB keyframe every two seconds, 200-byte
// audio frames every 23 ms, at chunk size 4096. It also returns the message
// count, Set Chunk Size included.
func mediaStream(seconds int) ([]byte, int) {
	w := NewWriter()
	setSize := msg(2, 0, TypeSetChunkSize, 0, binary.BigEndian.AppendUint32(nil, 4096))
	out := w.Append(nil, &setSize)
	if err := w.SetChunkSize(4096); err != nil {
		panic(err)
	}
	msgs := 1
	keyframe, frame, audio := make([]byte, 40000), make([]byte, 3500), make([]byte, 200)
	var audioTS uint32
	for f := range 30 * seconds {
		videoTS := uint32(f) * 1000 / 30
		for ; audioTS <= videoTS; audioTS += 23 {
			a := msg(4, audioTS, TypeAudio, 1, audio)
			out = w.Append(out, &a)
			msgs++
		}
		v := msg(6, videoTS, TypeVideo, 1, frame[:2500+f*37%1000])
		if f%60 == 0 {
			v.Payload = keyframe
		}
		out = w.Append(out, &v)
		msgs++
	}
	return out, msgs
}

// BenchmarkReaderFeed reads ten seconds of media in 16 KiB reads, as from a
// socket. Expect one allocation per message: its payload.
func BenchmarkReaderFeed(b *testing.B) {
	in, msgs := mediaStream(10)
	r := NewReader(0)
	fn := func(*Message) error { return nil }
	// Chunk streams are allocated once per connection, not per message.
	if err := r.Feed(in, fn); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		for p := in; len(p) > 0; {
			n := min(len(p), 16<<10)
			if err := r.Feed(p[:n], fn); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(msgs), "msgs/op")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*msgs), "allocs/msg")
}

// BenchmarkWriterBuffers frames a video and an audio message for a vectored
// write into reused slices: no allocation.
func BenchmarkWriterBuffers(b *testing.B) {
	w := NewWriter()
	if err := w.SetChunkSize(4096); err != nil {
		b.Fatal(err)
	}
	video := msg(6, 1000, TypeVideo, 1, make([]byte, 3000))
	audio := msg(4, 1000, TypeAudio, 1, make([]byte, 200))
	bufs := make([][]byte, 0, 8)
	scratch := make([]byte, 0, w.HeaderSpace(len(video.Payload))+w.HeaderSpace(len(audio.Payload)))
	b.SetBytes(int64(len(video.Payload) + len(audio.Payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		v, s := w.Buffers(bufs[:0], scratch[:0], &video)
		bufs, scratch = w.Buffers(v, s, &audio)
	}
}
