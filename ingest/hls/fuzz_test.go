package hls

import (
	"testing"
	"time"
)

// FuzzWrite feeds a muxer publisher bytes it cannot trust: sequence headers
// and frames of any shape must be refused or packaged, never panic, and
// never leave the index inconsistent with the files.
func FuzzWrite(f *testing.F) {
	msgs := captureMessages(f)
	for _, x := range msgs[:8] {
		f.Add(x.typ == typeVideo, x.ts, x.payload)
	}
	f.Add(true, uint32(0), []byte{0x1c, 0, 0, 0, 0})                        // legacy HEVC id: unsupported
	f.Add(true, uint32(0), []byte{0x90, 'h', 'v', 'c', '1', 1, 0, 0})       // enhanced HEVC sequence start
	f.Add(true, uint32(0), []byte{0x90, 'a', 'v', '0', '1', 0x81, 0, 0, 0}) // enhanced AV1 sequence start
	f.Add(false, uint32(0), []byte{0xaf, 0, 0x12})
	f.Fuzz(func(t *testing.T, video bool, ts uint32, payload []byte) {
		m, err := New(Config{}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		// A valid stream first, so that the fuzzed message lands in a
		// muxer with segments open.
		for _, x := range msgs[:60] {
			m.Write(x.typ, x.ts, x.payload, time.Time{})
		}
		typ := uint8(typeAudio)
		if video {
			typ = typeVideo
		}
		m.Write(typ, ts, payload, time.Time{})
		for _, x := range msgs[60:90] {
			m.Write(x.typ, x.ts, x.payload, time.Time{})
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range m.st.Segments {
			var off int64
			for _, p := range s.Parts {
				if p.Offset != off || p.Size <= 0 || p.DurationMS < 0 {
					t.Fatalf("segment %d: parts %+v", s.MSN, s.Parts)
				}
				off += p.Size
			}
		}
	})
}
