package hls

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
)

// mediacommonFragment is the same part through mediacommon's marshaller,
// which wrote every part before appendFragment.
func mediacommonFragment(t testing.TB, seq uint32, tracks []fragTrack) []byte {
	part := fmp4.Part{SequenceNumber: seq}
	for _, tr := range tracks {
		pt := &fmp4.PartTrack{ID: int(tr.id), BaseTime: tr.baseTime}
		for _, s := range tr.samples {
			pt.Samples = append(pt.Samples, &fmp4.Sample{Duration: s.duration, PTSOffset: s.ptsOffset, IsNonSyncSample: s.nonSync, Payload: s.data})
		}
		part.Tracks = append(part.Tracks, pt)
	}
	var buf seekablebuffer.Buffer
	if err := part.Marshal(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFragmentMatchesMediacommon(t *testing.T) {
	frame := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	cases := []struct {
		name   string
		seq    uint32
		tracks []fragTrack
	}{
		{"video keyframe alone", 1, []fragTrack{
			{id: 1, baseTime: 0, samples: []fragSample{{duration: 33, data: frame(900, 1)}}},
		}},
		{"video with B-frames, then audio", 7, []fragTrack{
			{id: 1, baseTime: 123456, samples: []fragSample{
				{duration: 33, ptsOffset: 66, data: frame(5000, 2)},
				{duration: 33, ptsOffset: -33, nonSync: true, data: frame(700, 3)},
				{duration: 34, nonSync: true, data: frame(650, 4)},
			}},
			{id: 2, baseTime: 123400, samples: []fragSample{
				{duration: 23, data: frame(180, 5)}, {duration: 23, data: frame(190, 6)},
			}},
		}},
		{"audio only", 1 << 31, []fragTrack{
			{id: 2, baseTime: 1 << 40, samples: []fragSample{{duration: 21, data: frame(300, 7)}, {duration: 21, data: nil}}},
		}},
		{"non-sync without offsets", 3, []fragTrack{
			{id: 1, baseTime: 99, samples: []fragSample{{duration: 40, nonSync: true, data: frame(10, 8)}}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := mediacommonFragment(t, c.seq, c.tracks)
			got := appendFragment(nil, c.seq, c.tracks)
			if !bytes.Equal(got, want) {
				t.Fatalf("%d bytes, mediacommon wrote %d:\n got  %x\n want %x", len(got), len(want), got[:min(len(got), 160)], want[:min(len(want), 160)])
			}
			if cap(got) != len(got) {
				t.Errorf("buffer of %d for %d bytes: the size was not computed exactly", cap(got), len(got))
			}
			// Appending keeps what was there.
			prefix := []byte("prefix")
			if got := appendFragment(prefix, c.seq, c.tracks); !bytes.Equal(got[:6], prefix) || !bytes.Equal(got[6:], want) {
				t.Fatal("appending to a prefix changed the bytes")
			}
		})
	}
}

// TestFragmentMatchesMediacommonRandom compares random parts: any number of
// samples, either track order, offsets of both signs, empty samples.
func TestFragmentMatchesMediacommonRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		tracks := make([]fragTrack, 1+rng.IntN(2))
		for j := range tracks {
			tracks[j] = fragTrack{id: uint32(1 + rng.IntN(3)), baseTime: rng.Uint64() >> rng.IntN(64)}
			for range rng.IntN(12) {
				s := fragSample{duration: rng.Uint32() >> rng.IntN(32), nonSync: rng.IntN(3) == 0, data: make([]byte, rng.IntN(2000))}
				if rng.IntN(3) == 0 {
					s.ptsOffset = int32(rng.Uint32())
				}
				tracks[j].samples = append(tracks[j].samples, s)
			}
		}
		seq := rng.Uint32()
		want := mediacommonFragment(t, seq, tracks)
		if got := appendFragment(nil, seq, tracks); !bytes.Equal(got, want) {
			t.Fatalf("case %d (%+v): %d bytes, mediacommon wrote %d", i, tracks, len(got), len(want))
		}
	}
}

// BenchmarkFragment writes a 200 ms part of 30 fps video and 43 fps AAC at
// 500 kbit/s, by hand and through mediacommon.
func BenchmarkFragment(b *testing.B) {
	tracks := []fragTrack{{id: 1, baseTime: 1000}, {id: 2, baseTime: 990}}
	for i := range 6 {
		tracks[0].samples = append(tracks[0].samples, fragSample{duration: 33, ptsOffset: 33, nonSync: i > 0, data: make([]byte, 1800)})
	}
	for range 9 {
		tracks[1].samples = append(tracks[1].samples, fragSample{duration: 23, data: make([]byte, 190)})
	}
	for _, impl := range []string{"hand", "mediacommon"} {
		b.Run(fmt.Sprintf("impl=%s", impl), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if impl == "hand" {
					_ = appendFragment(nil, 5, tracks)
				} else {
					_ = mediacommonFragment(b, 5, tracks)
				}
			}
		})
	}
}
