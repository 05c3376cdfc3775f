package migrate

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/mediad/mediad/state"
)

// goldenV4 are the released version-4 blobs: the v3 sessions and process,
// whose payloads version 4 left as they were, a publisher whose stream
// carries its LL-HLS muxer (goldenHLS) and an HTTP-FLV viewer
// (goldenFLVPlayer).
var goldenV4 = map[string]string{
	"conn-connected.msgpack":        "07ceb84367b4002f80b57e116fd0a9db3ee07fd33f1ed43f13cd49ac05725956",
	"conn-handshake.msgpack":        "348fb137095c86e5f3e859fd394f636a5a4c00efbdb4eb0d82e53f3ca81d0b54",
	"flv-player.msgpack":            "c5809306801946a8adc4f0650b84274efd7eba762f771969c68b472c5ccaae0d",
	"player.msgpack":                "549a2c1d2447973f7f9624d5efc22550149076f0baafb6fbfdcb386c588787fe",
	"process.msgpack":               "536213fa88118dda63a35163c35f7bb1ff43c2e836881282424015249abc2b39",
	"publisher-hls.msgpack":         "36ba9eefc0d5c5797d0db46054e6cee45a8f6c5b95936f52165f8cbb0900ac11",
	"publisher-norecording.msgpack": "9c3e024a601a2b515f46e924165083d4fe24e1b28a763770ec2e4499b96c6eab",
	"publisher.msgpack":             "18eda03d450234797d9d941bb772e4272323be34feecd1f29c35f4241bf10526",
}

// goldenHLS is the muxer in testdata/state/v4/publisher-hls.msgpack: a
// stream 49.7 days in (its video clock has wrapped once), segment 2000 open
// with two parts, two frames pending, one segment out of the window and
// waiting for its file to go, the codecs changed once (init 2).
func goldenHLS() *state.HLS {
	part := func(off, size, d int64, ind bool) state.HLSPart {
		return state.HLSPart{Offset: off, Size: size, DurationMS: d, Independent: ind}
	}
	h := &state.HLS{
		Dir: "/run/mediad/mediad-hls-123456/live/cam1", Init: 2, NextSeq: 10005,
		Removed: 1992, Gone: []state.HLSGone{{MSN: 1992, Expiry: 1795000040000000000, Parts: []state.HLSPart{part(0, 11000, 200, true), part(11000, 9000, 180, false)}}},
		Pending: []state.HLSSample{
			{Track: 0, DTS: 1<<32 + 5000, CTS: 66, Key: false, Size: 4100},
			{Track: 1, DTS: 1<<32 + 4990, Size: 371},
		},
		Tracks: [2]state.HLSTrack{
			{Seen: true, LastTS: 5000, Epoch: 1, LastDTS: 1<<32 + 5000},
			{Seen: true, LastTS: 4990, Epoch: 1, LastDTS: 1<<32 + 4990},
		},
		PartStart: 1<<32 + 4800,
	}
	for msn := uint64(1993); msn <= 2000; msn++ {
		s := state.HLSSegment{MSN: msn, Start: 1795000000000000000 + int64(msn-1993)*1000000000, Init: 2, Closed: msn < 2000,
			Discontinuity: msn == 1993}
		n := 5
		if msn == 2000 {
			n = 2
		}
		var off int64
		for i := 0; i < n; i++ {
			s.Parts = append(s.Parts, part(off, 12000+int64(i), 200, i == 0))
			off += 12000 + int64(i)
		}
		h.Segments = append(h.Segments, s)
	}
	return h
}

// goldenFLVPlayer is testdata/state/v4/flv-player.msgpack: a viewer with
// the tail of a tag cut short and three messages queued.
func goldenFLVPlayer() state.FLVPlayer {
	return state.FLVPlayer{
		ID: 11, Peer: "203.0.113.7:52100", App: "live", Key: "cam1",
		Out: []byte{0, 0, 0, 4, 0xaa},
		Queue: []state.QueuedMessage{
			{Type: 9, Kind: 0, Key: true, TS: 0xFFFFFF + 100, Payload: []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88}},
			{Type: 8, Kind: 0, TS: 0xFFFFFF + 110, Payload: []byte{0xaf, 1, 0x21}},
			{Type: 18, Kind: 1, Payload: []byte{2, 0, 10, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a'}},
		},
		Skips: 2,
	}
}

func TestGoldenV4HLSAndFLV(t *testing.T) {
	env := readGolden(t, "v4", "publisher-hls.msgpack", goldenV4)
	env, err := Convert(env, state.Version)
	if err != nil {
		t.Fatal(err)
	}
	var pub state.Publisher
	if err := state.Decode(env, &pub); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pub.Stream.HLS, goldenHLS()) {
		t.Errorf("hls: %+v", pub.Stream.HLS)
	}
	// Down to v3 drops the muxer and nothing else: what is left is the
	// released v3 publisher.
	down, err := Convert(env, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := decodeMap(down.Payload)
	want, _ := decodeMap(readGolden(t, "v3", "publisher.msgpack", goldenV3).Payload)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v4 publisher with HLS down to v3:\n got %v\nwant %v", got, want)
	}

	fe := readGolden(t, "v4", "flv-player.msgpack", goldenV4)
	cur, err := Convert(fe, state.Version)
	if err != nil {
		t.Fatal(err)
	}
	var fp state.FLVPlayer
	if err := state.Decode(cur, &fp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fp, goldenFLVPlayer()) {
		t.Errorf("flv player: %+v", fp)
	}
	for to := Oldest; to < 4; to++ {
		if _, err := Convert(fe, to); err == nil {
			t.Errorf("an HTTP-FLV viewer converted to v%d, which has no form of it", to)
		}
	}
}

// Version 4 changed no existing payload: its blobs for the v3 kinds carry
// the v3 payloads byte for byte.
func TestGoldenV4KeepsV3Payloads(t *testing.T) {
	for name := range goldenV3 {
		v4 := readGolden(t, "v4", name, goldenV4)
		v3 := readGolden(t, "v3", name, goldenV3)
		if v4.Kind != v3.Kind || !bytes.Equal(v4.Payload, v3.Payload) {
			t.Errorf("%s: v4 %s payload differs from v3 %s", name, v4.Kind, v3.Kind)
		}
		down, err := Convert(v4, 3)
		if err != nil {
			t.Fatalf("%s: down to v3: %v", name, err)
		}
		got, _ := decodeMap(down.Payload)
		want, _ := decodeMap(v3.Payload)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: v4 down to v3 differs from the released v3 blob", name)
		}
	}
}
