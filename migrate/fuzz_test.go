package migrate

import (
	"math/rand/v2"
	"reflect"
	"slices"
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

func randHistogram(r *rand.Rand) state.Histogram {
	h := state.Histogram{Count: r.Uint64(), Sum: r.NormFloat64()}
	for range r.IntN(13) {
		h.Bounds = append(h.Bounds, r.ExpFloat64())
		h.Counts = append(h.Counts, r.Uint64())
	}
	return h
}

func randUpgrade(r *rand.Rand) state.Upgrade {
	return state.Upgrade{Outcome: randString(r), Error: randString(r), Started: r.Int64(), DurationMS: r.ExpFloat64(), OldPID: r.Int(), NewPID: r.Int(),
		OldVersion: randString(r), NewVersion: randString(r), StateVersion: r.Uint32(), SessionsMoved: r.Int(),
		StallP50MS: r.ExpFloat64(), StallP99MS: r.ExpFloat64(), WorstStallMS: r.ExpFloat64(), Stalls: r.Int()}
}

func randProcess(r *rand.Rand) state.Process {
	p := state.Process{ServiceStart: r.Int64(), Generation: r.Uint64(), BytesIn: r.Uint64(), BytesOut: r.Uint64(), SessionsAccepted: r.Uint64(),
		SessionsMoved: r.Uint64(), UpgradeSeconds: randHistogram(r), StallSeconds: randHistogram(r), Current: randUpgrade(r)}
	if n := r.IntN(4); n > 0 {
		p.UpgradeCounts = map[string]uint64{}
		for range n {
			p.UpgradeCounts[randString(r)] = r.Uint64()
		}
	}
	for range r.IntN(4) {
		p.Upgrades = append(p.Upgrades, randUpgrade(r))
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

func encode(t *testing.T, kind state.Kind, v any) state.Envelope {
	t.Helper()
	e, err := state.Encode(kind, v)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func convert(t *testing.T, e state.Envelope, to uint32) state.Envelope {
	t.Helper()
	out, err := Convert(e, to)
	if err != nil {
		t.Fatalf("%s v%d→v%d: %v", e.Kind, e.Version, to, err)
	}
	return out
}

var allKinds = []state.Kind{state.KindConn, state.KindPublisher, state.KindPlayer, state.KindProcess, state.KindFLVPlayer, state.KindRelay, state.KindHTTPConn,
	state.KindBase, state.KindPublisherTail, state.KindPlayerTail}

// FuzzMigrate: random valid states of the current version survive down
// then up wherever down loses nothing, and a second down after up gives
// the first again; a kind is never converted to or from a version before
// it existed; arbitrary payloads never make Convert panic, and whatever
// Convert accepts it writes as a payload it accepts back.
func FuzzMigrate(f *testing.F) {
	f.Add(uint64(1), []byte{0x80})
	f.Add(uint64(2), []byte{0x81, 0xa6, 's', 't', 'r', 'e', 'a', 'm', 0x80})
	f.Add(uint64(3), []byte{0xc6, 0xff, 0xff, 0xff, 0xff})
	seed := uint64(4)
	for v := Oldest; v <= state.Version; v++ {
		version := "v" + itoa(v)
		hashes := released[version]
		names := make([]string, 0, len(hashes))
		for name := range hashes {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			f.Add(seed, readGolden(f, version, name, hashes).Payload)
			seed++
		}
	}
	f.Fuzz(func(t *testing.T, seed uint64, junk []byte) {
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		for _, kind := range allKinds {
			for from := Oldest; from < introduced[kind]; from++ {
				for to := Oldest; to <= state.Version; to++ {
					if _, err := Convert(state.Envelope{Kind: kind, Version: from, Payload: junk}, to); err == nil {
						t.Fatalf("%s v%d→v%d accepted, before the kind existed", kind, from, to)
					}
					if _, err := Convert(state.Envelope{Kind: kind, Version: to, Payload: junk}, from); err == nil {
						t.Fatalf("%s v%d→v%d accepted, before the kind existed", kind, to, from)
					}
				}
			}
			// Every step runs, both ways, between the two ends.
			lo, hi := max(Oldest, introduced[kind]), uint32(state.Version)
			for _, ends := range [][2]uint32{{lo, hi}, {hi, lo}} {
				out, err := Convert(state.Envelope{Kind: kind, Version: ends[0], Payload: junk}, ends[1])
				if err != nil || ends[0] == ends[1] {
					continue
				}
				if _, err := Convert(out, ends[0]); err != nil {
					t.Fatalf("%s v%d→v%d→v%d: the way back refused what the way there wrote: %v", kind, ends[0], ends[1], ends[0], err)
				}
			}
		}

		// A publisher with arbitrary statistics: going down to v1 drops them,
		// and up then down again gives the same v1 payload. Down to any
		// version that has them loses nothing.
		p := randPublisher(r, false)
		e := encode(t, state.KindPublisher, p)
		e1 := convert(t, e, 1)
		again := convert(t, convert(t, e1, state.Version), 1)
		m1, _ := decodeMap(e1.Payload)
		m2, _ := decodeMap(again.Payload)
		if !reflect.DeepEqual(m1, m2) {
			t.Fatalf("v1 publisher changed by up then down")
		}
		for to := uint32(2); to < state.Version; to++ {
			if got := decodeAs[state.Publisher](t, convert(t, e, to)); !reflect.DeepEqual(got, p) {
				t.Fatalf("publisher down to v%d then up lost information:\n got %+v\nwant %+v", to, got.Stream, p.Stream)
			}
		}
		// A v1-expressible publisher (v2 fields exactly what up derives)
		// loses nothing going down and up.
		p1 := randPublisher(r, true)
		if got := decodeAs[state.Publisher](t, convert(t, encode(t, state.KindPublisher, p1), 1)); !reflect.DeepEqual(got, p1) {
			t.Fatalf("down then up lost information:\n got %+v\nwant %+v", got.Stream, p1.Stream)
		}
		// Kinds no step changed cross every version untouched.
		pl, conn := randPlayer(r), randSession(r)
		for to := Oldest; to < state.Version; to++ {
			if got := decodeAs[state.Player](t, convert(t, encode(t, state.KindPlayer, pl), to)); !reflect.DeepEqual(got, pl) {
				t.Fatalf("player changed by down to v%d then up", to)
			}
			if got := decodeAs[state.Session](t, convert(t, encode(t, state.KindConn, conn), to)); !reflect.DeepEqual(got, conn) {
				t.Fatalf("conn changed by down to v%d then up", to)
			}
		}
		// A process is read at the current version as written, and goes
		// nowhere a process did not exist.
		proc := randProcess(r)
		pe := encode(t, state.KindProcess, proc)
		if got := decodeAs[state.Process](t, convert(t, pe, state.Version)); !reflect.DeepEqual(got, proc) {
			t.Fatalf("process changed:\n got %+v\nwant %+v", got, proc)
		}
		for to := Oldest; to < introduced[state.KindProcess]; to++ {
			if _, err := Convert(pe, to); err == nil {
				t.Fatalf("process went down to v%d", to)
			}
		}
	})
}
