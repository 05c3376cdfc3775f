package migrate

import (
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/mediad/mediad/state"
)

func randBytes(r *rand.Rand, max int) []byte {
	if r.IntN(4) == 0 {
		return nil
	}
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randString(r *rand.Rand) string { return string(randBytes(r, 20)) }

func randSession(r *rand.Rand) state.Session {
	s := state.Session{
		ID: r.Uint64(), Peer: randString(r), HandshakePhase: uint8(r.IntN(3)), HandshakePartial: randBytes(r, 40),
		Reader: state.ChunkReader{ChunkSize: r.Uint32(), MaxMessageSize: r.Uint32(), Header: randBytes(r, 17), BodyCSID: r.Uint32(), BodyLeft: r.Uint32(), BytesRead: r.Uint64()},
		Writer: state.ChunkWriter{ChunkSize: r.Uint32()}, Out: randBytes(r, 64), Connected: r.IntN(2) == 0,
		App: randString(r), TCURL: randString(r), FlashVer: randString(r), NextMsid: r.Uint32(), AckWindow: r.Uint32(), LastAck: r.Uint64(), LastRead: r.Int64(),
	}
	for range r.IntN(4) {
		s.Reader.Streams = append(s.Reader.Streams, state.ChunkStream{CSID: r.Uint32(), Timestamp: r.Uint32(), Delta: r.Uint32(), Length: r.Uint32(),
			TypeID: uint8(r.Uint32()), StreamID: r.Uint32(), Extended: r.IntN(2) == 0, Active: r.IntN(2) == 0, Partial: randBytes(r, 30)})
	}
	return s
}

// randPublisher builds a random valid publisher; v1 leaves the fields
// version 2 added at what up derives from the rest.
func randPublisher(r *rand.Rand, v1 bool) state.Publisher {
	p := state.Publisher{Session: randSession(r), Msid: r.Uint32(), Stream: state.Stream{
		App: randString(r), Key: randString(r), Metadata: randBytes(r, 50), VideoSeq: randBytes(r, 30), AudioSeq: randBytes(r, 4),
		Started: r.Int64(), BytesIn: r.Uint64(), VideoFrames: r.Uint64(), AudioFrames: r.Uint64(), Keyframes: r.Uint64(),
	}}
	if r.IntN(2) == 0 {
		p.Stream.Recorder = &state.Recorder{Dir: randString(r), SegmentDuration: r.Int64(), Path: randString(r), Offset: r.Int64(),
			SegmentStartTS: r.Uint32(), Started: r.IntN(2) == 0, SawVideo: r.IntN(2) == 0, Metadata: randBytes(r, 20), HasFile: r.IntN(2) == 0}
	}
	if v1 {
		p.Stream.Encoder = encoderOf(p.Stream.Metadata)
		p.Stream.TracksSince = p.Session.LastRead
		if p.Stream.TracksSince == 0 {
			p.Stream.TracksSince = p.Stream.Started
		}
		p.Stream.RateBuckets = []uint64{}
		return p
	}
	p.Stream.VideoBytes, p.Stream.AudioBytes, p.Stream.Encoder = r.Uint64(), r.Uint64(), randString(r)
	p.Stream.TracksSince, p.Stream.RateSecond = r.Int64(), r.Int64()
	for range r.IntN(state.RateWindow + 1) {
		p.Stream.RateBuckets = append(p.Stream.RateBuckets, r.Uint64())
	}
	return p
}

func randPlayer(r *rand.Rand) state.Player {
	p := state.Player{Session: randSession(r), Msid: r.Uint32(), App: randString(r), Key: randString(r), WaitKey: r.IntN(2) == 0, Skips: r.IntN(10)}
	for range r.IntN(5) {
		p.Queue = append(p.Queue, state.QueuedMessage{Type: uint8(r.Uint32()), Kind: uint8(r.IntN(3)), Key: r.IntN(2) == 0, TS: r.Uint32(), CSID: r.Uint32(), Msid0: r.IntN(2) == 0, Payload: randBytes(r, 40)})
	}
	return p
}

func decodeAs[T any](t *testing.T, e state.Envelope) T {
	t.Helper()
	var v T
	if e.Version != state.Version {
		var err error
		if e, err = Convert(e, state.Version); err != nil {
			t.Fatal(err)
		}
	}
	if err := state.Decode(e, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzMigrate: random valid states of every version survive up then down,
// and down then up where down loses nothing; arbitrary payloads never make
// Convert panic.
func FuzzMigrate(f *testing.F) {
	f.Add(uint64(1), []byte{0x80})
	f.Add(uint64(2), []byte{0x81, 0xa6, 's', 't', 'r', 'e', 'a', 'm', 0x80})
	f.Add(uint64(3), []byte{0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, seed uint64, junk []byte) {
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		for _, kind := range []state.Kind{state.KindConn, state.KindPublisher, state.KindPlayer} {
			for _, v := range []uint32{1, 2} {
				_, _ = Convert(state.Envelope{Kind: kind, Version: v, Payload: junk}, 3-v)
			}
		}

		// A v2 publisher with arbitrary statistics: down, then up, then down
		// again gives the same v1 payload; up of a v1 payload, then down,
		// gives it back.
		p2 := randPublisher(r, false)
		e2, err := state.Encode(state.KindPublisher, p2)
		if err != nil {
			t.Fatal(err)
		}
		e1, err := Convert(e2, 1)
		if err != nil {
			t.Fatal(err)
		}
		up, err := Convert(e1, 2)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Convert(up, 1)
		if err != nil {
			t.Fatal(err)
		}
		m1, _ := decodeMap(e1.Payload)
		m2, _ := decodeMap(again.Payload)
		if !reflect.DeepEqual(m1, m2) {
			t.Fatalf("v1 publisher changed by up then down")
		}
		// A v1-expressible publisher (v2 fields exactly what up derives)
		// loses nothing going down and up.
		p1 := randPublisher(r, true)
		e, err := state.Encode(state.KindPublisher, p1)
		if err != nil {
			t.Fatal(err)
		}
		down, err := Convert(e, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeAs[state.Publisher](t, down); !reflect.DeepEqual(got, p1) {
			t.Fatalf("down then up lost information:\n got %+v\nwant %+v", got.Stream, p1.Stream)
		}
		// Kinds version 2 did not change cross untouched.
		for kind, val := range map[state.Kind]any{state.KindPlayer: randPlayer(r), state.KindConn: randSession(r)} {
			e, err := state.Encode(kind, val)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Convert(e, 1)
			if err != nil {
				t.Fatal(err)
			}
			switch kind {
			case state.KindPlayer:
				if got := decodeAs[state.Player](t, d); !reflect.DeepEqual(got, val) {
					t.Fatalf("player changed by down then up")
				}
			case state.KindConn:
				if got := decodeAs[state.Session](t, d); !reflect.DeepEqual(got, val) {
					t.Fatalf("conn changed by down then up")
				}
			}
		}
	})
}
