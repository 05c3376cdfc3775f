package state

import (
	"bytes"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The values below are shaped like what ingest's export hands to Encode
// when an upgrade parks a busy server: sizes and counts are typical of an
// OBS publisher at 6 Mbit/s with recording and LL-HLS on, and of players
// and relays caught with part of a GOP queued.

func benchSession(id uint64) Session {
	return Session{
		ID: id, Peer: "203.0.113.57:53122", HandshakePhase: 2,
		Reader: ChunkReader{
			ChunkSize: 4096, MaxMessageSize: 8 << 20, BytesRead: 1 << 33,
			Streams: []ChunkStream{
				{CSID: 2, Timestamp: 0, Length: 4, TypeID: 5},
				{CSID: 3, Timestamp: 0, Length: 132, TypeID: 20, StreamID: 0},
				{CSID: 4, Timestamp: 0x1000F00, Delta: 23, Length: 372, TypeID: 8, StreamID: 1},
				{CSID: 6, Timestamp: 0x1000EFA, Delta: 33, Length: 28734, TypeID: 9, StreamID: 1, Extended: true,
					Active: true, Partial: bytes.Repeat([]byte{0x41}, 12288)},
			},
			Header:   []byte{0x46, 0x00},
			BodyCSID: 6, BodyLeft: 1520,
		},
		Writer:    ChunkWriter{ChunkSize: 4096},
		Out:       bytes.Repeat([]byte{0x07}, 2200),
		Connected: true, App: "live", TCURL: "rtmp://ingest.example.net:1935/live",
		FlashVer: "FMLE/3.0 (compatible; FMSc/1.0)", NextMsid: 2, AckWindow: 2500000, LastAck: 1<<33 - 1200000,
		LastRead: 1795000000123456789,
	}
}

func benchMetadata() []byte {
	// An onMetaData body as OBS sends it, padded to its usual size.
	md := []byte{0x02, 0x00, 0x0a}
	md = append(md, "onMetaData"...)
	md = append(md, 0x08, 0, 0, 0, 14)
	for range 14 {
		md = append(md, 0x00, 0x0c)
		md = append(md, "videodatarate"[:12]...)
		md = append(md, 0x00, 0x40, 0xb7, 0x70, 0, 0, 0, 0, 0)
	}
	md = append(md, 0x00, 0x07)
	md = append(md, "encoder"...)
	md = append(md, 0x02, 0x00, 0x29)
	md = append(md, "obs-output module (libobs version 30.1.2)"...)
	return append(md, 0, 0, 9)
}

func benchHLS() *HLS {
	h := &HLS{Dir: "/var/lib/mediad/hls/live/cam1", Init: 2, NextSeq: 90211, Removed: 1992,
		Tracks:    [2]HLSTrack{{Seen: true, LastTS: 0x1000EFA, Epoch: 1, LastDTS: 4311744000}, {Seen: true, LastTS: 0x1000F00, Epoch: 1, LastDTS: 4311744006}},
		PartStart: 4311743800}
	for s := range 7 {
		seg := HLSSegment{MSN: 1994 + uint64(s), Start: 1795000000000000000 + int64(s)*2e9, Init: 2, Closed: s < 6}
		for p := range 10 {
			seg.Parts = append(seg.Parts, HLSPart{Offset: int64(p) * 150000, Size: 150000, DurationMS: 200, Independent: p%5 == 0})
		}
		h.Segments = append(h.Segments, seg)
	}
	for g := range 3 {
		h.Gone = append(h.Gone, HLSGone{MSN: 1991 + uint64(g), Expiry: 1795000030000000000, Parts: h.Segments[0].Parts})
	}
	for i := range 6 {
		h.Pending = append(h.Pending, HLSSample{Track: uint8(i % 2), DTS: 4311743800 + int64(i)*16, CTS: 66, Key: i == 0, Size: 18000})
	}
	return h
}

func benchPublisher() Publisher {
	md := benchMetadata()
	vseq := bytes.Repeat([]byte{0x17}, 48)
	aseq := []byte{0xaf, 0x00, 0x12, 0x10}
	return Publisher{
		Session: benchSession(1),
		Msid:    1,
		Stream: Stream{
			App: "live", Key: "cam1", Metadata: md, VideoSeq: vseq, AudioSeq: aseq,
			Started: 1795000000000000000, BytesIn: 987654321, VideoFrames: 540000, AudioFrames: 775000, Keyframes: 9000,
			Recorder: &Recorder{Dir: "/var/lib/mediad/rec", SegmentDuration: 3600e9, Path: "/var/lib/mediad/rec/live/cam1/20261113-020000.flv",
				Offset: 734003200, SegmentStartTS: 0xFFFFFF - 100, Started: true, SawVideo: true, Metadata: md, VideoSeq: vseq, AudioSeq: aseq,
				Segments: []string{"/var/lib/mediad/rec/live/cam1/20261113-010000.flv", "/var/lib/mediad/rec/live/cam1/20261113-020000.flv"}, HasFile: true},
			VideoBytes: 900000000, AudioBytes: 87654321, Encoder: "obs-output module (libobs version 30.1.2)", TracksSince: 1795000000000000000,
			RateBuckets: []uint64{786432, 262144, 790000, 801234, 770000, 780000, 799999, 760000, 810000, 785000}, RateSecond: 1795000300,
			HLS: benchHLS(), Query: "token=3f1e", PublisherAddr: "203.0.113.57:53122",
		},
	}
}

func benchQueue(n int) []QueuedMessage {
	q := make([]QueuedMessage, 0, n)
	for i := range n {
		typ, size := uint8(9), 3000
		if i%3 == 1 {
			typ, size = 8, 372
		}
		q = append(q, QueuedMessage{Type: typ, Key: i == 0, TS: 0x1000E00 + uint32(i)*33, CSID: 6, Payload: make([]byte, size)})
	}
	return q
}

func benchPlayer() Player {
	return Player{Session: benchSession(2), Msid: 1, App: "live", Key: "cam1", Queue: benchQueue(12), Skips: 1}
}

func benchRelay() Relay {
	s := benchSession(3)
	s.Reader.Streams = s.Reader.Streams[:2]
	return Relay{Session: s, App: "live", Key: "cam1", URL: "rtmp://203.0.113.9:1935/live/cam1?token=x", Msid: 1,
		Queue: benchQueue(12), BytesOut: 7340032123, Drops: 3, Reconnects: 2, LastError: "connection closed by peer",
		Connected: 1795000200000000000}
}

func benchConn() Session {
	s := benchSession(4)
	s.Reader.Streams = s.Reader.Streams[:2]
	s.Out = nil
	s.Pending = &PendingCommand{Msid: 1, Name: "cam1?token=3f1e"}
	return s
}

func benchEncode[T any](b *testing.B, kind Kind, v T) {
	b.ReportAllocs()
	env, err := Encode(kind, v)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(env.Payload)))
	for b.Loop() {
		if _, err := Encode(kind, v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodePublisher(b *testing.B) { benchEncode(b, KindPublisher, benchPublisher()) }
func BenchmarkEncodePlayer(b *testing.B)    { benchEncode(b, KindPlayer, benchPlayer()) }
func BenchmarkEncodeConn(b *testing.B)      { benchEncode(b, KindConn, benchConn()) }
func BenchmarkEncodeRelay(b *testing.B)     { benchEncode(b, KindRelay, benchRelay()) }

func BenchmarkMarshalEnvelope(b *testing.B) {
	b.ReportAllocs()
	env, err := Encode(KindPublisher, benchPublisher())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(env.Payload)))
	for b.Loop() {
		if _, err := MarshalEnvelope(env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshalReflect is what msgpack's reflection costs on the same
// values, for comparison with the hand-written encoders under the same
// conditions.
func BenchmarkMarshalReflect(b *testing.B) {
	env, err := Encode(KindPublisher, benchPublisher())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		v    any
	}{
		{"publisher", benchPublisher()}, {"player", benchPlayer()}, {"conn", benchConn()}, {"relay", benchRelay()}, {"envelope", env},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := msgpack.Marshal(bc.v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The decoders' side: what the new process pays per session to restore
// it, serially, before the session serves again.

func benchDecode[T any](b *testing.B, kind Kind, v T) {
	env, err := Encode(kind, v)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(env.Payload)))
	for b.Loop() {
		var got T
		if err := Decode(env, &got); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePublisher(b *testing.B) { benchDecode(b, KindPublisher, benchPublisher()) }
func BenchmarkDecodePlayer(b *testing.B)    { benchDecode(b, KindPlayer, benchPlayer()) }
func BenchmarkDecodeConn(b *testing.B)      { benchDecode(b, KindConn, benchConn()) }
func BenchmarkDecodeRelay(b *testing.B)     { benchDecode(b, KindRelay, benchRelay()) }

// BenchmarkDecodeReflect is Decode as it was before the hand-written
// decoders, the payload check and then msgpack's reflection, on the same
// values.
func BenchmarkDecodeReflect(b *testing.B) {
	b.Run("publisher", func(b *testing.B) { benchDecodeReflect(b, KindPublisher, benchPublisher()) })
	b.Run("player", func(b *testing.B) { benchDecodeReflect(b, KindPlayer, benchPlayer()) })
	b.Run("conn", func(b *testing.B) { benchDecodeReflect(b, KindConn, benchConn()) })
	b.Run("relay", func(b *testing.B) { benchDecodeReflect(b, KindRelay, benchRelay()) })
}

func benchDecodeReflect[T any](b *testing.B, kind Kind, v T) {
	env, err := Encode(kind, v)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(env.Payload)))
	for b.Loop() {
		var got T
		if _, err := CheckMsgpack(env.Payload); err != nil {
			b.Fatal(err)
		}
		if err := msgpack.Unmarshal(env.Payload, &got); err != nil {
			b.Fatal(err)
		}
	}
}
